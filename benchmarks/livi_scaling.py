"""LIVI cost per training step: the sampler + s_min bound at 1M-30M weights, and a whole
LIVI step against mean-field VI on the same network (issue 12, items 5(d) and 6).

Every measurement runs in its own subprocess, so that its peak resident memory
(``ru_maxrss``) is its own; memory is reported as the peak minus the resident size just
before the first step (the step's working memory plus optimiser/gradient state), and
time as the median of timed steps after warm-up steps.

* ``scaling``: ``MatrixSampler`` (one head per parameter tensor of a 784-h-h-1 MLP,
  the default trunk 64 x 64 and noise side ``round(sqrt(d)/17)``) generating ``K``
  weight vectors, the ``s_min`` bound with 5 solver iterations, and the backward pass
  of both (no BNN forward, no optimiser). ``--path structured`` (what ``ImplicitVI``
  runs) takes the solver's products through the trunk features and the heads' Gram
  matrices; ``--path generic`` through the d-dimensional output, as the official code.
* ``vs-mfvi``: ``BNN.fit`` steps of ``ImplicitVI(entropy="bound")`` against
  ``MeanFieldVI`` (local reparameterisation), regression on 1,024 random 784-d inputs,
  batch 128, ``K`` samples each; the two run alternately (MFVI first in even repeats,
  LIVI first in odd ones) at each thread count; ratios are LIVI / MFVI of the medians.

Run (on the shared 2-core box; about 10 minutes)::

    PYTHONPATH=. python benchmarks/livi_scaling.py --part scaling --sizes 1e6 1e7 3e7
    PYTHONPATH=. python benchmarks/livi_scaling.py --part scaling --sizes 1e6 1e7 3e7 \
        --path generic --steps 3 --warmup 1
    PYTHONPATH=. python benchmarks/livi_scaling.py --part vs-mfvi --sizes 1e4 1e5 1e6 \\
        --threads 1 2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> float:
    """Hand freed heap memory back to the OS (so that the resident size is the live
    memory), reset the peak resident size (VmHWM) to it and return it in MB."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS")


def _peak_mb() -> float:
    return _status_mb("VmHWM")


def _width(d: float) -> int:
    """h with 784*h + h + h*h + h + 10*h + 10 ≈ d."""
    a, b, c = 1.0, 796.0, 10.0 - d
    return max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


def _target(h: int, n: int = 1):
    import torch

    from bayesfn.bayesnn import MLP, GaussianLikelihood, GaussianPrior
    from bayesfn.bayesnn.inference import BNNTarget

    module = MLP(hidden=(h, h), activation="relu").build(784, 1).requires_grad_(False)
    prior = GaussianPrior().bind(module)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 784, generator=g), torch.randn(n, 1, generator=g)
    return BNNTarget(module, prior, GaussianLikelihood(0.1), x, y, 1)


def worker_scaling(d: float, k: int, steps: int, warmup: int, path: str) -> dict:
    import torch

    from bayesfn.bayesnn import ImplicitVI
    from bayesfn.bayesnn.inference.linearised_entropy import half_logdet_lower_bound

    torch.manual_seed(0)
    target = _target(_width(d))
    empty = _status_mb("VmRSS")
    inference = ImplicitVI(generator="matrix", entropy="bound", num_samples=k)
    layout = inference.layout(target)
    sampler = inference.build_sampler(target, layout)
    warm = torch.randn(k, sampler.noise_dim)
    times, cpu = [], []
    for step in range(warmup + steps):
        if step == warmup:
            before = _reset_peak()
        start, start_cpu = time.perf_counter(), time.process_time()
        z = sampler.sample_noise(k)
        if path == "structured":  # what ImplicitVI runs: products through the features
            t, bound, v = half_logdet_lower_bound(
                sampler.features, z, 1e-3, num_iters=5, v0=warm, metric=sampler.metric
            )
            g = sampler.weights_from(t)
        else:  # products through the d-dimensional output (the official code's way)
            g, bound, v = half_logdet_lower_bound(sampler, z, 1e-3, num_iters=5, v0=warm)
        warm = v
        # a stand-in for the likelihood's gradient on θ: a fixed random cotangent
        loss = -bound.mean() + (g * 1e-3).sum()
        loss.backward()
        sampler.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return {
        "num_weights": target.num_weights,
        "noise_dim": sampler.noise_dim,
        "generator_parameters": sampler.num_parameters(),
        "K": k,
        "path": path,
        "step_s": statistics.median(times),
        "step_cpu_s": statistics.median(cpu),
        "rss_before_mb": before,
        "peak_over_before_mb": _peak_mb() - before,
        "peak_over_empty_mb": _peak_mb() - empty,
    }


def worker_fit(method: str, d: float, k: int, steps: int, warmup: int) -> dict:
    import torch

    from bayesfn.bayesnn import BNN, MLP, GaussianLikelihood, ImplicitVI, MeanFieldVI

    torch.manual_seed(0)
    h = _width(d)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1024, 784, generator=g), torch.randn(1024, 1, generator=g)
    total = warmup + steps
    if method == "livi":
        inference = ImplicitVI(
            generator="matrix", entropy="bound", num_samples=k, max_steps=total, batch_size=128
        )
    else:
        inference = MeanFieldVI(max_steps=total, batch_size=128, train_samples=k)
    model = BNN(
        MLP(hidden=(h, h), activation="relu"),
        likelihood=GaussianLikelihood(0.1),
        inference=inference,
    )
    stamps, cpu_stamps, before = [], [], []
    empty = _status_mb("VmRSS")  # before the method's parameters and optimiser state

    def record(info) -> None:
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        if info.step == warmup:  # the peak from here on is the steady state's
            before.append(_reset_peak())

    model.fit(x, y, seed=0, progress_bar=False, callbacks=[record])
    diffs = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:], strict=True)]
    cpu = [b - a for a, b in zip(cpu_stamps[warmup - 1 : -1], cpu_stamps[warmup:], strict=True)]
    return {
        "method": method,
        "num_weights": model.target_.num_weights,
        "K": k,
        "step_s": statistics.median(diffs),
        "step_cpu_s": statistics.median(cpu),
        "rss_before_mb": before[0],
        "peak_over_before_mb": _peak_mb() - before[0],
        "peak_over_empty_mb": _peak_mb() - empty,
        "diagnostics": model.fit_result_.diagnostics if method == "livi" else {},
    }


def _spawn(args: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args, "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["scaling", "vs-mfvi"], default="scaling")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 3e7])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--k", type=int, default=1, help="weight samples per step")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--path",
        choices=["structured", "generic"],
        default="structured",
        help="scaling: J products through the features (ImplicitVI) or the output",
    )
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads[0])
        kind, *rest = args.worker
        if kind == "scaling":
            out = worker_scaling(float(rest[0]), args.k, args.steps, args.warmup, args.path)
        else:
            out = worker_fit(kind, float(rest[0]), args.k, args.steps, args.warmup)
        out["threads"] = args.threads[0]
        print(json.dumps(out))
        return

    common = ["--k", str(args.k), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    common += ["--path", args.path]
    rows = []
    if args.part == "scaling":
        print(
            "| weights d | noise d0 | generator params | K | path | threads | s/step (wall) "
            "| s/step (CPU) | step peak MB | MB per 1M weights | total peak MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for threads in args.threads:
            for d in args.sizes:
                r = _spawn(["scaling", str(d), *common], threads)
                rows.append(r)
                print(
                    f"| {r['num_weights']:,} | {r['noise_dim']} | {r['generator_parameters']:,} "
                    f"| {r['K']} | {r['path']} | {threads} | {r['step_s']:.3f} "
                    f"| {r['step_cpu_s']:.3f} "
                    f"| {r['peak_over_before_mb']:.0f} "
                    f"| {r['peak_over_before_mb'] / (r['num_weights'] / 1e6):.0f} "
                    f"| {r['peak_over_empty_mb']:.0f} |",
                    flush=True,
                )
    else:
        print(
            "| weights d | K | threads | MFVI s/step | LIVI s/step | time ratio (wall) "
            "| time ratio (CPU) | MFVI peak MB | LIVI peak MB | memory ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for threads in args.threads:
            for d in args.sizes:
                res = {"mfvi": [], "livi": []}
                for rep in range(args.repeats):
                    order = ["mfvi", "livi"] if rep % 2 == 0 else ["livi", "mfvi"]
                    for method in order:
                        res[method].append(_spawn([method, str(d), *common], threads))

                def med(method, key, res=res):
                    return statistics.median(r[key] for r in res[method])

                rows.append({"d": res["livi"][0]["num_weights"], "threads": threads, "runs": res})
                t_m, t_l = med("mfvi", "step_s"), med("livi", "step_s")
                c_m, c_l = med("mfvi", "step_cpu_s"), med("livi", "step_cpu_s")
                m_m, m_l = med("mfvi", "peak_over_empty_mb"), med("livi", "peak_over_empty_mb")
                print(
                    f"| {res['livi'][0]['num_weights']:,} | {args.k} | {threads} "
                    f"| {t_m:.4f} | {t_l:.4f} | {t_l / t_m:.2f} | {c_l / c_m:.2f} "
                    f"| {m_m:.0f} | {m_l:.0f} | {m_l / max(m_m, 1e-9):.2f} |",
                    flush=True,
                )
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
