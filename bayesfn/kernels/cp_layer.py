"""Reference (pure-torch) kernels for the sum layers of tensorized circuits.

Values are carried in the signed-log representation: a real tensor ``v`` is the pair
``(log|v|, sign(v))`` with ``sign`` a float tensor of ``-1``, ``0`` or ``+1`` of the same
dtype. Exact zero is ``(-inf, 0)``. Every contraction below shifts its inputs by their
maximum log-magnitude before leaving log space (the log-sum-exp trick), so tiny and huge
magnitudes never under- or overflow, and terms that cancel exactly give exact zero.

These two functions are the single entry points the circuits call; a GPU implementation
(Triton) will be dispatched behind the same signatures, so callers never know which
backend ran. The shift maxima are detached: the results do not depend on them
mathematically, so gradients are exact.
"""

from __future__ import annotations

import torch

from bayesfn.kernels import backend as _backend

__all__ = ["cp_layer", "cp_layer_positive_log", "signed_log", "signed_logsumexp", "sq_layer"]


def _finite_or_zero(m: torch.Tensor) -> torch.Tensor:
    """Replace non-finite shifts (all inputs zero) by 0 so that ``-inf - m`` stays ``-inf``."""
    m = m if not m.requires_grad else m.detach()
    return torch.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)


class _SignedLog(torch.autograd.Function):
    """``(log|y|, sign y)`` with the gradient ``1/y`` (0 at ``y = 0``) written out: 3
    kernels forward and 3 backward, where autograd through a ``torch.where``-masked
    composition needs about 8 and 7. A squared circuit calls this once per layer output,
    so it is a large share of a training step's launches."""

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        sign = torch.sign(y)
        ctx.mark_non_differentiable(sign)
        return y.abs().log(), sign  # log 0 = -inf exactly

    @staticmethod
    def backward(ctx, grad_log, grad_sign):
        if grad_log is None:
            return None
        (y,) = ctx.saved_tensors
        return torch.where(y == 0, 0.0, grad_log / y)


def signed_log(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log|y|, sign(y))`` of a real tensor, with ``(-inf, 0)`` at exact zero and a
    zero (not NaN) gradient there."""
    if y.requires_grad and torch.is_grad_enabled():
        return _SignedLog.apply(y)
    return y.abs().log_(), torch.sign(y)


def signed_logsumexp(
    log: torch.Tensor, sign: torch.Tensor, dim: int | tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed log-sum-exp: ``(log|Σ v|, sign(Σ v))`` over ``dim`` of ``v = sign · e^log``.

    Args:
        log: ``log|v|``, any shape (``-inf`` for exact zeros).
        sign: the signs of ``v``, the same shape as ``log`` (``+1``, ``-1`` or ``0``).
        dim: the dimension(s) summed over.

    Returns:
        ``(log|Σ v|, sign(Σ v))``, each of ``log``'s shape without ``dim``.
    """
    m = _finite_or_zero(log.detach().amax(dim=dim, keepdim=True))
    total = (sign * (log - m).exp()).sum(dim=dim, keepdim=True)
    out_log, out_sign = signed_log(total)
    out_log = out_log + m
    return out_log.squeeze(dim), out_sign.squeeze(dim)


def cp_layer(
    left_log: torch.Tensor,
    left_sign: torch.Tensor | None,
    right_log: torch.Tensor,
    right_sign: torch.Tensor | None,
    weight: torch.Tensor,
    *,
    signed: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One folded CP (Hadamard-then-sum) layer: ``y[f, b] = W[f] (a[f, b] ⊙ b[f, b])``.

    Args:
        left_log: ``(F, B, K_in)`` log-magnitudes of the two inputs of each of
            ``F`` folds for a batch of ``B``; ``-inf`` marks exact zero.
        right_log: as ``left_log`` (described together above).
        left_sign: ``(F, B, K_in)`` signs in ``{-1, 0, +1}``. With
            ``signed=False`` they may be ``None`` (all inputs are then taken as
            non-negative).
        right_sign: as ``left_sign`` (described together above).
        weight: ``(F, K_out, K_in)``. With ``signed=True`` these are the real (possibly
            negative) weights ``W`` themselves; with ``signed=False`` they are
            **log-weights** ``θ`` of positive weights ``W = exp(θ)`` (the monotonic
            parametrisation), so no weight is ever exponentiated outside the shift.
        signed: choose between the two weight conventions above. ``signed=False`` with
            inputs that may be negative is an error of the caller.

    Returns:
        ``(out_log, out_sign)``, each ``(F, B, K_out)``; exact zero is ``(-inf, 0)``.
    """
    if _backend.use_triton(left_log, right_log, weight, prefer=_backend.cp_prefers_triton(weight)):
        from bayesfn.kernels.triton_cp import cp_layer_triton

        return cp_layer_triton(left_log, left_sign, right_log, right_sign, weight, signed=signed)
    return _cp_layer_torch(left_log, left_sign, right_log, right_sign, weight, signed=signed)


def cp_layer_positive_log(
    left_log: torch.Tensor, right_log: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``cp_layer(left_log, None, right_log, None, weight, signed=False)[0]``: the
    log-values of a layer with non-negative inputs and log-weights, without building the
    sign tensor (all ones off exact zeros) that monotonic circuits never read. Same
    dispatch as :func:`cp_layer`.

    Returns:
        ``(F, B, K_out)`` log-values.
    """
    if _backend.use_triton(left_log, right_log, weight, prefer=_backend.cp_prefers_triton(weight)):
        return cp_layer(left_log, None, right_log, None, weight, signed=False)[0]
    return _cp_layer_torch(left_log, None, right_log, None, weight, signed=False, sign=False)[0]


def _cp_layer_torch(
    left_log: torch.Tensor,
    left_sign: torch.Tensor | None,
    right_log: torch.Tensor,
    right_sign: torch.Tensor | None,
    weight: torch.Tensor,
    *,
    signed: bool,
    sign: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The torch path of :func:`cp_layer`; ``sign=False`` (unsigned inputs only) returns
    ``None`` for the sign."""
    # x_log is a fresh tensor that nothing else reads: shift and exponentiate it in place
    # (no autograd node needs its old values, and on CPU each avoided (F, B, K) allocation
    # saves a round of page faults)
    x_log = left_log + right_log
    m = _finite_or_zero(x_log.detach().amax(dim=-1, keepdim=True))  # (F, B, 1)
    x = x_log.sub_(m).exp_()
    if signed:
        if left_sign is None or right_sign is None:
            raise ValueError("cp_layer(signed=True) needs left_sign and right_sign")
        x = (left_sign * right_sign) * x
        y = torch.matmul(x, weight.transpose(-1, -2))  # (F, B, K_out)
        out_log, out_sign = signed_log(y)
        return out_log.add_(m), out_sign
    mw = _finite_or_zero(weight.detach().amax(dim=-1, keepdim=True))  # (F, K_out, 1)
    if left_sign is not None and right_sign is not None:
        x = x * (left_sign * right_sign)
    y = torch.matmul(x, (weight - mw).exp().transpose(-1, -2))
    if left_sign is None or right_sign is None:
        # y >= 0: log with a clamp keeps the gradient finite at exact zeros (as signed_log)
        pos = y > 0
        out_log = torch.where(pos, y.clamp_min(torch.finfo(y.dtype).tiny).log_(), -torch.inf)
        return out_log.add_(m).add_(mw.transpose(-1, -2)), pos.to(y.dtype) if sign else None
    out_log, out_sign = signed_log(y)
    return out_log.add_(m).add_(mw.transpose(-1, -2)), out_sign


def sq_layer(
    left_log: torch.Tensor,
    left_sign: torch.Tensor,
    right_log: torch.Tensor,
    right_sign: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared-mode CP layer: ``Y[f, b] = W[f] (A[f, b] ∘ B[f, b]) W[f]ᵀ``.

    This propagates the matrices ``∫ c cᵀ`` (Gram matrices, or their partially observed /
    moment / CDF variants) through a sum layer of a squared circuit without ever forming
    ``W ⊗ W``: two matrix products of cost ``O(K_out K_in (K_in + K_out))`` per fold.

    Args:
        left_log: ``(F, B, K_in, K_in)`` log-magnitudes; ``B`` may be 1 and is
            broadcast.
        right_log: as ``left_log`` (described together above).
        left_sign: ``(F, B, K_in, K_in)`` signs in ``{-1, 0, +1}``.
        right_sign: as ``left_sign`` (described together above).
        weight: ``(F, K_out, K_in)`` real weights (pass ``exp(θ)`` for monotonic ones).

    Returns:
        ``(out_log, out_sign)``, each ``(F, B, K_out, K_out)``.
    """
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (left_log, right_log, weight)
    )
    prefer = _backend.sq_prefers_triton(weight, needs_grad=needs_grad)
    if _backend.use_triton(left_log, right_log, weight, prefer=prefer):
        from bayesfn.kernels.triton_sq import sq_layer_triton

        return sq_layer_triton(left_log, left_sign, right_log, right_sign, weight)
    x_log = left_log + right_log
    m = _finite_or_zero(x_log.detach().amax(dim=(-1, -2), keepdim=True))
    x = (left_sign * right_sign) * (x_log - m).exp()
    w = weight.unsqueeze(1)  # (F, 1, K_out, K_in)
    y = torch.matmul(torch.matmul(w, x), w.transpose(-1, -2))
    out_log, out_sign = signed_log(y)
    return out_log + m, out_sign
