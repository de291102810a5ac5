"""Neural diffusion process: training steps per second, conditional samples per second
and the cost of the exact (probability-flow ODE) likelihood.

Sizes default to the paper's 1-D regression model: 4 blocks, 64 channels, 8 heads,
batch 32 tasks of 59 points (padded), T = 500, RePaint with U = 5 (T (U + 1) = 3,000
noise-model calls per conditional draw). A training step is the loss, its backward, the
global-norm clip and the Adam update on stored data (the official code also trains on
pre-generated tasks). Conditional sampling is timed for a few levels of RePaint and
reported per draw of the full chain (the levels cost the same). The exact likelihood is
timed per RK4 step of the ODE on one batch of tasks (context + 50 targets) with the exact
divergence (one backward pass per value) and with Hutchinson (4 probes).

Run:  python benchmarks/ndp_bench.py [--threads 1 2] [--hidden 64] [--layers 4]

The official JAX/Haiku code is timed by ``benchmarks/ndp_official_jax_bench.py`` in a
separate virtual environment (see its docstring); this script prints our numbers only.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from bayesfn.data import sample_functions
from bayesfn.processes.ndp.diffusion import Schedule, diffusion_loss, ode_log_prob, repaint_sample
from bayesfn.processes.ndp.network import BiDimensionalAttention


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench(args: argparse.Namespace, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = BiDimensionalAttention(args.hidden, args.layers, args.heads)
    sched = Schedule(args.num_steps)
    data = sample_functions("se", args.batch, args.points, lengthscale=0.25, noise_std=0.05, seed=0)
    x, y = data.x, data.y
    mask = torch.ones(args.batch, args.points, dtype=torch.bool)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def eps(xx, yy, t, m):
        return net(xx, yy, t.to(xx.dtype), m)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = diffusion_loss(eps, sched, x, y, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    train = _median_time(step, args.repeats)

    # RePaint: time a chain of 3 levels (every level costs U + 1 network calls), scale
    # to the full T levels
    levels = 3
    short = Schedule(levels)
    xc, yc = x[: args.samples, :5], y[: args.samples, :5]
    xt = x[: args.samples, 5 : 5 + args.targets]
    net.eval()

    def sample():
        with torch.no_grad():
            repaint_sample(eps, short, xc, yc, xt, num_inner_steps=args.inner)

    per_level = _median_time(sample, args.repeats) / levels
    per_batch = per_level * args.num_steps
    samples_per_s = args.samples / per_batch

    # exact likelihood: one RK4 step on the tasks' joint sets
    net64 = BiDimensionalAttention(args.hidden, args.layers, args.heads).double().eval()

    def eps64(xx, yy, t, m):
        return net64(xx, yy, t, m)

    xl = x[: args.ll_tasks, : 5 + args.targets].double()
    yl = y[: args.ll_tasks, : 5 + args.targets].double()

    def ode(divergence: str) -> float:
        return _median_time(
            lambda: ode_log_prob(eps64, sched, xl, yl, ode_steps=1, divergence=divergence),
            max(1, args.repeats // 2),
        )

    result = {
        "train steps/s": 1.0 / train,
        "conditional samples/s": samples_per_s,
        "s per conditional batch": per_batch,
    }
    if not args.no_likelihood:
        result["exact ODE s per RK4 step"] = ode("exact")
        result["Hutchinson ODE s per RK4 step"] = ode("hutchinson")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=500)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=59)
    parser.add_argument("--samples", type=int, default=32, help="conditional draws at once")
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--ll-tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-likelihood", action="store_true", help="skip the ODE timings")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(
        f"model: {args.layers} blocks x {args.hidden} channels x {args.heads} heads; "
        f"batch {args.batch} x {args.points} points; T = {args.num_steps}; U = {args.inner}"
    )
    for threads in args.threads:
        result = bench(args, threads)
        print(f"threads={threads}: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()
