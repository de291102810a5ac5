"""GPU benchmark of the circuit sum-layer kernels: Triton vs the torch reference.

Run on a machine with a CUDA GPU and torch + triton installed, from the repository root::

    PYTHONPATH=. python benchmarks/kernels_cp_bench.py --out results.md

(no install step: it needs only torch and triton, which CUDA images usually carry; else
``pip install -e '.[gpu]'``). Without a GPU, ``--tiny`` runs the same code path on tiny
shapes under Triton's CPU interpreter (it sets ``TRITON_INTERPRET=1`` itself); the tests
run it that way.

What it does, for the CP layer ``y = W (a ⊙ b)`` (:func:`bayesfn.kernels.cp_layer`) in
squared (``signed=True``: real weights, signed inputs) and monotonic (``signed=False``:
log-weights, no signs) mode at ``K ∈ {16, 64, 256, 1024}`` (``K_in = K_out = K``,
``F = 16`` folds, the batch sized so that each input holds 2²⁴ values):

1. correctness first: Triton in float64 against the float64 torch reference on a batch
   slice (values, signs, gradients of ``left_log``, ``right_log``, ``weight``; tight
   tolerances), and the float32 Triton forward against the float64 reference on a batch
   slice (error measured relative to ``Σ|w·x|``, the sum's condition scale); any mismatch
   makes the script exit non-zero after writing what it has;
2. float32 timings (median of CUDA-event-timed repeats) of the forward and of
   forward + backward (gradients of both inputs and the weights) for both backends;
3. achieved GB/s and TFLOP/s from an algorithmic count (each tensor read or written once:
   forward ``2·F·B·K_in·K_out`` flops, backward twice that) and their fraction of the
   card's peak (table ``PEAKS``; FP32 peak is the non-tensor-core rate, since the kernels
   use IEEE fp32 dot products).

Then the squared-mode layer ``W (A ∘ B) Wᵀ`` (:func:`bayesfn.kernels.sq_layer`, forward)
at the same K, Triton (fused kernel or two-stage GEMMs by size) vs the torch reference.

``--methods fused,gemm`` times both Triton paths of the CP layer (one fused kernel vs a
Triton prologue / epilogue around cuBLAS) instead of the dispatcher's choice; ``--no-sq``
skips the squared-mode section (``benchmarks/kernels_sq_bench.py`` covers it with the
backward). Whole circuits and pyjuice: ``benchmarks/kernels_circuit_bench.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

PEAKS = {  # name fragment -> (HBM GB/s, FP32 non-tensor TFLOP/s, FP64 tensor TFLOP/s)
    "H200": (4800.0, 67.0, 67.0),
    "H100 PCIe": (2000.0, 51.0, 51.0),
    "H100 NVL": (3900.0, 60.0, 60.0),
    "H100": (3350.0, 67.0, 67.0),  # SXM5 (nvidia-smi: "NVIDIA H100 80GB HBM3")
    "A100": (2039.0, 19.5, 19.5),
}


def _peaks(name: str) -> tuple[float, float, float] | None:
    for key, value in PEAKS.items():
        if key in name:
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="markdown file to write the tables to")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny shapes; on CPU under TRITON_INTERPRET=1 (no GPU needed)",
    )
    parser.add_argument("--ks", default="16,64,256,1024", help="comma-separated K values")
    parser.add_argument(
        "--methods",
        default="triton",
        help="comma-separated Triton paths to time: 'triton' (the dispatcher's choice), "
        "'fused', 'gemm' (see bayesfn.kernels.triton_cp.cp_layer_triton)",
    )
    parser.add_argument("--no-sq", action="store_true", help="skip the squared-mode section")
    parser.add_argument(
        "--modes", default="signed,monotonic", help="CP modes to run: signed, monotonic"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also time a few tile configurations of the CP kernels"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=200.0,
        help="seconds after which remaining timings are skipped",
    )
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        if not args.tiny:
            print("no CUDA GPU: run with --tiny to exercise the code path on CPU", file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported
    import triton  # noqa: F401  (fail early and loudly if it is missing)

    from bayesfn.kernels import cp_layer, sq_layer, use_backend

    device = torch.device("cuda" if cuda else "cpu")
    card = torch.cuda.get_device_name(device) if cuda else "CPU (Triton interpreter)"
    peaks = _peaks(card) if cuda else None
    t_start = time.perf_counter()
    ks = [20] if args.tiny else [int(k) for k in args.ks.split(",")]
    folds = 1 if args.tiny else 16
    values_per_input = 2**24
    failures: list[str] = []
    lines = [
        f"# CP-layer kernels: Triton vs torch reference on {card}",
        "",
        f"torch {torch.__version__}, triton {sys.modules['triton'].__version__}, float32 "
        f"timings (median), F = {folds} folds, K_in = K_out = K; GB/s and TFLOP/s from an "
        "algorithmic count (each tensor once)"
        + (
            f"; peaks used: {peaks[0]:.0f} GB/s, {peaks[1]:.0f} TFLOP/s FP32 (non-tensor)"
            if peaks
            else "; no peak figures known for this device"
        ),
        "",
        "| mode | K | B | pass | triton path | torch ms | triton ms | speed-up | triton GB/s "
        "| % BW peak | triton TFLOP/s | % FP32 peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def timed(fn, reps_min=3, seconds=0.25):
        if not cuda:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        fn()
        torch.cuda.synchronize()
        times = []
        t_end = time.perf_counter() + seconds
        while len(times) < reps_min or (time.perf_counter() < t_end and len(times) < 100):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        return statistics.median(times)

    def make(signed, f, b, k, dtype, grad):
        g = torch.Generator(device="cpu").manual_seed(1234 + k + b)

        def rnd(*shape, scale=1.0):
            return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(
                device=device, dtype=dtype
            )

        ll, rl = rnd(f, b, k, scale=2.0), rnd(f, b, k, scale=2.0)
        if signed:
            ls = torch.randint(0, 2, (f, b, k), generator=g).to(device, dtype) * 2 - 1
            rs = torch.randint(0, 2, (f, b, k), generator=g).to(device, dtype) * 2 - 1
            w = rnd(f, k, k, scale=1.0 / math.sqrt(k))
        else:
            ls = rs = None
            w = rnd(f, k, k, scale=0.5)
        for t in (ll, rl, w):
            t.requires_grad_(grad)
        return ll, ls, rl, rs, w

    methods = args.methods.split(",")

    def run(backend, inputs, signed):
        if backend in ("fused", "gemm"):
            from bayesfn.kernels.triton_cp import cp_layer_triton

            return cp_layer_triton(*inputs, signed=signed, method=backend)
        with use_backend(backend):
            return cp_layer(*inputs, signed=signed)

    # ------------------------------------------------------------ correctness checks
    def check(signed, k, b_full, method):
        mode = "signed" if signed else "monotonic"
        b = min(b_full, 24 if args.tiny else 512)
        inputs = make(signed, folds, b, k, torch.float64, True)
        (lt, st), (lr, sr) = run(method, inputs, signed), run("torch", inputs, signed)
        with torch.no_grad():
            if signed:
                scale_log, _ = run(
                    "torch", (inputs[0], None, inputs[2], None, inputs[4].abs().log()), False
                )
            else:
                scale_log = lr
            # |y_triton - y_ref| / Σ|w·x|: the error a float GEMM can promise, whatever
            # the cancellation (log values of near-zero sums are ill-conditioned).
            err = (
                (st * (lt - scale_log).exp() - sr * (lr - scale_log).exp())
                .abs()
                .nan_to_num(0.0)
                .max()
                .item()
            )
        if not err <= 1e-12:
            failures.append(f"{mode} K={k}: float64 forward error {err:.2e} of Σ|w·x|")
        gout = torch.randn(lr.shape, dtype=lr.dtype, device=device)
        gt = torch.autograd.grad(lt, (inputs[0], inputs[2], inputs[4]), gout)
        gr = torch.autograd.grad(lr, (inputs[0], inputs[2], inputs[4]), gout)
        for name, a, r in zip(("left_log", "right_log", "weight"), gt, gr, strict=True):
            err = ((a - r).abs().max() / r.abs().max().clamp_min(1e-300)).item()
            if not err <= 1e-9:
                failures.append(f"{mode} K={k}: float64 grad {name} rel. error {err:.2e}")
        # float32 forward vs the float64 reference, relative to the condition scale Σ|w x|.
        inputs32 = [None if t is None else t.detach().float() for t in inputs]
        with torch.no_grad():
            l32, s32 = run(method, inputs32, signed)
            y32 = s32.double() * (l32.double() - lr).exp()  # y32 / |y_ref|
            y64 = sr
            if signed:
                wabs = inputs[4].detach().abs()
                scale_log, _ = run(
                    "torch", (inputs[0].detach(), None, inputs[2].detach(), None, wabs.log()), False
                )
            else:
                scale_log = lr
            err = ((y32 - y64).abs() * (lr - scale_log).exp()).nan_to_num(0.0).max().item()
        if not err <= 1e-4:
            failures.append(f"{mode} K={k}: float32 forward error {err:.2e} of Σ|w·x|")
        return failures

    # ---------------------------------------------------------------- CP-layer timings
    for signed in [m == "signed" for m in args.modes.split(",")]:
        mode = "squared (signed)" if signed else "monotonic"
        for k in ks:
            b = 8 if args.tiny else max(1, values_per_input // (folds * k))
            n_fail = len(failures)
            for method in methods:
                check(signed, k, b, method)
            if len(failures) > n_fail:
                print("\n".join(failures[n_fail:]), file=sys.stderr)
                continue
            if time.perf_counter() - t_start > args.budget:
                lines.append(f"| {mode} | {k} | {b} | skipped: time budget | | | | | | | | |")
                continue
            inputs = make(signed, folds, b, k, torch.float32, True)
            gout = torch.randn(folds, b, k, device=device)
            n_sign = 2 if signed else 0
            elems_in = folds * b * k
            flops_f = 2.0 * folds * b * k * k
            bytes_f = 4.0 * ((2 + n_sign) * elems_in + folds * k * k + 2 * elems_in)
            # backward: re-read inputs, weights, outputs, grad; write d_log, d_weight
            bytes_b = bytes_f + 4.0 * (
                (2 + n_sign) * elems_in + 2 * folds * k * k + 3 * elems_in + elems_in
            )
            for pass_name, flops, nbytes in (
                ("fwd", flops_f, bytes_f),
                ("fwd+bwd", 3 * flops_f, bytes_b),
            ):
                ms = {}
                for backend in ("torch", *methods):
                    if pass_name == "fwd":

                        def fn(backend=backend, inputs=inputs, signed=signed):
                            with torch.no_grad():
                                run(backend, inputs, signed)
                    else:

                        def fn(backend=backend, inputs=inputs, signed=signed, gout=gout):
                            out, _ = run(backend, inputs, signed)
                            torch.autograd.grad(out, (inputs[0], inputs[2], inputs[4]), gout)

                    ms[backend] = timed(fn)
                for method in methods:
                    gbs = nbytes / (ms[method] * 1e-3) / 1e9
                    tfs = flops / (ms[method] * 1e-3) / 1e12
                    pct_bw = f"{100 * gbs / peaks[0]:.0f}%" if peaks else "n/a"
                    pct_fl = f"{100 * tfs / peaks[1]:.0f}%" if peaks else "n/a"
                    lines.append(
                        f"| {mode} | {k} | {b} | {pass_name} | {method} | {ms['torch']:.3f} | "
                        f"{ms[method]:.3f} | {ms['torch'] / ms[method]:.2f}x | {gbs:.0f} | "
                        f"{pct_bw} | {tfs:.2f} | {pct_fl} |"
                    )
                    print(lines[-1], flush=True)
            inputs = gout = None
            if cuda:
                torch.cuda.empty_cache()

    # -------------------------------------------------------------- squared-mode layer
    lines += [
        "",
        "## Squared-mode layer `W (A ∘ B) Wᵀ` (forward, float32)",
        "",
        "| K | F | B | torch ms | triton ms | speed-up | triton GB/s | triton TFLOP/s | "
        "max error vs float64 (of Σ abs. terms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in [] if args.no_sq else ks:
        if time.perf_counter() - t_start > args.budget:
            lines.append(f"| {k} | | | skipped: time budget | | | | | |")
            continue
        b = 1 if args.tiny else max(1, values_per_input // (folds * k * k))
        g = torch.Generator(device="cpu").manual_seed(k)
        shape = (folds, b, k, k)
        ll = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(device)
        rl = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(device)
        ls = (torch.randint(0, 2, shape, generator=g) * 2 - 1).to(device, torch.float64)
        rs = (torch.randint(0, 2, shape, generator=g) * 2 - 1).to(device, torch.float64)
        w = (torch.randn(folds, k, k, generator=g, dtype=torch.float64) / k).to(device)
        with torch.no_grad(), use_backend("torch"):
            ref_log, ref_sign = sq_layer(ll, ls, rl, rs, w)
            scale_log, _ = sq_layer(ll, ls.abs(), rl, rs.abs(), w.abs())
        with torch.no_grad(), use_backend("triton"):
            t64_log, t64_sign = sq_layer(ll, ls, rl, rs, w)
        err64 = (
            (t64_sign * (t64_log - scale_log).exp() - ref_sign * (ref_log - scale_log).exp())
            .abs()
            .nan_to_num(0.0)
            .max()
            .item()
        )
        if not err64 <= 1e-12:
            failures.append(f"sq_layer K={k}: float64 error {err64:.2e} of Σ|terms|")
        f32 = [t.float() for t in (ll, ls, rl, rs, w)]
        with torch.no_grad(), use_backend("triton"):
            l32, s32 = sq_layer(*f32)
        err = (
            (
                (s32.double() * (l32.double() - ref_log).exp() - ref_sign).abs()
                * (ref_log - scale_log).exp()
            )
            .nan_to_num(0.0)
            .max()
            .item()
        )
        if not err <= 1e-4:
            failures.append(f"sq_layer K={k}: float32 error {err:.2e} of Σ|terms|")
        ms = {}
        for backend in ("torch", "triton"):

            def fn(backend=backend, f32=f32):
                with torch.no_grad(), use_backend(backend):
                    sq_layer(*f32)

            ms[backend] = timed(fn)
        flops = 4.0 * folds * b * k**3
        nbytes = 4.0 * (6 * folds * b * k * k + folds * k * k)
        lines.append(
            f"| {k} | {folds} | {b} | {ms['torch']:.3f} | {ms['triton']:.3f} | "
            f"{ms['torch'] / ms['triton']:.2f}x | {nbytes / ms['triton'] / 1e6:.0f} | "
            f"{flops / ms['triton'] / 1e9:.2f} | {err:.1e} |"
        )
        print(lines[-1], flush=True)
        ll = rl = ls = rs = w = f32 = None

    if args.sweep:
        from bayesfn.kernels.triton_cp import cp_layer_triton

        lines += [
            "",
            "## Tile sweep (signed, float32; blocks = B, O, K, warps, stages)",
            "",
            "| K | blocks | fwd ms | fwd+bwd ms |",
            "|---|---|---|---|",
        ]
        configs = {
            16: [
                (128, 16, 16, 4, 2),
                (256, 16, 16, 4, 2),
                (256, 16, 16, 8, 2),
                (64, 16, 16, 4, 2),
                (128, 16, 16, 4, 3),
                (512, 16, 16, 8, 2),
            ],
            64: [
                (64, 64, 32, 4, 2),
                (64, 32, 32, 4, 2),
                (128, 32, 32, 4, 2),
            ],
            256: [
                (64, 64, 32, 4, 2),
                (128, 64, 32, 8, 2),
                (128, 128, 32, 8, 2),
                (64, 128, 32, 4, 2),
                (128, 128, 16, 8, 3),
                (64, 64, 64, 4, 2),
                (128, 64, 16, 4, 3),
            ],
        }
        configs[1024] = configs[256]
        for k, cfgs in configs.items():
            if k not in ks and not args.tiny:
                continue
            if args.tiny and k != 16:
                continue
            b = 8 if args.tiny else values_per_input // (folds * k)
            inputs = make(True, folds, b, k, torch.float32, True)
            gout = torch.randn(folds, b, k, device=device)
            for cfg in cfgs:
                if time.perf_counter() - t_start > args.budget + 120:
                    break

                def fwd(cfg=cfg, inputs=inputs):
                    with torch.no_grad():
                        cp_layer_triton(*inputs, signed=True, blocks=cfg)

                def fwd_bwd(cfg=cfg, inputs=inputs, gout=gout):
                    out, _ = cp_layer_triton(*inputs, signed=True, blocks=cfg)
                    torch.autograd.grad(out, (inputs[0], inputs[2], inputs[4]), gout)

                try:
                    lines.append(f"| {k} | {cfg} | {timed(fwd):.3f} | {timed(fwd_bwd):.3f} |")
                except Exception as err:  # out of shared memory etc.: record and go on
                    lines.append(f"| {k} | {cfg} | failed: {type(err).__name__} | |")
                print(lines[-1], flush=True)
            inputs = gout = None

    lines += ["", f"wall time {time.perf_counter() - t_start:.0f} s"]
    if failures:
        lines += ["", "## MISMATCHES", "", *[f"- {m}" for m in failures]]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)
    if failures:
        print(f"FAILED: {len(failures)} mismatch(es) against the torch reference", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
