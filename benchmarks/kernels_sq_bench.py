"""GPU benchmark of the squared-mode layer ``Y = W (A ∘ B) Wᵀ``: torch vs Triton.

    PYTHONPATH=. python benchmarks/kernels_sq_bench.py --out sq.md

For ``K ∈ {16, 64, 256, 1024}`` (``K_in = K_out = K``, ``F = 16`` folds, batch ``B`` so
that each input holds 2²⁴ values, i.e. ``B = 1`` at ``K = 1024`` as for a partition
function):

1. correctness first, float64 on a batch slice: each Triton method (``fused``: one
   kernel per output tile; ``two_stage``: two CP-layer GEMMs) against the float64 torch
   reference: values relative to ``Σ|terms|`` (≤ 1e-12), signs, and the gradients of
   ``left_log``, ``right_log`` and ``weight`` (relative ≤ 1e-9, back-propagating only
   from outputs with ``|Y| ≥ 1e-3 Σ|terms|``: near-cancelling outputs have
   ill-conditioned log-gradients: with all outputs weighted, fused and two-stage Triton
   both differed from torch by 2-3e-8 relative at ``K = 1024`` on the H200); then the
   float32 forward relative to ``Σ|terms|`` (≤ 1e-4). Any mismatch: exit status 1.
2. float32 timings (median of CUDA-event-timed repeats) of the forward and of
   forward + backward for torch and each Triton method, with achieved GB/s and TFLOP/s
   (forward ``4·F·B·K³`` flops; fwd+bwd counted as three times that).

The fused kernel is skipped at ``K = 1024`` (it recomputes ``X Wᵀ`` per output tile:
84 ms there in the first H200 run). ``--tiny`` runs tiny shapes on CPU under Triton's
interpreter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--ks", default="16,64,256,1024")
    parser.add_argument("--budget", type=float, default=60.0)
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        if not args.tiny:
            print("no CUDA GPU: run with --tiny", file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"
    import triton  # noqa: F401

    from bayesfn.kernels import sq_layer, use_backend
    from bayesfn.kernels.triton_sq import sq_layer_triton

    device = torch.device("cuda" if cuda else "cpu")
    card = torch.cuda.get_device_name(device) if cuda else "CPU (Triton interpreter)"
    ks = [18] if args.tiny else [int(k) for k in args.ks.split(",")]
    folds = 1 if args.tiny else 16
    t_start = time.perf_counter()
    failures: list[str] = []

    def timed(fn):
        if not cuda:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        fn()
        torch.cuda.synchronize()
        times, t_end = [], time.perf_counter() + 0.2
        while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 50):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        return statistics.median(times)

    def make(b, k, dtype, seed):
        g = torch.Generator().manual_seed(seed)
        shape = (folds, b, k, k)
        ll = torch.randn(shape, generator=g, dtype=torch.float64) * 2
        rl = torch.randn(shape, generator=g, dtype=torch.float64) * 2
        ll[torch.rand(shape, generator=g) < 0.05] = -torch.inf
        ls = (torch.randint(0, 2, shape, generator=g) * 2 - 1).double()
        rs = (torch.randint(0, 2, shape, generator=g) * 2 - 1).double()
        ls[torch.isneginf(ll)] = 0.0
        w = torch.randn(folds, k, k, generator=g, dtype=torch.float64) / k
        return [t.to(device, dtype) for t in (ll, ls, rl, rs, w)]

    def call(method, inputs):
        if method == "torch":
            with use_backend("torch"):
                return sq_layer(*inputs)
        return sq_layer_triton(*inputs, method=method)

    def rel_to_scale(log, sign, ref_log, ref_sign, scale_log):
        y = sign.double() * (log.double() - scale_log).exp()
        return (y - ref_sign * (ref_log - scale_log).exp()).abs().nan_to_num(0.0).max().item()

    lines = [
        f"# Squared-mode layer `W (A ∘ B) Wᵀ`: Triton vs torch on {card}",
        "",
        f"torch {torch.__version__}, triton {sys.modules['triton'].__version__}; float32 "
        f"timings (median), F = {folds}, K_in = K_out = K; fused = one Triton kernel per "
        "output tile, two_stage = two Triton CP-layer GEMMs; fwd+bwd = gradients of both "
        "inputs and the weights.",
        "",
        "| K | B | pass | method | ms | speed-up vs torch | GB/s | TFLOP/s | float32 err "
        "(of Σ abs. terms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in ks:
        b = 2 if args.tiny else max(1, 2**24 // (folds * k * k))
        methods = ["fused", "two_stage"] if (k <= 256 or args.tiny) else ["two_stage"]
        # ---- float64 correctness on a slice
        inputs = make(min(b, 4), k, torch.float64, seed=k)
        leaves = [inputs[i].requires_grad_() for i in (0, 2, 4)]
        ref_log, ref_sign = call("torch", inputs)
        with torch.no_grad(), use_backend("torch"):
            scale_log, _ = sq_layer(
                inputs[0], inputs[1].abs(), inputs[2], inputs[3].abs(), inputs[4].abs()
            )
        # Gradients of log|Y| at entries where Y nearly cancels are ill-conditioned (any
        # two summation orders disagree there), so the gradient check weights only
        # entries with |Y| ≥ 1e-3 Σ|terms|; the values check above covers every entry.
        well = (ref_log.detach() - scale_log) > -3 * 2.302585092994046
        gout = torch.randn(ref_log.shape, dtype=torch.float64, device=device) * well
        g_ref = torch.autograd.grad(ref_log, leaves, gout)
        errs32 = {}
        for method in methods:
            out_log, out_sign = call(method, inputs)
            err = rel_to_scale(out_log.detach(), out_sign, ref_log.detach(), ref_sign, scale_log)
            if not err <= 1e-12 or not torch.equal(out_sign, ref_sign):
                failures.append(f"K={k} {method}: float64 error {err:.2e} of Σ|terms| or signs")
            for name, a, r in zip(
                ("left_log", "right_log", "weight"),
                torch.autograd.grad(out_log, leaves, gout),
                g_ref,
                strict=True,
            ):
                e = ((a - r).abs().max() / r.abs().max().clamp_min(1e-300)).item()
                if not e <= 1e-9:
                    failures.append(f"K={k} {method}: float64 grad {name} rel. error {e:.2e}")
            with torch.no_grad():
                l32, s32 = call(method, [t.detach().float() for t in inputs])
            errs32[method] = rel_to_scale(l32, s32, ref_log.detach(), ref_sign, scale_log)
            if not errs32[method] <= 1e-4:
                failures.append(f"K={k} {method}: float32 error {errs32[method]:.2e}")
        inputs = leaves = gout = None
        if failures:
            print("\n".join(failures), file=sys.stderr)
            continue
        # ---- float32 timings
        inputs = make(b, k, torch.float32, seed=k + 1)
        for i in (0, 2, 4):
            inputs[i].requires_grad_()
        gout = torch.randn(folds, b, k, k, device=device)
        flops = 4.0 * folds * b * k**3
        nbytes = 4.0 * (6 * folds * b * k * k + folds * k * k)
        for pass_name in ("fwd", "fwd+bwd"):
            ms = {}
            for method in ["torch", *methods]:
                if time.perf_counter() - t_start > args.budget:
                    lines.append(f"| {k} | {b} | {pass_name} | {method} | skipped: budget |||||")
                    continue
                if pass_name == "fwd":

                    def fn(method=method, inputs=inputs):
                        with torch.no_grad():
                            call(method, inputs)
                else:

                    def fn(method=method, inputs=inputs, gout=gout):
                        out, _ = call(method, inputs)
                        torch.autograd.grad(out, (inputs[0], inputs[2], inputs[4]), gout)

                ms[method] = timed(fn)
                mult = 1 if pass_name == "fwd" else 3
                lines.append(
                    f"| {k} | {b} | {pass_name} | {method} | {ms[method]:.3f} | "
                    f"{ms['torch'] / ms[method]:.2f}x | "
                    f"{mult * nbytes / ms[method] / 1e6:.0f} | "
                    f"{mult * flops / ms[method] / 1e9:.2f} | "
                    f"{errs32.get(method, float('nan')):.1e} |"
                )
                print(lines[-1], flush=True)
        inputs = gout = None
        if cuda:
            torch.cuda.empty_cache()

    lines += ["", f"wall time {time.perf_counter() - t_start:.0f} s"]
    if failures:
        lines += ["", "## MISMATCHES", "", *[f"- {m}" for m in failures]]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
