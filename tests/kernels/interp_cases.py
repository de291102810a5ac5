"""Triton kernels vs the float64 torch reference, run under Triton's CPU interpreter.

Not collected by a plain ``pytest`` run (the file name has no ``test_`` prefix): it needs
``TRITON_INTERPRET=1`` set before triton is imported, so ``test_triton_interpreter.py``
runs it in a subprocess with that environment. On CPU the kernels use 16-wide tiles, so
the shapes below (K and B around 20) cross tile borders and leave tiles partly or fully
masked.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 before triton is imported", allow_module_level=True)
pytest.importorskip("triton")

from bayesfn.kernels import cp_layer, sq_layer, use_backend
from bayesfn.kernels.triton_cp import cp_layer_triton
from bayesfn.kernels.triton_sq import sq_layer_triton

D = torch.float64


def _reference(*args, signed):
    with use_backend("torch"):
        return cp_layer(*args, signed=signed)


def _inputs(f, b, k_in, k_out, *, signed, seed=0, neg_inf_frac=0.1, dtype=D):
    g = torch.Generator().manual_seed(seed)
    ll = torch.randn(f, b, k_in, generator=g, dtype=D) * 3
    rl = torch.randn(f, b, k_in, generator=g, dtype=D) * 3
    ll[torch.rand(f, b, k_in, generator=g) < neg_inf_frac] = -torch.inf
    rl[torch.rand(f, b, k_in, generator=g) < neg_inf_frac] = -torch.inf
    if signed:
        ls = torch.randint(0, 2, (f, b, k_in), generator=g).to(D) * 2 - 1
        rs = torch.randint(0, 2, (f, b, k_in), generator=g).to(D) * 2 - 1
        ls[torch.isneginf(ll)] = 0.0
        rs[torch.isneginf(rl)] = 0.0
        w = torch.randn(f, k_out, k_in, generator=g, dtype=D)
    else:
        ls = rs = None
        w = torch.randn(f, k_out, k_in, generator=g, dtype=D)  # log-weights
    cast = [None if t is None else t.to(dtype) for t in (ll, ls, rl, rs, w)]
    return cast


def _compare(inputs, *, signed, rtol=1e-10, grads=True, blocks=None, method="fused"):
    """Values, signs and gradients of Triton against the torch reference (same inputs)."""
    ll, ls, rl, rs, w = (None if t is None else t.clone() for t in inputs)
    leaves = [t.requires_grad_() for t in (ll, rl, w)]
    out_t, sign_t = cp_layer_triton(ll, ls, rl, rs, w, signed=signed, blocks=blocks, method=method)
    out_r, sign_r = _reference(ll, ls, rl, rs, w, signed=signed)
    assert out_t.shape == out_r.shape and out_t.dtype == out_r.dtype
    assert torch.equal(sign_t, sign_r)
    assert torch.equal(torch.isneginf(out_t), torch.isneginf(out_r))
    assert torch.equal(sign_r == 0, torch.isneginf(out_r))  # (−inf, 0) is exact zero
    fin = torch.isfinite(out_r)
    torch.testing.assert_close(out_t[fin], out_r[fin], rtol=rtol, atol=rtol)
    if grads:
        gout = torch.randn(out_r.shape, generator=torch.Generator().manual_seed(7), dtype=D)
        gout = gout.to(out_r.dtype)
        g_t = torch.autograd.grad(out_t, leaves, gout)
        g_r = torch.autograd.grad(out_r, leaves, gout)
        for a, r in zip(g_t, g_r, strict=True):
            assert torch.isfinite(a).all()
            scale = r.abs().max().clamp_min(1.0)
            torch.testing.assert_close(a, r, rtol=rtol, atol=rtol * scale)
    return out_t, sign_t


@pytest.mark.parametrize("method", ["fused", "gemm"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "monotonic"])
def test_awkward_shapes_values_signs_gradients(signed, method):
    # K_in, K_out, B not multiples of the 16-wide tiles; several folds; −inf inputs.
    _compare(_inputs(2, 19, 21, 18, signed=signed), signed=signed, method=method)


def test_float32_against_float64_reference():
    inputs = _inputs(2, 17, 20, 17, signed=True, seed=3, dtype=torch.float32)
    out_t, sign_t = cp_layer_triton(*inputs, signed=True)
    out_r, sign_r = _reference(*[None if t is None else t.double() for t in inputs], signed=True)
    # Compare y / Σ|w·x| (what a float32 GEMM can promise under cancellation).
    ll, _, rl, _, w = (t.double() for t in inputs)
    scale, _ = _reference(ll, None, rl, None, w.abs().log(), signed=False)
    err = sign_t.double() * (out_t.double() - scale).exp() - sign_r * (out_r - scale).exp()
    assert err.nan_to_num(0.0).abs().max() < 1e-5


def test_monotonic_with_and_without_signs_and_huge_magnitudes():
    ll, _, rl, _, w = _inputs(1, 18, 17, 20, signed=False, seed=1)
    ll, rl, w = ll - 800.0, rl - 900.0, w + 700.0  # linear values under/overflow
    ones = torch.ones_like(ll)
    out_none, _ = _compare((ll, None, rl, None, w), signed=False)
    out_ones, sign_ones = _compare((ll, ones, rl, ones, w), signed=False)
    torch.testing.assert_close(out_none, out_ones, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(out_none[sign_ones != 0]).all()


def test_all_negative_weights():
    ll, _, rl, _, w = _inputs(1, 17, 18, 17, signed=True, seed=2, neg_inf_frac=0.0)
    ones = torch.ones_like(ll)
    _, sign = _compare((ll, ones, rl, ones, -w.abs()), signed=True)
    assert (sign == -1).all()


@pytest.mark.parametrize("method", ["fused", "gemm"])
def test_exact_cancellation_gives_minus_inf_and_zero_sign(method):
    # Duplicate input columns j and j + 10 with weights w and −w (first half of the rows)
    # or w and w (second half). With equal logs every x is ±1 and the weights are dyadic,
    # so every partial sum is exact in any order: the first half is exactly zero.
    f, b, half, k_out = 2, 19, 10, 20
    g = torch.Generator().manual_seed(4)
    ll = torch.full((f, b, 2 * half), 0.7, dtype=D)
    rl = torch.full((f, b, 2 * half), -0.2, dtype=D)
    s = (torch.randint(0, 2, (f, b, half), generator=g) * 2 - 1).to(D)
    ls = torch.cat([s, s], dim=-1)
    rs = torch.ones_like(ls)
    ll[:, 3, :] = -torch.inf  # one batch row of exact zeros as well
    ls[:, 3, :] = 0.0
    wh = torch.randint(-4, 5, (f, k_out, half), generator=g).to(D) / 4
    flip = torch.ones(f, k_out, 1, dtype=D)
    flip[:, : k_out // 2] = -1.0
    w = torch.cat([wh, wh * flip], dim=-1)
    out, sign = _compare((ll, ls, rl, rs, w), signed=True, method=method)
    assert torch.isneginf(out[:, :, : k_out // 2]).all()
    assert (sign[:, :, : k_out // 2] == 0).all()
    assert torch.isneginf(out[:, 3]).all()


def test_fully_masked_tiles_and_rows():
    # K tile 0 (columns 0..15) is −inf everywhere, batch tile 1 (rows 16..) is −inf
    # everywhere, and one row has a single finite entry in the last K tile.
    ll, ls, rl, rs, w = _inputs(1, 20, 19, 17, signed=True, seed=5, neg_inf_frac=0.0)
    ll[:, :, :16] = -torch.inf
    ll[:, 16:, :] = -torch.inf
    ll[:, 0, :18] = -torch.inf
    for lg, sg in ((ll, ls), (rl, rs)):
        sg[torch.isneginf(lg)] = 0.0
    out, sign = _compare((ll, ls, rl, rs, w), signed=True)
    assert torch.isneginf(out[:, 16:]).all() and (sign[:, 16:] == 0).all()
    mono = _compare((ll, None, rl, None, w), signed=False)[0]
    assert torch.isneginf(mono[:, 16:]).all()
    mono = _compare((ll, None, rl, None, w), signed=False, method="gemm")[0]
    assert torch.isneginf(mono[:, 16:]).all()


def test_running_max_rises_across_tiles_and_minus_inf_log_weights():
    f, b, k_in, k_out = 1, 17, 40, 18
    ll, _, rl, _, w = _inputs(f, b, k_in, k_out, signed=False, seed=6, neg_inf_frac=0.0)
    ll = ll + torch.linspace(-60.0, 60.0, k_in, dtype=D)  # every new tile raises the max
    w = w - torch.linspace(0.0, 80.0, k_in, dtype=D)  # and the weight max falls
    w[:, 2, :] = -torch.inf  # a row of zero weights: output exactly zero
    for method in ("fused", "gemm"):
        out, sign = _compare((ll, None, rl, None, w), signed=False, method=method)
        assert torch.isneginf(out[:, :, 2]).all() and (sign[:, :, 2] == 0).all()


def test_strided_and_broadcast_inputs_and_other_tiles():
    ll, ls, rl, rs, w = _inputs(2, 1, 20, 19, signed=True, seed=8)
    ll, ls = ll.expand(2, 18, 20), ls.expand(2, 18, 20)  # stride 0 over the batch
    rl2 = torch.randn(2, 20, 18, dtype=D).transpose(1, 2)  # non-contiguous
    rs2 = torch.ones_like(rl2)
    _compare((ll, ls, rl2, rs2, w.transpose(1, 2).contiguous().transpose(1, 2)), signed=True)
    _compare((ll, ls, rl2, rs2, w), signed=True, blocks=(32, 16, 32, 4, 1))


def test_dispatch_routes_by_backend():
    inputs = _inputs(2, 5, 6, 4, signed=True, seed=9)
    leaf = inputs[0].requires_grad_()
    with use_backend("triton"):
        out, _ = cp_layer(*inputs, signed=True)
    assert "CPLayer" in type(out.grad_fn).__name__
    with use_backend("auto"):  # CPU tensors: the torch reference
        out, _ = cp_layer(*inputs, signed=True)
    assert "CPLayer" not in type(out.grad_fn).__name__
    with pytest.raises(TypeError, match="float32 or float64"), use_backend("triton"):
        cp_layer(*[t.half() for t in inputs], signed=True)
    with pytest.raises(ValueError, match="method must be one of"):
        cp_layer_triton(*inputs, signed=True, method="cublas")
    out, _ = cp_layer_triton(*inputs[:4], torch.randn(2, 300, 6, dtype=D), signed=True)
    assert "Gemm" in type(out.grad_fn).__name__  # K_out = 300 > GEMM_MIN_K
    assert leaf.grad is None


# ------------------------------------------------------------------- squared mode
def _sq_inputs(f, b_left, b_right, k_in, k_out, seed):
    g = torch.Generator().manual_seed(seed)

    def side(b):
        lg = torch.randn(f, b, k_in, k_in, generator=g, dtype=D) * 2
        lg[torch.rand(f, b, k_in, k_in, generator=g) < 0.1] = -torch.inf
        sg = (torch.randint(0, 2, (f, b, k_in, k_in), generator=g) * 2 - 1).to(D)
        sg[torch.isneginf(lg)] = 0.0
        return lg, sg

    (ll, ls), (rl, rs) = side(b_left), side(b_right)
    return ll, ls, rl, rs, torch.randn(f, k_out, k_in, generator=g, dtype=D)


def _sq_compare(ll, ls, rl, rs, w, *, method, rtol=1e-10):
    """Triton squared mode against the float64 torch reference: values, signs, zeros and
    the gradients of ``left_log``, ``right_log`` and ``weight``."""
    ll, rl, w = (t.detach().clone().requires_grad_() for t in (ll, rl, w))
    out_t, sign_t = sq_layer_triton(ll, ls, rl, rs, w, method=method)
    with use_backend("torch"):
        out_r, sign_r = sq_layer(ll, ls, rl, rs, w)
    assert out_t.shape == out_r.shape
    assert torch.equal(sign_t, sign_r)
    fin = torch.isfinite(out_r)
    assert torch.equal(fin, torch.isfinite(out_t))
    assert torch.equal(sign_r == 0, ~fin)
    torch.testing.assert_close(out_t[fin], out_r[fin], rtol=rtol, atol=rtol)
    gout = torch.randn(out_r.shape, generator=torch.Generator().manual_seed(11), dtype=D)
    g_t = torch.autograd.grad(out_t, (ll, rl, w), gout)
    g_r = torch.autograd.grad(out_r, (ll, rl, w), gout)
    for a, r in zip(g_t, g_r, strict=True):
        assert a.shape == r.shape and torch.isfinite(a).all()
        scale = r.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a, r, rtol=rtol, atol=rtol * scale)
    return out_t, sign_t, g_t


@pytest.mark.parametrize(
    ("method", "k_out"), [("fused", 12), ("two_stage", 17)], ids=["fused", "two_stage"]
)
def test_sq_layer_values_and_gradients_with_broadcast_batch(method, k_out):
    # Several folds, B = 1 broadcast against B = 2, K_in = 18 crossing the 16-wide tiles,
    # 10 % exact zeros (−inf), a fully masked row tile and one all-zero sample.
    ll, ls, rl, rs, w = _sq_inputs(2, 1, 2, 18, k_out, seed=10)
    ll[:, :, :16, :] = -torch.inf
    rl[1, 1] = -torch.inf
    ls[torch.isneginf(ll)] = 0.0
    rs[torch.isneginf(rl)] = 0.0
    out, sign, _ = _sq_compare(ll, ls, rl, rs, w, method=method)
    assert torch.isneginf(out[1, 1]).all() and (sign[1, 1] == 0).all()


def test_sq_layer_all_negative_weights_two_stage(monkeypatch):
    # (−W) X (−W)ᵀ = W X Wᵀ: with X > 0 every entry is positive. The stages run on the CP
    # layer's cuBLAS GEMM path here (as they do above GEMM_MIN_K).
    from bayesfn.kernels import triton_cp

    monkeypatch.setattr(triton_cp, "GEMM_MIN_K", 8)
    ll, _, rl, _, w = _sq_inputs(1, 1, 1, 17, 17, seed=12)
    ll, rl = ll.clamp_min(-5.0), rl.clamp_min(-5.0)
    ones = torch.ones_like(ll)
    _, sign, _ = _sq_compare(ll, ones, rl, ones, -w.abs(), method="two_stage")
    assert (sign == 1).all()


@pytest.mark.parametrize("method", ["fused", "two_stage"])
def test_sq_layer_exact_cancellation(method):
    # X = all ones, W rows (w, −w) on duplicated columns: W X Wᵀ = (W 1)(W 1)ᵀ = 0 exactly
    # (dyadic weights: every partial sum is exact in any order); the gradients are the
    # reference's zeros there.
    f, half, k_out = 1, 9, 17 if method == "two_stage" else 12
    x = torch.zeros(f, 1, 2 * half, 2 * half, dtype=D)
    s = torch.ones_like(x)
    wh = torch.randint(-4, 5, (f, k_out, half), generator=torch.Generator().manual_seed(13))
    w = torch.cat([wh, -wh], dim=-1).to(D) / 4
    out, sign, grads = _sq_compare(x, s, x, s, w, method=method)
    assert torch.isneginf(out).all() and (sign == 0).all()
    assert all((g == 0).all() for g in grads)


def test_sq_layer_float32_two_stage_against_float64():
    ll, ls, rl, rs, w = _sq_inputs(1, 1, 2, 17, 18, seed=14)
    out32, sign32 = sq_layer_triton(*(t.float() for t in (ll, ls, rl, rs, w)), method="two_stage")
    with use_backend("torch"):
        out64, sign64 = sq_layer(ll, ls, rl, rs, w)
        scale, _ = sq_layer(ll, ls.abs(), rl, rs.abs(), w.abs())  # Σ |terms|
    err = sign32.double() * (out32.double() - scale).exp() - sign64 * (out64 - scale).exp()
    assert err.abs().max() < 1e-5


def test_sq_dispatch_routes_by_backend():
    ll, ls, rl, rs, w = _sq_inputs(1, 1, 1, 5, 4, seed=15)
    ll.requires_grad_()
    with use_backend("triton"):
        out, _ = sq_layer(ll, ls, rl, rs, w)
    assert "SQLayer" in type(out.grad_fn).__name__
    with pytest.raises(ValueError, match="method must be one of"):
        sq_layer_triton(ll, ls, rl, rs, w, method="three_stage")


def test_benchmark_tiny_runs_end_to_end(tmp_path):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels_cp_bench.py"
    spec = importlib.util.spec_from_file_location("kernels_cp_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.md"
    assert bench.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| squared (signed) | 20 |" in text and "| monotonic | 20 |" in text
    assert "MISMATCH" not in text
