"""How many threads should the NNGP kernels use by default? bayesfn against itself.

For each kernel (FC depth 4 on N x 16 inputs, ``K(x, x)``; CNN depth 3 on N 28 x 28 x 1
images against N distinct ones), this times the kernel under each thread setting, one
call per setting per round, the settings in a rotated order every round (so that load
on a shared machine hits all alike), and prints the median and every round's time:

* ``torch 1``: ``torch.set_num_threads(1)`` around the call;
* ``torch all``: all cores, the kernel's thread option set to ``None`` (torch's setting);
* ``default``: all cores for torch, the kernel's own default thread option.

This is the measurement behind the default of ``threads`` in
:func:`bayesfn.bayesnn.nngp_kernel` and ``tile_threads`` in
:func:`bayesfn.bayesnn.nngp.cnn.cnn_kernel` (see benchmarks/RESULTS.md)::

    python benchmarks/nngp_threads_study.py --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from bayesfn.bayesnn import nngp_kernel
from bayesfn.bayesnn.nngp.cnn import cnn_kernel

KW = dict(activation="relu", w_std=1.5, b_std=0.05, w_std_last=1.5, b_std_last=0.05)
CORES = len(os.sched_getaffinity(0))


def call(arch: str, x1, x2, threads: int, option: str):
    """One kernel call at ``threads`` torch threads; ``option`` is ``"none"`` (the
    kernel's thread option None) or ``"default"`` (not passed)."""
    torch.set_num_threads(threads)
    name = "tile_threads" if arch == "cnn" else "threads"
    extra = {name: None} if option == "none" and _accepts(arch, name) else {}
    t = time.perf_counter()
    with torch.no_grad():
        if arch == "fc":
            nngp_kernel(x1, x2, depth=4, **KW, **extra)
        else:
            cnn_kernel(x1, x2, depth=3, filter_size=3, **KW, **extra)
    return time.perf_counter() - t


def _accepts(arch: str, name: str) -> bool:
    import inspect

    fn = nngp_kernel if arch == "fc" else cnn_kernel
    return name in inspect.signature(fn).parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fc-sizes", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--cnn-sizes", type=int, nargs="*", default=[100])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    settings = [("torch 1", 1, "none"), (f"torch all ({CORES})", CORES, "none")]
    settings.append((f"default, torch {CORES}", CORES, "default"))
    print(f"torch {torch.__version__}, {CORES} cores, load average {os.getloadavg()}")
    print("| kernel | N | dtype | setting | median (s) | per round (s) |")
    print("|---|---|---|---|---|---|")
    jobs = [("fc", n) for n in args.fc_sizes] + [("cnn", n) for n in args.cnn_sizes]
    for arch, n in jobs:
        for dtype in args.dtypes:
            shape = (n, 16) if arch == "fc" else (n, 28, 28, 1)
            rng = np.random.default_rng(0)
            x1 = torch.from_numpy(rng.normal(size=shape).astype(dtype))
            x2 = None if arch == "fc" else torch.from_numpy(rng.normal(size=shape).astype(dtype))
            for _, threads, option in settings:  # warm-up
                call(arch, x1, x2, threads, option)
            times = {name: [] for name, _, _ in settings}
            for r in range(args.rounds):
                order = settings[r % len(settings) :] + settings[: r % len(settings)]
                for name, threads, option in order:
                    times[name].append(call(arch, x1, x2, threads, option))
            for name, _, _ in settings:
                per = ", ".join(f"{t:.2f}" for t in times[name])
                print(
                    f"| {arch} | {n} | {dtype} | {name} | {statistics.median(times[name]):.3f} "
                    f"| {per} |",
                    flush=True,
                )
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
