"""Exact models at scale: time of one hyperparameter step and peak memory, bayesfn's
``GaussianProcess`` and ``ScaleMixtureNNGP`` beside GPyTorch's ``ExactGP`` with the
same kernel (ARD RBF with an output scale, constant mean, Gaussian noise) and dense
Cholesky forced (``gpytorch.settings.max_cholesky_size``), so that all three do the
same exact algebra.

Each (model, n) runs in a fresh subprocess: ``--warmup`` untimed steps (default 1;
the lazy imports and library buffers are warmed up at n = 20 beforehand in any case),
then ``--steps`` timed steps (forward, backward and Adam update of the negative log
marginal likelihood per point), reporting the median step time and the growth of the
process's peak resident memory over its state before the model was built
(``ru_maxrss``, MiB), next to the size of one ``n x n`` float64 matrix. The models
alternate order at every ``n``.

Run:  python benchmarks/exact_models_scale.py --sizes 1000 2000 5000 --threads 1
      python benchmarks/exact_models_scale.py --sizes 1000 2000 5000 --threads 2
      python benchmarks/exact_models_scale.py --sizes 10000 --steps 1 --warmup 0 --threads 1
At n = 20,000 see ``exact_models_large_n.py`` (GPyTorch's Cholesky ExactGP, at about 8
n x n matrices, would need some 25 GB there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import torch
    model, n, threads, steps, warmup = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    import gpytorch
    from bayesfn.bayesnn import ScaleMixtureNNGP
    from bayesfn.processes import GaussianProcess

    def data(n):
        g = torch.Generator().manual_seed(n)
        x = torch.rand(n, 3, generator=g, dtype=torch.float64) * 4
        y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
        return x, y

    def build(n):
        x, y = data(n)
        if model == "bayesfn-gp":
            gp = GaussianProcess("rbf").fit(x, y, max_steps=0, progress_bar=False)
            gp.module_.train()
            gp._cache = None  # the factor fit(max_steps=0) cached is not the step's memory
            return gp.module_, lambda: -gp._unit_log_marginal_likelihood() / n, torch.enable_grad()
        if model == "bayesfn-scale-mixture":
            sm = ScaleMixtureNNGP(depth=2, prior="inverse_gamma").fit(
                x, y, max_steps=0, progress_bar=False
            )
            sm._cache = None  # idem
            return sm.module_, lambda: -sm.log_marginal_likelihood() / n, torch.enable_grad()

        class Exact(gpytorch.models.ExactGP):
            def __init__(self, x, y, likelihood):
                super().__init__(x, y, likelihood)
                self.mean_module = gpytorch.means.ConstantMean()
                self.covar_module = gpytorch.kernels.ScaleKernel(
                    gpytorch.kernels.RBFKernel(ard_num_dims=3)
                )

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(
                    self.mean_module(x), self.covar_module(x)
                )

        likelihood = gpytorch.likelihoods.GaussianLikelihood()
        module = Exact(x, y, likelihood).double()
        module.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, module)
        return module, lambda: -mll(module(x), y), gpytorch.settings.max_cholesky_size(10**9)

    def step(module, loss_fn, opt):
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    # warm-up at a tiny size: lazy imports and library buffers are not the model's
    module, loss_fn, context = build(20)
    with context:
        step(module, loss_fn, torch.optim.Adam(module.parameters(), lr=0.05))
    del module, loss_fn
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = peak()
    module, loss_fn, context = build(n)

    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=0.05)
    times = []
    with context:
        for i in range(warmup + steps):
            start = time.perf_counter()
            step(module, loss_fn, opt)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": float(np.median(times)), "peak_mib": peak() - before}))
    """
)

_MODELS = ("bayesfn-gp", "gpytorch-exactgp-cholesky", "bayesfn-scale-mixture")


def _run(model: str, n: int, threads: int, steps: int, warmup: int, timeout: float) -> dict:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, model, *map(str, (n, threads, steps, warmup))],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps at size n")
    parser.add_argument("--models", nargs="+", choices=_MODELS, default=list(_MODELS))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--reverse", action="store_true", help="start with the reversed order")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}, "
        f"load average at start {os.getloadavg()}"
    )
    print("| n | n x n float64 (MiB) | model | step (s) | peak memory growth (MiB) |")
    print("|---|---|---|---|---|")
    for i, n in enumerate(args.sizes):
        chosen = [m for m in _MODELS if m in args.models]
        order = chosen if (i + args.reverse) % 2 == 0 else chosen[::-1]
        matrix = n * n * 8 / 2**20
        for model in order:
            r = _run(model, n, args.threads, args.steps, args.warmup, args.timeout)
            if "error" in r:
                print(f"| {n} | {matrix:.0f} | {model} | failed: {r['error']} | |", flush=True)
            else:
                print(
                    f"| {n} | {matrix:.0f} | {model} | {r['step_s']:.3f} | {r['peak_mib']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
