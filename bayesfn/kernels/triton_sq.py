"""Triton kernel for the squared-mode layer ``Y[f, b] = W[f] (A[f, b] ∘ B[f, b]) W[f]ᵀ``.

Same contract as the torch reference :func:`bayesfn.kernels.cp_layer.sq_layer` (the single
entry point, which dispatches here). Importing this module imports triton.

One program owns a ``(K_out × K_out)`` output tile of one ``(fold, batch)`` matrix and
never materialises ``X = A ∘ B`` or ``W ⊗ W``. For each ``K_in`` row tile ``I`` it first
forms ``T = X[I, :] W[o₂, :]ᵀ`` (a ``(BLOCK_I, BLOCK_O)`` tile) with a running per-row
maximum ``t_i`` of ``log|X[i, :]|``, then adds ``W[o₁, I] diag(exp(t_i − m)) T`` into the
accumulator against a running scalar maximum ``m`` (rescaling the accumulator by
``exp(m_old − m_new)`` when ``m`` grows, flash-attention style). All products are
linear-domain ``tl.dot`` at full precision (``input_precision="ieee"``). The epilogue
writes ``(log|Y| + m, sign Y)`` with exact zero as ``(−inf, 0)``.

``T`` is recomputed for every ``o₁`` tile, so this fused kernel does redundant work once
``K_out`` exceeds one tile (``BLOCK_O``; measured 0.02x of torch at ``K = 1024``). Larger
``K_out`` therefore runs as two ordinary GEMMs instead (:func:`_two_stage`): the signed
CP-layer forward of :mod:`bayesfn.kernels.triton_cp` computes ``T = X Wᵀ`` with rows
``(b, i)``, then ``W T`` on ``Tᵀ``, carrying ``T`` in signed-log form in between.
``sq_layer_triton(method="auto")`` picks the fused kernel when ``K_out ≤ BLOCK_O`` and the
two-stage GEMMs otherwise; :func:`bayesfn.kernels.sq_layer` under backend ``"auto"`` only
sends shapes to Triton where it measured faster than torch
(:data:`bayesfn.kernels.backend.SQ_TRITON_MAX_K`).

Backward (:class:`_SQLayer`): ``∂L/∂X = Wᵀ (∂L/∂Y) W`` is the same sandwich with ``Wᵀ``
and runs on the same Triton kernels with ``∂L/∂Y`` in signed-log form; the input
gradients are ``X ⊙ ∂L/∂X``; the weight gradient, a reduction over the batch, runs as
batched cuBLAS GEMMs. Supported dtypes: float32 and float64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from bayesfn.kernels.cp_layer import _finite_or_zero

__all__ = ["sq_layer_triton"]

_NEG_INF = tl.constexpr(float("-inf"))


@triton.jit
def _sq_fwd(
    L,
    LS,
    R,
    RS,
    W,
    OUT_LOG,
    OUT_SIGN,
    B,
    K_IN,
    K_OUT,
    s_l0,
    s_l1,
    s_l2,
    s_l3,
    s_a0,
    s_a1,
    s_a2,
    s_a3,
    s_r0,
    s_r1,
    s_r2,
    s_r3,
    s_c0,
    s_c1,
    s_c2,
    s_c3,
    s_wf,
    s_wo,
    s_wk,
    BLOCK_O: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
):
    fb = tl.program_id(0)  # F·B may exceed the 65535 limit of grid axes 1 and 2
    pid = tl.program_id(1)
    f = fb // B
    b = fb % B
    n_o = tl.cdiv(K_OUT, BLOCK_O)
    offs_o1 = (pid // n_o) * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_o2 = (pid % n_o) * BLOCK_O + tl.arange(0, BLOCK_O)
    mask_o1 = offs_o1 < K_OUT
    mask_o2 = offs_o2 < K_OUT
    dt = OUT_LOG.dtype.element_ty
    lb = L + f * s_l0 + b * s_l1
    ab = LS + f * s_a0 + b * s_a1
    rb = R + f * s_r0 + b * s_r1
    cb = RS + f * s_c0 + b * s_c1
    wb = W + f * s_wf

    acc = tl.zeros([BLOCK_O, BLOCK_O], dt)
    m = tl.full([BLOCK_O], _NEG_INF, dt)  # the scalar running max, kept broadcast
    for i0 in range(0, K_IN, BLOCK_I):
        offs_i = i0 + tl.arange(0, BLOCK_I)
        mask_i = offs_i < K_IN
        t = tl.zeros([BLOCK_I, BLOCK_O], dt)
        mt = tl.full([BLOCK_I], _NEG_INF, dt)
        for j0 in range(0, K_IN, BLOCK_J):
            offs_j = j0 + tl.arange(0, BLOCK_J)
            mask_j = offs_j < K_IN
            mask = mask_i[:, None] & mask_j[None, :]
            xl = tl.load(
                lb + offs_i[:, None] * s_l2 + offs_j[None, :] * s_l3, mask=mask, other=_NEG_INF
            )
            xl += tl.load(
                rb + offs_i[:, None] * s_r2 + offs_j[None, :] * s_r3, mask=mask, other=_NEG_INF
            )
            xs = tl.load(ab + offs_i[:, None] * s_a2 + offs_j[None, :] * s_a3, mask=mask, other=0.0)
            xs *= tl.load(
                cb + offs_i[:, None] * s_c2 + offs_j[None, :] * s_c3, mask=mask, other=0.0
            )
            mt_new = tl.maximum(mt, tl.max(xl, axis=1))
            mt_use = tl.where(mt_new == _NEG_INF, 0.0, mt_new)
            x = xs * tl.exp(xl - mt_use[:, None])
            w2 = tl.load(
                wb + offs_o2[None, :] * s_wo + offs_j[:, None] * s_wk,
                mask=mask_j[:, None] & mask_o2[None, :],
                other=0.0,
            )  # (J, O2)
            t = t * tl.exp(mt - mt_use)[:, None]
            t = tl.dot(x.to(dt), w2.to(dt), t, input_precision="ieee", out_dtype=dt)
            mt = mt_new
        m_new = tl.maximum(m, tl.max(mt, axis=0))
        m_use = tl.where(m_new == _NEG_INF, 0.0, m_new)
        scale = tl.where(mt == _NEG_INF, 0.0, tl.exp(mt - tl.max(m_use, axis=0)))  # ≤ 1
        w1 = tl.load(
            wb + offs_o1[:, None] * s_wo + offs_i[None, :] * s_wk,
            mask=mask_o1[:, None] & mask_i[None, :],
            other=0.0,
        )  # (O1, I)
        acc = acc * tl.exp(m - m_use)[:, None]
        acc = tl.dot((w1 * scale[None, :]).to(dt), t, acc, input_precision="ieee", out_dtype=dt)
        m = m_new

    m_fin = tl.where(m == _NEG_INF, 0.0, m)
    zero = acc == 0.0
    out_log = tl.where(zero, _NEG_INF, tl.log(tl.where(zero, 1.0, tl.abs(acc))) + m_fin[:, None])
    out_sign = tl.where(acc > 0.0, 1.0, tl.where(acc < 0.0, -1.0, 0.0))
    o_off = (fb * K_OUT + offs_o1[:, None]) * K_OUT + offs_o2[None, :]
    omask = mask_o1[:, None] & mask_o2[None, :]
    tl.store(OUT_LOG + o_off, out_log.to(dt), mask=omask)
    tl.store(OUT_SIGN + o_off, out_sign.to(dt), mask=omask)


def _blocks(k_in: int, k_out: int, dtype: torch.dtype, device: torch.device):
    """``(BLOCK_O, BLOCK_I, BLOCK_J, num_warps, num_stages)``; 16s on CPU so that tests
    cross tile borders."""
    if device.type != "cuda":
        return 16, 16, 16, 4, 1
    p2 = triton.next_power_of_2
    bi = max(16, min(32, p2(k_in)))
    if dtype == torch.float64:
        return max(16, min(32, p2(k_out))), 16, 16, 4, 2
    return max(16, min(64, p2(k_out))), bi, bi, 4, 2


def _sq_forward(left_log, left_sign, right_log, right_sign, weight, blocks=None):
    f, b, k_in, _ = left_log.shape
    k_out = weight.shape[1]
    dt, dev = left_log.dtype, left_log.device
    out_log = torch.empty((f, b, k_out, k_out), dtype=dt, device=dev)
    out_sign = torch.empty_like(out_log)
    bo, bi, bj, nw, ns = blocks or _blocks(k_in, k_out, dt, dev)
    n_o = triton.cdiv(k_out, bo)
    _sq_fwd[(f * b, n_o * n_o)](
        left_log,
        left_sign,
        right_log,
        right_sign,
        weight,
        out_log,
        out_sign,
        b,
        k_in,
        k_out,
        *left_log.stride(),
        *left_sign.stride(),
        *right_log.stride(),
        *right_sign.stride(),
        *weight.stride(),
        BLOCK_O=bo,
        BLOCK_I=bi,
        BLOCK_J=bj,
        num_warps=nw,
        num_stages=ns,
    )
    return out_log, out_sign


def _reference(left_log, left_sign, right_log, right_sign, weight):
    from bayesfn.kernels.backend import use_backend
    from bayesfn.kernels.cp_layer import sq_layer

    with use_backend("torch"):
        return sq_layer(left_log, left_sign, right_log, right_sign, weight)


def _two_stage(left_log, left_sign, right_log, right_sign, weight, blocks=None):
    """``W X Wᵀ`` as two Triton CP-layer GEMMs (no redundant work at large ``K_out``).

    Each stage is the signed CP-layer forward (its fused kernel, or its cuBLAS GEMM path
    above :data:`bayesfn.kernels.triton_cp.GEMM_MIN_K`). Stage 1 has rows ``(b, i)``:
    ``T[b, i, :] = W X[b, i, :]``, i.e. ``T = X Wᵀ`` in signed-log form. Stage 2 runs the
    same layer on ``Tᵀ`` (rows ``(b, o₂)``, reduction over ``i``):
    ``Y[b, :, o₂] = W T[b, :, o₂]``. ``T`` is carried in log form between the stages (one
    transposed copy), so no magnitude under- or overflows; the price is that ``T``'s
    rounding enters ``Y`` relative to ``|log T|``.
    """
    from bayesfn.kernels import triton_cp

    f, b, k_in, _ = left_log.shape
    k_out = weight.shape[1]

    def cp_forward(ll, ls, rl, rs):
        # The CP layer's own size rule: fused kernel up to GEMM_MIN_K, cuBLAS GEMM above.
        if max(k_in, k_out) > triton_cp.GEMM_MIN_K:
            return triton_cp._gemm_forward(ll, ls, rl, rs, weight, True)[:2]
        return triton_cp._forward(ll, ls, rl, rs, weight, True, blocks)[:2]

    rows = (f, b * k_in, k_in)
    t_log, t_sign = cp_forward(
        left_log.reshape(rows),
        left_sign.reshape(rows),
        right_log.reshape(rows),
        right_sign.reshape(rows),
    )
    # (F, B·K_in, K_out) -> rows (b, o₂) over the reduction index i.
    tt_shape = (f, b * k_out, k_in)
    t_log = t_log.view(f, b, k_in, k_out).transpose(2, 3).reshape(tt_shape)
    t_sign = t_sign.view(f, b, k_in, k_out).transpose(2, 3).reshape(tt_shape)
    zero = torch.zeros((), dtype=t_log.dtype, device=t_log.device).expand(tt_shape)
    one = torch.ones((), dtype=t_log.dtype, device=t_log.device).expand(tt_shape)
    y_log, y_sign = cp_forward(t_log, t_sign, zero, one)
    y_log = y_log.view(f, b, k_out, k_out).transpose(2, 3).contiguous()
    y_sign = y_sign.view(f, b, k_out, k_out).transpose(2, 3).contiguous()
    return y_log, y_sign


METHODS = ("auto", "fused", "two_stage")


def _sandwich(left_log, left_sign, right_log, right_sign, weight, method, blocks):
    """``W (A ∘ B) Wᵀ`` in signed-log form, no autograd. ``method="auto"``: the fused
    kernel when all of ``K_out`` fits one output tile (no recomputation of ``X Wᵀ``),
    else the two-stage GEMMs."""
    if method == "auto":
        bo = (
            blocks or _blocks(left_log.shape[-1], weight.shape[1], left_log.dtype, left_log.device)
        )[0]
        method = "fused" if weight.shape[1] <= bo else "two_stage"
    if method == "fused":
        return _sq_forward(left_log, left_sign, right_log, right_sign, weight, blocks)
    return _two_stage(left_log, left_sign, right_log, right_sign, weight, blocks)


class _SQLayer(torch.autograd.Function):
    """Triton forward and backward of the squared-mode layer.

    With ``g`` the gradient of ``out_log`` and ``Y = W X Wᵀ``: ``∂L/∂Y = g · sign Y / |Y|``
    (0 where ``Y = 0``, as in the reference), ``∂L/∂X = Wᵀ (∂L/∂Y) W`` — the same sandwich
    with ``Wᵀ``, run by the same Triton kernels on ``∂L/∂Y`` in signed-log form — and
    ``∂L/∂log_a = ∂L/∂log_b = X ⊙ ∂L/∂X``. The weight gradient
    ``Σ_b (G_b W X_bᵀ + G_bᵀ W X_b)`` (``G_b``, ``X_b`` shifted by the per-sample maximum of
    ``log|X_b|``, exactly as the reference's autograd forms them) runs as cuBLAS batched
    GEMMs: it reduces over the batch, which the sandwich kernels do not.
    """

    @staticmethod
    def forward(ctx, left_log, left_sign, right_log, right_sign, weight, method, blocks):
        out_log, out_sign = _sandwich(
            left_log, left_sign, right_log, right_sign, weight, method, blocks
        )
        ctx.save_for_backward(left_log, left_sign, right_log, right_sign, weight, out_log, out_sign)
        ctx.method, ctx.blocks = method, blocks
        ctx.mark_non_differentiable(out_sign)
        return out_log, out_sign

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_log, grad_sign):
        if grad_log is None:
            return (None,) * 7
        left_log, left_sign, right_log, right_sign, weight, out_log, out_sign = ctx.saved_tensors
        dy_sign = torch.sign(grad_log) * out_sign
        live = dy_sign != 0
        dy_log = torch.where(
            live, grad_log.abs().log() - torch.where(live, out_log, 0.0), -torch.inf
        )
        x_log = left_log + right_log
        x_sign = left_sign * right_sign
        d_log = dw = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            zero = torch.zeros((), dtype=dy_log.dtype, device=dy_log.device).expand(dy_log.shape)
            one = torch.ones((), dtype=dy_log.dtype, device=dy_log.device).expand(dy_log.shape)
            dx_log, dx_sign = _sandwich(
                dy_log, dy_sign, zero, one, weight.transpose(1, 2), ctx.method, ctx.blocks
            )
            d_log = (x_sign * dx_sign) * (x_log + dx_log).exp()
            d_log = torch.where(x_sign * dx_sign != 0, d_log, 0.0)
        if ctx.needs_input_grad[4]:
            m = _finite_or_zero(x_log.amax(dim=(-1, -2), keepdim=True))
            x = x_sign * (x_log - m).exp()
            g = dy_sign * (dy_log + m).exp()  # ∂L/∂(Y e^{-m}) per sample
            w = weight.unsqueeze(1)
            # Per-sample products, then the sum over the batch: a single GEMM per fold
            # that reduces over (b, i) has too little parallelism (measured 3-4x slower).
            per_sample = torch.matmul(torch.matmul(g, w), x.transpose(-1, -2))
            per_sample = per_sample + torch.matmul(torch.matmul(g.transpose(-1, -2), w), x)
            dw = per_sample.sum(dim=1)
        d_left = d_log if ctx.needs_input_grad[0] else None
        d_right = d_log if ctx.needs_input_grad[2] else None
        return d_left, None, d_right, None, dw, None, None


def sq_layer_triton(
    left_log: torch.Tensor,
    left_sign: torch.Tensor,
    right_log: torch.Tensor,
    right_sign: torch.Tensor,
    weight: torch.Tensor,
    *,
    method: str = "auto",
    blocks: tuple[int, int, int, int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton squared-mode layer; arguments and result as in
    :func:`bayesfn.kernels.cp_layer.sq_layer`: ``(F, B, K_in, K_in)`` inputs (``B`` may be 1
    on one side and is broadcast), ``(F, K_out, K_in)`` real weights, ``(F, B, K_out,
    K_out)`` outputs. Differentiable in ``left_log``, ``right_log`` and ``weight`` (Triton
    backward, see :class:`_SQLayer`; no double backward).

    ``method``: ``"fused"`` (one kernel, best while ``K_out`` fits one output tile),
    ``"two_stage"`` (two CP-layer GEMMs, for large ``K_out``) or ``"auto"`` (by tile
    size). ``blocks`` overrides the tile heuristic of the fused kernel
    (``(BLOCK_O, BLOCK_I, BLOCK_J, num_warps, num_stages)``) or, with ``"two_stage"``, of
    the CP kernel (``(BLOCK_B, BLOCK_O, BLOCK_K, num_warps, num_stages)``); tests only."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if left_log.dim() != 4 or right_log.dim() != 4:
        raise ValueError(
            f"sq_layer inputs must be (F, B, K_in, K_in), got {tuple(left_log.shape)} and "
            f"{tuple(right_log.shape)}"
        )
    f = left_log.shape[0]
    b = max(left_log.shape[1], right_log.shape[1])
    k_in = left_log.shape[-1]
    shape = (f, b, k_in, k_in)
    if weight.dim() != 3 or weight.shape[0] != f or weight.shape[2] != k_in:
        raise ValueError(
            f"weight must be (F, K_out, K_in) = ({f}, K_out, {k_in}), got {tuple(weight.shape)}"
        )
    dt = left_log.dtype
    if right_log.dtype != dt or weight.dtype != dt:
        raise TypeError(
            f"left_log, right_log and weight must share one dtype, got {dt}, "
            f"{right_log.dtype} and {weight.dtype}"
        )
    # Broadcast B = 1 by stride 0 (no copy).
    left_log, right_log = left_log.expand(shape), right_log.expand(shape)
    left_sign, right_sign = left_sign.to(dt).expand(shape), right_sign.to(dt).expand(shape)
    if 0 in shape or weight.shape[1] == 0:
        return _reference(left_log, left_sign, right_log, right_sign, weight)
    return _SQLayer.apply(left_log, left_sign, right_log, right_sign, weight, method, blocks)
