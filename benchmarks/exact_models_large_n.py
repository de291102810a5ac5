"""One large exact fit and prediction: ``GaussianProcess`` or ``ScaleMixtureNNGP`` at
``n`` training points through the models' own ``fit`` (``--steps`` hyperparameter steps,
then the one factorisation that serves the diagnostics and prediction), then the
marginals-only predictive (``posterior(x, joint=False)``) at ``--test`` points.

Prints one JSON line: the time of each step (from a ``fit`` callback), of the whole fit
and of the prediction, the growth of the process's peak resident memory
(``ru_maxrss``) over its state before the data were made, after the fit and after the
prediction, in MiB and in units of one ``n x n`` float64 matrix, and the test RMSE
against the noise-free function (noise sd 0.1). A background thread also samples the
current resident memory every 0.2 s (``/proc/self/statm``) to say when the peak
happened. Data: 3-D inputs uniform on [0, 4]³, ``y = sin(x₁ + x₂ + x₃) + noise``.

Run:  python benchmarks/exact_models_large_n.py --model gp --n 20000 --steps 2 --test 10000
      python benchmarks/exact_models_large_n.py --model scale-mixture --n 20000 --steps 2 \
          --test 10000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import threading
import time

import torch


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--model", choices=("scale-mixture", "gp"), default="scale-mixture")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from bayesfn.bayesnn import ScaleMixtureNNGP
    from bayesfn.processes import GaussianProcess

    # warm-up at a tiny size: lazy imports and library buffers are not the model's
    small = torch.rand(30, 3, dtype=torch.float64)
    GaussianProcess("rbf").fit(small, small.sum(-1), max_steps=1, progress_bar=False)
    ScaleMixtureNNGP(depth=2, prior="inverse_gamma").fit(
        small, small.sum(-1), max_steps=1, progress_bar=False
    )

    trace: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            trace.append((time.perf_counter(), _rss_mib()))
            stop.wait(0.2)

    before = _peak_mib()
    rss_before = _rss_mib()
    threading.Thread(target=sample, daemon=True).start()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, generator=g, dtype=torch.float64) * 4
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(args.n, generator=g, dtype=torch.float64)
    xs = torch.rand(args.test, 3, generator=g, dtype=torch.float64) * 4

    marks = [time.perf_counter()]

    def on_step(_info) -> None:
        marks.append(time.perf_counter())

    if args.model == "gp":
        model = GaussianProcess("rbf")
    else:
        model = ScaleMixtureNNGP(depth=2, prior="inverse_gamma")
    start = time.perf_counter()
    model.fit(x, y, max_steps=args.steps, progress_bar=False, callbacks=[on_step])
    fitted = time.perf_counter()
    peak_fit = _peak_mib() - before
    post = model.posterior(xs, joint=False)
    predicted = time.perf_counter()
    stop.set()
    rmse = float((post.mean.reshape(-1) - torch.sin(xs.sum(-1))).pow(2).mean().sqrt())
    matrix = args.n**2 * 8 / 2**20
    peak_all = _peak_mib() - before
    when = max(trace, key=lambda t: t[1]) if trace else (start, 0.0)
    print(
        json.dumps(
            {
                "model": args.model,
                "n": args.n,
                "test": args.test,
                "threads": args.threads,
                "step_s": [round(b - a, 2) for a, b in itertools.pairwise(marks)],
                "fit_s": round(fitted - start, 1),
                "predict_s": round(predicted - fitted, 1),
                "nxn_mib": round(matrix),
                "peak_growth_fit_mib": round(peak_fit),
                "peak_growth_mib": round(peak_all),
                "peak_in_nxn": round(peak_all / matrix, 2),
                "sampled_peak_rss_over_start_mib": round(when[1] - rss_before),
                "sampled_peak_at_s": round(when[0] - start, 1),
                "test_rmse": round(rmse, 4),
                "loadavg": os.getloadavg(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
