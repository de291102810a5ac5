"""Triton kernels for the folded CP sum layer ``y[f, b] = W[f] (a[f, b] ⊙ b[f, b])``.

Same contract as the torch reference :func:`bayesfn.kernels.cp_layer.cp_layer`, which
is the single entry point (it dispatches here; see :mod:`bayesfn.kernels.backend`).
Importing this module imports triton; nothing else in :mod:`bayesfn.kernels` does.

Algorithm. One program owns a ``(fold, batch tile, output tile)`` block of ``y`` and
walks the ``K_in`` tiles once. Each tile forms ``x = sign · exp(log_a + log_b − m)``
against a running row maximum ``m`` (and, for monotonic layers whose weights are
log-weights ``θ``, ``W = exp(θ − μ)`` against a running column maximum ``μ``); whenever a
new tile raises ``m`` or ``μ``, the accumulator is rescaled by ``exp(old − new)`` first,
as in flash attention. The sum itself is a linear-domain ``tl.dot`` at full precision
(``input_precision="ieee"``: no TF32, whose 10-bit mantissa loses cancellations; float64
operands give a float64 ``dot``), so negative partial sums and cancellation across tiles
are as exact as an ordinary float GEMM. The epilogue writes ``(log|y| + m + μ, sign y)``
with exact zero as ``(−inf, 0)``, and the per-row / per-column maxima for the backward.

Backward (``g`` = gradient of ``out_log``; the sign output has none). With
``G[b, o] = g · sign(y) · exp(m_b + μ_o − log|y|)`` (0 where ``y = 0``, matching the
reference's zero gradient there), ``X[b, k] = sign · exp(log_a + log_b − m_b)`` and
``V[o, k] = W`` (signed) or ``exp(θ − μ_o)`` (monotonic):

* ``∂/∂log_a = ∂/∂log_b = X ⊙ (G V)`` — a GEMM over ``K_out`` (kernel ``_cp_bwd_x``);
* ``∂/∂W = Gᵀ X`` (signed) or ``∂/∂θ = V ⊙ (Gᵀ X)`` (monotonic) — a GEMM over the
  batch, split into ``S`` batch chunks whose per-fold partial sums ``(F, S, K_out, K_in)``
  are written without atomics and summed afterwards (kernel ``_cp_bwd_w``).

``G``, ``X`` and ``V`` are formed on the fly from the saved forward outputs.

Large K (:class:`_CPLayerGemm`, chosen above :data:`GEMM_MIN_K`): the fused kernels'
IEEE ``tl.dot`` runs on the FMA units at about 16-18 TFLOP/s on an H200 and loses to
cuBLAS SGEMM from ``K ≈ 256``. There a Triton prologue writes ``X`` (shifted by the row
maxima) once, ``torch.matmul`` does ``X Vᵀ`` on cuBLAS (IEEE fp32 unless the caller enabled
TF32 globally, exactly as for the torch reference), and a Triton epilogue writes
``(log|y| + shift, sign y)``; the backward runs its two products on cuBLAS.

Supported dtypes: float32 and float64 (the accumulator has the input dtype).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

__all__ = ["GEMM_MIN_K", "METHODS", "cp_layer_triton"]

METHODS = ("auto", "fused", "gemm")

#: ``cp_layer_triton(method="auto")`` uses the fused kernels up to this ``max(K_in, K_out)``
#: and the Triton-prologue / cuBLAS / Triton-epilogue path above it.
GEMM_MIN_K = 128

_NEG_INF = tl.constexpr(float("-inf"))


# --------------------------------------------------------------------------- kernels
@triton.jit
def _load_x(
    L,
    LS,
    R,
    RS,
    f,
    offs_b,
    offs_k,
    mask_b,
    mask_k,
    s_lf,
    s_lb,
    s_lk,
    s_af,
    s_ab,
    s_ak,
    s_rf,
    s_rb,
    s_rk,
    s_cf,
    s_cb,
    s_ck,
    HAS_SIGN: tl.constexpr,
):
    """``(log_a + log_b, sign_a · sign_b)`` of a ``(BLOCK_B, BLOCK_K)`` tile; masked
    entries are ``(-inf, 0)``."""
    mask = mask_b[:, None] & mask_k[None, :]
    lp = L + f * s_lf + offs_b[:, None] * s_lb + offs_k[None, :] * s_lk
    rp = R + f * s_rf + offs_b[:, None] * s_rb + offs_k[None, :] * s_rk
    xl = tl.load(lp, mask=mask, other=_NEG_INF) + tl.load(rp, mask=mask, other=_NEG_INF)
    if HAS_SIGN:
        ap = LS + f * s_af + offs_b[:, None] * s_ab + offs_k[None, :] * s_ak
        cp = RS + f * s_cf + offs_b[:, None] * s_cb + offs_k[None, :] * s_ck
        xs = tl.load(ap, mask=mask, other=0.0) * tl.load(cp, mask=mask, other=0.0)
    else:
        xs = tl.where(mask, 1.0, 0.0).to(xl.dtype)
    return xl, xs


@triton.jit
def _cp_fwd(
    L,
    LS,
    R,
    RS,
    W,
    OUT_LOG,
    OUT_SIGN,
    ROW_M,
    COL_M,
    B,
    K_IN,
    K_OUT,
    s_lf,
    s_lb,
    s_lk,
    s_af,
    s_ab,
    s_ak,
    s_rf,
    s_rb,
    s_rk,
    s_cf,
    s_cb,
    s_ck,
    s_wf,
    s_wo,
    s_wk,
    SIGNED: tl.constexpr,
    HAS_SIGN: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_O: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    f = tl.program_id(1)
    n_o = tl.cdiv(K_OUT, BLOCK_O)
    pid_b = pid // n_o
    pid_o = pid % n_o
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_b = offs_b < B
    mask_o = offs_o < K_OUT
    dt = OUT_LOG.dtype.element_ty

    m = tl.full([BLOCK_B], _NEG_INF, dt)  # running row max of log_a + log_b
    mu = tl.full([BLOCK_O], _NEG_INF, dt)  # running column max of θ (monotonic)
    acc = tl.zeros([BLOCK_B, BLOCK_O], dt)
    for k0 in range(0, K_IN, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K_IN
        xl, xs = _load_x(
            L,
            LS,
            R,
            RS,
            f,
            offs_b,
            offs_k,
            mask_b,
            mask_k,
            s_lf,
            s_lb,
            s_lk,
            s_af,
            s_ab,
            s_ak,
            s_rf,
            s_rb,
            s_rk,
            s_cf,
            s_cb,
            s_ck,
            HAS_SIGN,
        )
        m_new = tl.maximum(m, tl.max(xl, axis=1))
        m_use = tl.where(m_new == _NEG_INF, 0.0, m_new)  # all-zero rows so far: no shift
        alpha = tl.exp(m - m_use)  # 0 while m is -inf; acc is 0 then anyway
        x = xs * tl.exp(xl - m_use[:, None])
        wmask = mask_k[:, None] & mask_o[None, :]
        wp = W + f * s_wf + offs_o[None, :] * s_wo + offs_k[:, None] * s_wk  # (K, O) tile
        if SIGNED:
            w = tl.load(wp, mask=wmask, other=0.0)
            acc = acc * alpha[:, None]
        else:
            th = tl.load(wp, mask=wmask, other=_NEG_INF)
            mu_new = tl.maximum(mu, tl.max(th, axis=0))
            mu_use = tl.where(mu_new == _NEG_INF, 0.0, mu_new)
            w = tl.exp(th - mu_use[None, :])
            acc = acc * (alpha[:, None] * tl.exp(mu - mu_use)[None, :])
            mu = mu_new
        acc = tl.dot(x.to(dt), w.to(dt), acc, input_precision="ieee", out_dtype=dt)
        m = m_new

    m_fin = tl.where(m == _NEG_INF, 0.0, m)
    shift = m_fin[:, None]
    if not SIGNED:
        mu_fin = tl.where(mu == _NEG_INF, 0.0, mu)
        shift = shift + mu_fin[None, :]
    zero = acc == 0.0
    out_log = tl.where(zero, _NEG_INF, tl.log(tl.where(zero, 1.0, tl.abs(acc))) + shift)
    out_sign = tl.where(acc > 0.0, 1.0, tl.where(acc < 0.0, -1.0, 0.0))
    o_off = f * B * K_OUT + offs_b[:, None] * K_OUT + offs_o[None, :]
    omask = mask_b[:, None] & mask_o[None, :]
    tl.store(OUT_LOG + o_off, out_log.to(dt), mask=omask)
    tl.store(OUT_SIGN + o_off, out_sign.to(dt), mask=omask)
    if pid_o == 0:
        tl.store(ROW_M + f * B + offs_b, m_fin, mask=mask_b)
    if not SIGNED:
        if pid_b == 0:
            tl.store(COL_M + f * K_OUT + offs_o, mu_fin, mask=mask_o)


@triton.jit
def _load_g(
    GRAD,
    OUT_LOG,
    OUT_SIGN,
    COL_M,
    row_m,
    f,
    offs_b,
    offs_o,
    mask_b,
    mask_o,
    s_gf,
    s_gb,
    s_go,
    B,
    K_OUT,
    SIGNED: tl.constexpr,
):
    """``G = g · sign(y) · exp(m_b + μ_o − log|y|)`` on a ``(BLOCK_B, BLOCK_O)`` tile."""
    mask = mask_b[:, None] & mask_o[None, :]
    g = tl.load(
        GRAD + f * s_gf + offs_b[:, None] * s_gb + offs_o[None, :] * s_go, mask=mask, other=0.0
    )
    o_off = f * B * K_OUT + offs_b[:, None] * K_OUT + offs_o[None, :]
    ly = tl.load(OUT_LOG + o_off, mask=mask, other=_NEG_INF)
    sy = tl.load(OUT_SIGN + o_off, mask=mask, other=0.0)
    e = row_m[:, None] - ly
    if not SIGNED:
        mu = tl.load(COL_M + f * K_OUT + offs_o, mask=mask_o, other=0.0)
        e = e + mu[None, :]
    e = tl.where(ly == _NEG_INF, 0.0, e)
    return tl.where(ly == _NEG_INF, 0.0, g * sy * tl.exp(e))


@triton.jit
def _load_v(
    W, COL_M, f, offs_o, offs_k, mask_o, mask_k, s_wf, s_wo, s_wk, K_OUT, SIGNED: tl.constexpr
):
    """``V = W`` (signed) or ``exp(θ − μ_o)`` (monotonic) on an ``(BLOCK_O, BLOCK_K)`` tile."""
    mask = mask_o[:, None] & mask_k[None, :]
    wp = W + f * s_wf + offs_o[:, None] * s_wo + offs_k[None, :] * s_wk
    if SIGNED:
        v = tl.load(wp, mask=mask, other=0.0)
    else:
        mu = tl.load(COL_M + f * K_OUT + offs_o, mask=mask_o, other=0.0)
        v = tl.exp(tl.load(wp, mask=mask, other=_NEG_INF) - mu[:, None])
    return v


@triton.jit
def _cp_bwd_x(
    L,
    LS,
    R,
    RS,
    W,
    OUT_LOG,
    OUT_SIGN,
    ROW_M,
    COL_M,
    GRAD,
    DX,
    B,
    K_IN,
    K_OUT,
    s_lf,
    s_lb,
    s_lk,
    s_af,
    s_ab,
    s_ak,
    s_rf,
    s_rb,
    s_rk,
    s_cf,
    s_cb,
    s_ck,
    s_wf,
    s_wo,
    s_wk,
    s_gf,
    s_gb,
    s_go,
    SIGNED: tl.constexpr,
    HAS_SIGN: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_O: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    f = tl.program_id(1)
    n_k = tl.cdiv(K_IN, BLOCK_K)
    pid_b = pid // n_k
    pid_k = pid % n_k
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    mask_b = offs_b < B
    mask_k = offs_k < K_IN
    dt = DX.dtype.element_ty
    row_m = tl.load(ROW_M + f * B + offs_b, mask=mask_b, other=0.0)

    acc = tl.zeros([BLOCK_B, BLOCK_K], dt)
    for o0 in range(0, K_OUT, BLOCK_O):
        offs_o = o0 + tl.arange(0, BLOCK_O)
        mask_o = offs_o < K_OUT
        g = _load_g(
            GRAD,
            OUT_LOG,
            OUT_SIGN,
            COL_M,
            row_m,
            f,
            offs_b,
            offs_o,
            mask_b,
            mask_o,
            s_gf,
            s_gb,
            s_go,
            B,
            K_OUT,
            SIGNED,
        )
        v = _load_v(W, COL_M, f, offs_o, offs_k, mask_o, mask_k, s_wf, s_wo, s_wk, K_OUT, SIGNED)
        acc = tl.dot(g.to(dt), v.to(dt), acc, input_precision="ieee", out_dtype=dt)

    xl, xs = _load_x(
        L,
        LS,
        R,
        RS,
        f,
        offs_b,
        offs_k,
        mask_b,
        mask_k,
        s_lf,
        s_lb,
        s_lk,
        s_af,
        s_ab,
        s_ak,
        s_rf,
        s_rb,
        s_rk,
        s_cf,
        s_cb,
        s_ck,
        HAS_SIGN,
    )
    x = xs * tl.exp(xl - row_m[:, None])
    d_off = f * B * K_IN + offs_b[:, None] * K_IN + offs_k[None, :]
    tl.store(DX + d_off, (acc * x).to(dt), mask=mask_b[:, None] & mask_k[None, :])


@triton.jit
def _cp_bwd_w(
    L,
    LS,
    R,
    RS,
    W,
    OUT_LOG,
    OUT_SIGN,
    ROW_M,
    COL_M,
    GRAD,
    DW,
    B,
    K_IN,
    K_OUT,
    B_CHUNK,
    s_lf,
    s_lb,
    s_lk,
    s_af,
    s_ab,
    s_ak,
    s_rf,
    s_rb,
    s_rk,
    s_cf,
    s_cb,
    s_ck,
    s_wf,
    s_wo,
    s_wk,
    s_gf,
    s_gb,
    s_go,
    SIGNED: tl.constexpr,
    HAS_SIGN: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_O: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    f = tl.program_id(1)
    split = tl.program_id(2)
    n_split = tl.num_programs(2)
    n_k = tl.cdiv(K_IN, BLOCK_K)
    pid_o = pid // n_k
    pid_k = pid % n_k
    offs_o = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    mask_o = offs_o < K_OUT
    mask_k = offs_k < K_IN
    dt = DW.dtype.element_ty

    acc = tl.zeros([BLOCK_O, BLOCK_K], dt)
    b_lo = split * B_CHUNK
    for b0 in range(b_lo, b_lo + B_CHUNK, BLOCK_B):
        offs_b = b0 + tl.arange(0, BLOCK_B)
        mask_b = offs_b < B
        row_m = tl.load(ROW_M + f * B + offs_b, mask=mask_b, other=0.0)
        g = _load_g(
            GRAD,
            OUT_LOG,
            OUT_SIGN,
            COL_M,
            row_m,
            f,
            offs_b,
            offs_o,
            mask_b,
            mask_o,
            s_gf,
            s_gb,
            s_go,
            B,
            K_OUT,
            SIGNED,
        )
        xl, xs = _load_x(
            L,
            LS,
            R,
            RS,
            f,
            offs_b,
            offs_k,
            mask_b,
            mask_k,
            s_lf,
            s_lb,
            s_lk,
            s_af,
            s_ab,
            s_ak,
            s_rf,
            s_rb,
            s_rk,
            s_cf,
            s_cb,
            s_ck,
            HAS_SIGN,
        )
        x = xs * tl.exp(xl - row_m[:, None])
        acc = tl.dot(tl.trans(g.to(dt)), x.to(dt), acc, input_precision="ieee", out_dtype=dt)

    if not SIGNED:
        v = _load_v(W, COL_M, f, offs_o, offs_k, mask_o, mask_k, s_wf, s_wo, s_wk, K_OUT, SIGNED)
        acc = acc * v
    d_off = ((f * n_split + split) * K_OUT + offs_o[:, None]) * K_IN + offs_k[None, :]
    tl.store(DW + d_off, acc.to(dt), mask=mask_o[:, None] & mask_k[None, :])


@triton.jit
def _prep_x(
    L,
    LS,
    R,
    RS,
    X,
    ROW_M,
    B,
    K_IN,
    s_lf,
    s_lb,
    s_lk,
    s_af,
    s_ab,
    s_ak,
    s_rf,
    s_rb,
    s_rk,
    s_cf,
    s_cb,
    s_ck,
    HAS_SIGN: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """GEMM path, prologue: ``X = sign · exp(log_a + log_b − m_b)`` (contiguous) and the
    row maxima ``m_b``; two sweeps over ``K_in`` (the maximum, then the values)."""
    pid_b = tl.program_id(0)
    f = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < B
    dt = X.dtype.element_ty
    m = tl.full([BLOCK_B], _NEG_INF, dt)
    for k0 in range(0, K_IN, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        xl, _ = _load_x(
            L,
            LS,
            R,
            RS,
            f,
            offs_b,
            offs_k,
            mask_b,
            offs_k < K_IN,
            s_lf,
            s_lb,
            s_lk,
            s_af,
            s_ab,
            s_ak,
            s_rf,
            s_rb,
            s_rk,
            s_cf,
            s_cb,
            s_ck,
            False,
        )
        m = tl.maximum(m, tl.max(xl, axis=1))
    m = tl.where(m == _NEG_INF, 0.0, m)
    for k0 in range(0, K_IN, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K_IN
        xl, xs = _load_x(
            L,
            LS,
            R,
            RS,
            f,
            offs_b,
            offs_k,
            mask_b,
            mask_k,
            s_lf,
            s_lb,
            s_lk,
            s_af,
            s_ab,
            s_ak,
            s_rf,
            s_rb,
            s_rk,
            s_cf,
            s_cb,
            s_ck,
            HAS_SIGN,
        )
        x = tl.where(xs == 0.0, 0.0, xs * tl.exp(xl - m[:, None]))
        x_off = (f * B + offs_b[:, None]) * K_IN + offs_k[None, :]
        tl.store(X + x_off, x.to(dt), mask=mask_b[:, None] & mask_k[None, :])
    tl.store(ROW_M + f * B + offs_b, m, mask=mask_b)


@triton.jit
def _epilogue(
    Y,
    ROW_M,
    COL_M,
    OUT_LOG,
    OUT_SIGN,
    B,
    K_OUT,
    SIGNED: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_O: tl.constexpr,
):
    """GEMM path, epilogue: ``(log|y| + m_b (+ μ_o), sign y)`` with zero as ``(−inf, 0)``."""
    pid = tl.program_id(0)
    f = tl.program_id(1)
    n_o = tl.cdiv(K_OUT, BLOCK_O)
    offs_b = (pid // n_o) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_o = (pid % n_o) * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_b = offs_b < B
    mask_o = offs_o < K_OUT
    mask = mask_b[:, None] & mask_o[None, :]
    off = (f * B + offs_b[:, None]) * K_OUT + offs_o[None, :]
    y = tl.load(Y + off, mask=mask, other=0.0)
    shift = tl.load(ROW_M + f * B + offs_b, mask=mask_b, other=0.0)[:, None]
    if not SIGNED:
        shift = shift + tl.load(COL_M + f * K_OUT + offs_o, mask=mask_o, other=0.0)[None, :]
    zero = y == 0.0
    out_log = tl.where(zero, _NEG_INF, tl.log(tl.where(zero, 1.0, tl.abs(y))) + shift)
    out_sign = tl.where(y > 0.0, 1.0, tl.where(y < 0.0, -1.0, 0.0))
    tl.store(OUT_LOG + off, out_log.to(Y.dtype.element_ty), mask=mask)
    tl.store(OUT_SIGN + off, out_sign.to(Y.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- launchers
def _pow2_clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def _blocks(
    b: int,
    k_in: int,
    k_out: int,
    dtype: torch.dtype,
    device: torch.device,
    forward: bool = False,
):
    """``(BLOCK_B, BLOCK_O, BLOCK_K, num_warps, num_stages)``: a fixed heuristic, no
    autotuning, picked from a tile sweep on an H200 (benchmarks/RESULTS.md). Two pipeline
    stages keep every kernel under ~150 KB of shared memory (checked by compiling for
    sm_90). On CPU (interpreter) the smallest legal tiles (16), so that tests cross tile
    borders.
    """
    if device.type != "cuda":
        return 16, 16, 16, 4, 1
    if dtype == torch.float64:
        return _pow2_clamp(b, 16, 32), _pow2_clamp(k_out, 16, 32), 16, 4, 2
    block_o = _pow2_clamp(k_out, 16, 128 if forward else 64)
    block_b = _pow2_clamp(b, 16, 128 if block_o <= 32 else 64)
    block_k = _pow2_clamp(k_in, 16, 32)
    return block_b, block_o, block_k, 4, 2


def _strides3(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _sign_args(left_sign, right_sign, left_log):
    if left_sign is None or right_sign is None:
        return left_log, left_log, (0, 0, 0), (0, 0, 0), False
    return left_sign, right_sign, _strides3(left_sign), _strides3(right_sign), True


def _forward(left_log, left_sign, right_log, right_sign, weight, signed, blocks=None):
    f, b, k_in = left_log.shape
    k_out = weight.shape[1]
    dt, dev = left_log.dtype, left_log.device
    out_log = torch.empty((f, b, k_out), dtype=dt, device=dev)
    out_sign = torch.empty_like(out_log)
    row_m = torch.empty((f, b), dtype=dt, device=dev)
    col_m = torch.zeros((f, k_out), dtype=dt, device=dev)
    bb, bo, bk, nw, ns = blocks or _blocks(b, k_in, k_out, dt, dev, forward=True)
    ls, rs, s_a, s_c, has_sign = _sign_args(left_sign, right_sign, left_log)
    grid = (triton.cdiv(b, bb) * triton.cdiv(k_out, bo), f)
    _cp_fwd[grid](
        left_log,
        ls,
        right_log,
        rs,
        weight,
        out_log,
        out_sign,
        row_m,
        col_m,
        b,
        k_in,
        k_out,
        *_strides3(left_log),
        *s_a,
        *_strides3(right_log),
        *s_c,
        *_strides3(weight),
        SIGNED=signed,
        HAS_SIGN=has_sign,
        BLOCK_B=bb,
        BLOCK_O=bo,
        BLOCK_K=bk,
        num_warps=nw,
        num_stages=ns,
    )
    return out_log, out_sign, row_m, col_m


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def _backward(ctx, grad):
    (left_log, left_sign, right_log, right_sign, weight, out_log, out_sign, row_m, col_m) = (
        ctx.saved_tensors
    )
    signed, blocks = ctx.signed, ctx.blocks
    f, b, k_in = left_log.shape
    k_out = weight.shape[1]
    dt, dev = left_log.dtype, left_log.device
    bb, bo, bk, nw, ns = blocks or _blocks(b, k_in, k_out, dt, dev)
    ls, rs, s_a, s_c, has_sign = _sign_args(left_sign, right_sign, left_log)
    common = (
        *_strides3(left_log),
        *s_a,
        *_strides3(right_log),
        *s_c,
        *_strides3(weight),
        *_strides3(grad),
    )
    meta = dict(
        SIGNED=signed, HAS_SIGN=has_sign, BLOCK_O=bo, BLOCK_K=bk, num_warps=nw, num_stages=ns
    )
    dx = dw = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
        dx = torch.empty((f, b, k_in), dtype=dt, device=dev)
        grid = (triton.cdiv(b, bb) * triton.cdiv(k_in, bk), f)
        _cp_bwd_x[grid](
            left_log,
            ls,
            right_log,
            rs,
            weight,
            out_log,
            out_sign,
            row_m,
            col_m,
            grad,
            dx,
            b,
            k_in,
            k_out,
            *common,
            BLOCK_B=bb,
            **meta,
        )
    if ctx.needs_input_grad[4]:
        bb = min(bb, 64)  # the batch is this GEMM's reduction dim: keep its tile modest
        tiles = triton.cdiv(k_out, bo) * triton.cdiv(k_in, bk)
        # Split the batch so that about 4 programs per SM run; each split writes its own
        # per-fold partial sum (no atomics) and the splits are summed afterwards.
        want = max(1, (4 * _num_sms(dev)) // max(1, f * tiles))
        n_split = max(1, min(want, triton.cdiv(b, bb)))
        b_chunk = triton.cdiv(triton.cdiv(b, n_split), bb) * bb
        n_split = triton.cdiv(b, b_chunk)
        partial = torch.empty((f, n_split, k_out, k_in), dtype=dt, device=dev)
        _cp_bwd_w[(tiles, f, n_split)](
            left_log,
            ls,
            right_log,
            rs,
            weight,
            out_log,
            out_sign,
            row_m,
            col_m,
            grad,
            partial,
            b,
            k_in,
            k_out,
            b_chunk,
            *common,
            BLOCK_B=bb,
            **meta,
        )
        dw = partial[:, 0] if n_split == 1 else partial.sum(dim=1)
    return dx, dw


class _CPLayer(torch.autograd.Function):
    """Fused CP layer with Triton forward and backward; see the module docstring."""

    @staticmethod
    def forward(ctx, left_log, left_sign, right_log, right_sign, weight, signed, blocks):
        out_log, out_sign, row_m, col_m = _forward(
            left_log, left_sign, right_log, right_sign, weight, signed, blocks
        )
        ctx.save_for_backward(
            left_log, left_sign, right_log, right_sign, weight, out_log, out_sign, row_m, col_m
        )
        ctx.signed, ctx.blocks = signed, blocks
        ctx.mark_non_differentiable(out_sign)
        return out_log, out_sign

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_log, grad_sign):
        if grad_log is None:
            return None, None, None, None, None, None, None
        dx, dw = _backward(ctx, grad_log)
        d_left = dx if ctx.needs_input_grad[0] else None
        d_right = dx if ctx.needs_input_grad[2] else None
        return d_left, None, d_right, None, dw, None, None


# ------------------------------------------------------------------ GEMM path (large K)
def _gemm_weights(weight, signed):
    """``(V, μ)``: the linear weights of the GEMM and the per-row shift ``μ`` of the
    monotonic log-weights (zeros for signed layers)."""
    if signed:
        return weight, torch.zeros(weight.shape[:2], dtype=weight.dtype, device=weight.device)
    mu = weight.amax(dim=-1)
    mu = torch.where(torch.isfinite(mu), mu, torch.zeros_like(mu))
    return (weight - mu.unsqueeze(-1)).exp(), mu


def _gemm_forward(left_log, left_sign, right_log, right_sign, weight, signed):
    """Triton prologue (``X`` and its row maxima), cuBLAS ``X Vᵀ``, Triton epilogue."""
    f, b, k_in = left_log.shape
    k_out = weight.shape[1]
    dt, dev = left_log.dtype, left_log.device
    x = torch.empty((f, b, k_in), dtype=dt, device=dev)
    row_m = torch.empty((f, b), dtype=dt, device=dev)
    ls, rs, s_a, s_c, has_sign = _sign_args(left_sign, right_sign, left_log)
    bb = 16 if dev.type != "cuda" else 32
    bk = 16 if dev.type != "cuda" else 128
    _prep_x[(triton.cdiv(b, bb), f)](
        left_log,
        ls,
        right_log,
        rs,
        x,
        row_m,
        b,
        k_in,
        *_strides3(left_log),
        *s_a,
        *_strides3(right_log),
        *s_c,
        HAS_SIGN=has_sign,
        BLOCK_B=bb,
        BLOCK_K=bk,
    )
    v, mu = _gemm_weights(weight, signed)
    y = torch.matmul(x, v.transpose(-1, -2))  # (F, B, K_out): cuBLAS, IEEE fp32 / fp64
    out_log = torch.empty_like(y)
    out_sign = torch.empty_like(y)
    bo = 16 if dev.type != "cuda" else 64
    _epilogue[(triton.cdiv(b, bb) * triton.cdiv(k_out, bo), f)](
        y, row_m, mu, out_log, out_sign, b, k_out, SIGNED=signed, BLOCK_B=bb, BLOCK_O=bo
    )
    return out_log, out_sign, x, row_m, v, mu


class _CPLayerGemm(torch.autograd.Function):
    """CP layer for large ``K``: fused Triton prologue / epilogue around cuBLAS GEMMs.

    Backward with the notation of the module docstring: ``G`` from the saved outputs,
    ``∂/∂log_a = X ⊙ (G V)`` and ``∂/∂W = Gᵀ X`` (``V ⊙ Gᵀ X`` for log-weights), the two
    products on cuBLAS.
    """

    @staticmethod
    def forward(ctx, left_log, left_sign, right_log, right_sign, weight, signed):
        out_log, out_sign, x, row_m, v, mu = _gemm_forward(
            left_log, left_sign, right_log, right_sign, weight, signed
        )
        ctx.save_for_backward(out_log, out_sign, x, row_m, v, mu)
        ctx.signed = signed
        ctx.mark_non_differentiable(out_sign)
        return out_log, out_sign

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_log, grad_sign):
        if grad_log is None:
            return (None,) * 6
        out_log, out_sign, x, row_m, v, mu = ctx.saved_tensors
        live = out_sign != 0
        e = row_m.unsqueeze(-1) - torch.where(live, out_log, 0.0)
        if not ctx.signed:
            e = e + mu.unsqueeze(1)
        g = torch.where(live, grad_log * out_sign * e.exp(), 0.0)
        dx = dw = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            dx = x * torch.matmul(g, v)
        if ctx.needs_input_grad[4]:
            dw = torch.matmul(g.transpose(-1, -2), x)
            if not ctx.signed:
                dw = dw * v
        d_left = dx if ctx.needs_input_grad[0] else None
        d_right = dx if ctx.needs_input_grad[2] else None
        return d_left, None, d_right, None, dw, None


def cp_layer_triton(
    left_log: torch.Tensor,
    left_sign: torch.Tensor | None,
    right_log: torch.Tensor,
    right_sign: torch.Tensor | None,
    weight: torch.Tensor,
    *,
    signed: bool,
    method: str = "auto",
    blocks: tuple[int, int, int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton CP layer; arguments, shapes and result as in
    :func:`bayesfn.kernels.cp_layer.cp_layer` (``(F, B, K_in)`` inputs, ``(F, K_out, K_in)``
    weights, ``(F, B, K_out)`` outputs).

    Gradients flow to ``left_log``, ``right_log`` and ``weight`` (signs are discrete and get
    none; ``once_differentiable``: no double backward). ``blocks`` =
    ``(BLOCK_B, BLOCK_O, BLOCK_K, num_warps, num_stages)`` overrides the tile heuristic
    (tests, tile sweeps) of the fused kernels.

    ``method``: ``"fused"`` (the kernels above: one pass, IEEE ``tl.dot`` on the FMA
    units), ``"gemm"`` (Triton prologue and epilogue around cuBLAS GEMMs, which win at
    large ``K``) or ``"auto"``: ``"gemm"`` when ``max(K_in, K_out) >``
    :data:`GEMM_MIN_K`, else ``"fused"``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if left_log.dim() != 3 or right_log.shape != left_log.shape:
        raise ValueError(
            f"left_log and right_log must both be (F, B, K_in), got {tuple(left_log.shape)} "
            f"and {tuple(right_log.shape)}"
        )
    f, b, k_in = left_log.shape
    if weight.dim() != 3 or weight.shape[0] != f or weight.shape[2] != k_in:
        raise ValueError(
            f"weight must be (F, K_out, K_in) = ({f}, K_out, {k_in}), got {tuple(weight.shape)}"
        )
    if signed and (left_sign is None or right_sign is None):
        raise ValueError("cp_layer(signed=True) needs left_sign and right_sign")
    dt = left_log.dtype
    if right_log.dtype != dt or weight.dtype != dt:
        raise TypeError(
            f"left_log, right_log and weight must share one dtype, got {dt}, "
            f"{right_log.dtype} and {weight.dtype}"
        )
    if left_sign is not None and right_sign is not None:
        left_sign, right_sign = left_sign.to(dt), right_sign.to(dt)
    else:
        left_sign = right_sign = None
    if f == 0 or b == 0 or k_in == 0 or weight.shape[1] == 0:
        from bayesfn.kernels.backend import use_backend  # empty shapes: nothing to launch
        from bayesfn.kernels.cp_layer import cp_layer

        with use_backend("torch"):
            return cp_layer(left_log, left_sign, right_log, right_sign, weight, signed=signed)
    if method == "auto":
        method = "gemm" if max(k_in, weight.shape[1]) > GEMM_MIN_K else "fused"
    if method == "gemm":
        return _CPLayerGemm.apply(left_log, left_sign, right_log, right_sign, weight, bool(signed))
    return _CPLayer.apply(left_log, left_sign, right_log, right_sign, weight, bool(signed), blocks)
