"""Time to build the N x N NNGP kernel: bayesfn vs neural-tangents on the same machine.

* fully connected: depth-4 ReLU network (stax: 4 x [Dense(W_std=1.5, b_std=0.05), Relu],
  Dense readout), d = 16 inputs, N = 1,000 and 4,000, float64 and float32;
* CNN: 3 x [Conv(3 x 3, SAME, W_std=1.5, b_std=0.05), Relu], Flatten, Dense on
  N = 200 MNIST-sized 28 x 28 x 1 images (diagonal spatial covariance);
* Student-t process posterior (ScaleMixtureNNGP, inverse gamma) vs GPyTorch's exact GP
  prediction with the same NNGP kernel, N = 4,000 training and 1,000 test points.

Median of ``--repeats`` runs after one warm-up (which includes neural-tangents' JIT
compilation).

    python benchmarks/nngp_kernel_bench.py --nt-python /tmp/ntenv/bin/python

neural-tangents runs in its own virtual environment (see nngp_make_reference.py for the
install); this script calls it in a subprocess and prints a Markdown table.

``--threads`` sets torch's threads only; XLA uses every core it may run on, so a
one-core comparison pins both to one core:

    taskset -c 0 python benchmarks/nngp_kernel_bench.py --sizes --cnn-sizes 200 \
        --posterior-size 0 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

NT_SCRIPT = r"""
import sys, types, json, time, statistics
sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from neural_tangents import stax
n, dtype, repeats, arch = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
layers = []
if arch == "fc":
    for _ in range(4):
        layers += [stax.Dense(512, 1.5, 0.05), stax.Relu()]
    layers += [stax.Dense(1, 1.5, 0.05)]
    shape = (n, 16)
else:
    for _ in range(3):
        layers += [stax.Conv(32, (3, 3), padding="SAME", W_std=1.5, b_std=0.05), stax.Relu()]
    layers += [stax.Flatten(), stax.Dense(1, 1.5, 0.05)]
    shape = (n, 28, 28, 1)
kernel_fn = jax.jit(stax.serial(*layers)[2], static_argnames=("get",))
x = jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype=dtype)
kernel_fn(x, None, get="nngp").block_until_ready()
times = []
for _ in range(repeats):
    t = time.perf_counter()
    kernel_fn(x, None, get="nngp").block_until_ready()
    times.append(time.perf_counter() - t)
print(json.dumps({"median": statistics.median(times), "jax": jax.__version__}))
"""


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_ours(n: int, dtype: str, repeats: int, arch: str = "fc") -> float:
    import torch

    from bayesfn.bayesnn import nngp_kernel
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    g = torch.Generator().manual_seed(0)
    kw = dict(activation="relu", w_std=1.5, b_std=0.05, w_std_last=1.5, b_std_last=0.05)
    if arch == "fc":
        x = torch.randn(n, 16, dtype=getattr(torch, dtype), generator=g)
        fn = lambda: nngp_kernel(x, depth=4, **kw)  # noqa: E731
    else:
        x = torch.randn(n, 28, 28, 1, dtype=getattr(torch, dtype), generator=g)
        fn = lambda: cnn_kernel(x, depth=3, filter_size=3, **kw)  # noqa: E731
    with torch.no_grad():
        return _median_time(fn, repeats)


def time_posteriors(n: int, n_test: int, repeats: int) -> tuple[float, float]:
    """Seconds for the joint predictive (mean and full covariance) at ``n_test`` points
    after conditioning on ``n``:
    ScaleMixtureNNGP (Student-t, Cholesky) vs a GPyTorch ExactGP with NNGPKernel."""
    import gpytorch
    import torch

    from bayesfn.bayesnn import NNGPKernel, ScaleMixtureNNGP

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 16, dtype=torch.float64, generator=g)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * torch.randn(
        n, 1, dtype=torch.float64, generator=g
    )
    xs = torch.randn(n_test, 16, dtype=torch.float64, generator=g)

    def ours():
        model = ScaleMixtureNNGP(depth=4, w_std=1.5, b_std=0.05, noise=0.1)
        model.fit(x, y, max_steps=0, progress_bar=False)
        post = model.posterior(xs, observation_noise=True)
        return post.mean, post.covariance_matrix

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            likelihood = gpytorch.likelihoods.GaussianLikelihood()
            super().__init__(x, y[:, 0], likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = NNGPKernel(
                4, "relu", w_std=1.5, b_std=0.05, w_std_last=1.0, b_std_last=0.0
            )

        def forward(self, t):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(t), self.covar_module(t)
            )

    def theirs():
        gp = GP().double()
        gp.likelihood.noise = 0.1
        gp.eval()
        with torch.no_grad():
            pred = gp.likelihood(gp(xs))
            return pred.mean, pred.covariance_matrix

    return _median_time(ours, repeats), _median_time(theirs, repeats)


def time_nt(python: str, n: int, dtype: str, repeats: int, arch: str = "fc") -> float | None:
    try:
        out = subprocess.run(
            [python, "-c", NT_SCRIPT, str(n), dtype, str(repeats), arch],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as err:
        print(f"neural-tangents run failed: {err}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nt-python", default="/tmp/ntenv/bin/python")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--cnn-sizes", type=int, nargs="*", default=[200])
    parser.add_argument("--posterior-size", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print("| kernel | N | dtype | bayesfn (s) | neural-tangents (s) | NT / bayesfn |")
    print("|---|---|---|---|---|---|")
    jobs = [("fc", n) for n in args.sizes] + [("cnn", n) for n in args.cnn_sizes]
    for arch, n in jobs:
        for dtype in ("float64", "float32"):
            ours = time_ours(n, dtype, args.repeats, arch)
            nt = time_nt(args.nt_python, n, dtype, args.repeats, arch)
            ratio = f"{nt / ours:.2f}" if nt else "n/a"
            nt_text = f"{nt:.3f}" if nt else "n/a"
            label = "FC depth 4" if arch == "fc" else "CNN depth 3, 28x28x1"
            print(f"| {label} | {n} | {dtype} | {ours:.3f} | {nt_text} | {ratio} |", flush=True)
    if args.posterior_size:
        ours, gpy = time_posteriors(args.posterior_size, 1000, args.repeats)
        print(
            f"\nStudent-t posterior, N={args.posterior_size}, 1000 test points: bayesfn "
            f"{ours:.3f} s, GPyTorch exact GP {gpy:.3f} s, ratio {gpy / ours:.2f}"
        )


if __name__ == "__main__":
    main()
