"""What ``GaussianProcess(solver="cg")`` costs in accuracy: the same data, kernel, start
and Adam steps fitted with the exact Cholesky objective and with GPyTorch's iterative
one (conjugate gradients, stochastic Lanczos log-determinant), then compared where it
matters: the predictive mean and standard deviation at test points (both predicted
exactly, by Cholesky, from each fit's hyperparameters), the hyperparameters and the
exact log marginal likelihood each reached. Also the wall time of each fit.

Data: 3-D inputs uniform on [0, 4]³, ``y = sin(x₁ + x₂ + x₃) + 0.1 ε``.

Run:  python benchmarks/gp_cg_accuracy.py --n 2000 --steps 100
      python benchmarks/gp_cg_accuracy.py --n 2000 --steps 100 --cg-tolerance 0.01
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cg-tolerance",
        type=float,
        default=None,
        help="GPyTorch's training CG tolerance for the cg fit (its default: 1)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from gpytorch.settings import cg_tolerance

    from bayesfn.processes import GaussianProcess

    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, generator=g, dtype=torch.float64) * 4
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(args.n, generator=g, dtype=torch.float64)
    xs = torch.rand(args.test, 3, generator=g, dtype=torch.float64) * 4
    fits, times = {}, {}
    for solver in ("cholesky", "cg"):
        start = time.perf_counter()
        tolerance = args.cg_tolerance if solver == "cg" else None
        with contextlib.nullcontext() if tolerance is None else cg_tolerance(tolerance):
            fits[solver] = GaussianProcess("rbf", solver=solver).fit(
                x, y, max_steps=args.steps, progress_bar=False, seed=0
            )
        times[solver] = time.perf_counter() - start
    post = {s: m.posterior(xs, joint=False) for s, m in fits.items()}
    mean_diff = (post["cg"].mean - post["cholesky"].mean).abs().max()
    sd_diff = (post["cg"].variance.sqrt() - post["cholesky"].variance.sqrt()).abs().max()
    lml = {s: m.fit_result_.diagnostics["log_marginal_likelihood"] for s, m in fits.items()}
    print(
        json.dumps(
            {
                "n": args.n,
                "steps": args.steps,
                "cg_tolerance": args.cg_tolerance,
                "test": args.test,
                "predictive_mean_max_abs_diff": float(mean_diff),
                "predictive_sd_max_abs_diff": float(sd_diff),
                "predictive_sd_median": float(post["cholesky"].variance.sqrt().median()),
                "exact_lml": lml,
                "hyperparameters": {s: m.hyperparameters() for s, m in fits.items()},
                "fit_s": {s: round(t, 1) for s, t in times.items()},
                "threads": args.threads,
                "loadavg": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
