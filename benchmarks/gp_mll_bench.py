"""Exact-GP objective: bayesfn's dense-Cholesky marginal likelihood vs GPyTorch's
``ExactMarginalLogLikelihood``, side by side on the same model and data.

For each n it times one forward + backward of the negative log marginal likelihood
(the work of one hyperparameter step) and reports the ratio, plus each objective's
error against a float64 SciPy ``multivariate_normal.logpdf`` of the same covariance.
Above 800 points GPyTorch's default switches to conjugate gradients and stochastic
log-determinants, which shows up in that error column.

Run:  python benchmarks/gp_mll_bench.py [--sizes 60 500 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import gpytorch
import numpy as np
import torch
from scipy import stats

from bayesfn.processes import GaussianProcess


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best.append(time.perf_counter() - start)
    return float(np.median(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 500, 2000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {args.threads}")
    print("| n | bayesfn ms | gpytorch ms | speed-up | bayesfn abs. error | gpytorch abs. error |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        g = torch.Generator().manual_seed(n)
        x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 5
        noise = 0.1 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        y = torch.sin(x.sum(-1, keepdim=True)) + noise
        gp = GaussianProcess("rbf").fit(x, y, max_steps=0, progress_bar=False)
        module = gp.module_
        module.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(module.likelihood, module)

        def ours(gp=gp, module=module):
            module.zero_grad()
            loss = -gp.log_marginal_likelihood()
            loss.backward()
            return loss

        def theirs(module=module, mll=mll, x=x, n=n):
            module.zero_grad()
            loss = -mll(module(x), module.train_targets).sum() * n  # undo GPyTorch's 1/n
            loss.backward()
            return loss

        with torch.no_grad():
            noise = module.likelihood.noise.reshape(-1)[0]
            k = module.covar_module(x, x).to_dense()[0] + noise * torch.eye(n, dtype=torch.float64)
            mean = module.mean_module(x)[0]
        normal = stats.multivariate_normal(mean.detach().numpy(), k.detach().numpy())
        reference = normal.logpdf(y[:, 0].numpy())
        t_ours, t_theirs = _time(ours, args.repeats), _time(theirs, args.repeats)
        err_ours = abs(-ours().item() - reference)
        err_theirs = abs(-theirs().item() - reference)
        print(
            f"| {n} | {1e3 * t_ours:.2f} | {1e3 * t_theirs:.2f} | {t_theirs / t_ours:.2f}x "
            f"| {err_ours:.1e} | {err_theirs:.1e} |"
        )


if __name__ == "__main__":
    main()
