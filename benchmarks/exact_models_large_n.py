"""One large exact fit and prediction: ``ScaleMixtureNNGP`` (or ``GaussianProcess``) at
``n`` training points, one hyperparameter step plus the factorisations, then the
marginals-only predictive (``posterior(x, joint=False)``) at ``--test`` points. Prints
the wall times, the growth of the peak resident memory (``ru_maxrss``) and the test RMSE
against the noise-free function.

Run:  python benchmarks/exact_models_large_n.py --n 10000 --test 30000 --model scale-mixture
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--test", type=int, default=30000)
    parser.add_argument("--model", choices=("scale-mixture", "gp"), default="scale-mixture")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from bayesfn.bayesnn import ScaleMixtureNNGP
    from bayesfn.processes import GaussianProcess

    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, generator=g, dtype=torch.float64) * 4
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(args.n, generator=g, dtype=torch.float64)
    xs = torch.rand(args.test, 3, generator=g, dtype=torch.float64) * 4

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    before, start = peak(), time.perf_counter()
    if args.model == "gp":
        model = GaussianProcess("rbf")
    else:
        model = ScaleMixtureNNGP(depth=2, prior="inverse_gamma")
    model.fit(x, y, max_steps=1, progress_bar=False)
    fitted = time.perf_counter()
    post = model.posterior(xs, joint=False)
    predicted = time.perf_counter()
    rmse = float((post.mean[:, 0] - torch.sin(xs.sum(-1))).pow(2).mean().sqrt())
    matrix = args.n**2 * 8 / 2**20
    print(
        f"{args.model} n={args.n}: fit (1 step + factorisation) {fitted - start:.0f} s, "
        f"predict {args.test} marginals {predicted - fitted:.0f} s, peak memory growth "
        f"{peak() - before:.0f} MiB (one n x n matrix: {matrix:.0f} MiB), test RMSE {rmse:.3f}"
    )


if __name__ == "__main__":
    main()
