"""Closed-form Gaussian expectations of activations: the layer maps of NNGP / NTK kernels.

For ``(u, v) ~ N(0, [[k1, c], [c, k2]])`` each activation ``φ`` gives

* ``F(c, k1, k2) = E[φ(u) φ(v)]``: the NNGP map, and
* ``Ḟ(c, k1, k2) = E[φ'(u) φ'(v)] = ∂F/∂c`` (Price's theorem): the NTK factor,

evaluated elementwise on broadcastable tensors (``c`` is ``... x n x m``, ``k1`` is
``... x n x 1``, ``k2`` is ``... x 1 x m``), plus the exact diagonal map ``F(k, k, k)``.

Angles use the ``atan2`` form with a guarded square root, so that the diagonal has angle
exactly 0 and gradients stay finite at ``x = x'`` and at zero inputs.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ACTIVATIONS", "ab_relu_inplace", "diag_map", "layer_map"]

ACTIVATIONS = ("relu", "leaky_relu", "abs", "ab_relu", "erf", "gelu")


def _safe_sqrt(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``sqrt(max(t, 0))`` with zero gradient where ``t <= 0`` (no inf·0 = NaN)."""
    positive = t > 0
    return torch.where(
        positive, torch.sqrt(torch.where(positive, t, torch.ones_like(t))), 0.0
    ), positive


def _ab_relu(
    c: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, a: float, b: float, want_dot: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``φ(x) = a·min(x, 0) + b·max(x, 0) = a·x + (b − a)·relu(x)``.

    ``F = a b c + (b − a)² J₁`` with the arc-cosine kernel
    ``J₁ = (sin θ·√(k1 k2) + (π − θ) c) / (2π)``, and ``Ḟ = a b + (b − a)² (π − θ)/(2π)``.
    """
    prod = k1 * k2
    det = prod - c * c
    # Rounding alone leaves |det| up to a few ulps of k1 k2 at coincident points (an
    # angle of ~1e-8 instead of 0, which shifts Ḟ by ~1e-9): snap that noise to 0.
    det = torch.where(det <= 16 * torch.finfo(det.dtype).eps * prod, torch.zeros_like(det), det)
    s, _ = _safe_sqrt(det)  # √(k1 k2) sin θ, exactly 0 on the diagonal
    # θ = atan2(s, c); where k1 k2 = 0 both vanish, and the angle is set to 0 with finite grads
    degenerate = (s == 0) & (c == 0)
    theta = torch.atan2(s, torch.where(degenerate, torch.ones_like(c), c))
    j1 = (s + (math.pi - theta) * c) / (2 * math.pi)
    out = a * b * c + (b - a) ** 2 * j1
    dot = a * b + (b - a) ** 2 * (math.pi - theta) / (2 * math.pi) if want_dot else None
    return out, dot


def ab_relu_inplace(
    c: torch.Tensor,
    k1: torch.Tensor,
    k2: torch.Tensor,
    a: float,
    b: float,
    want_dot: bool,
    work: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_ab_relu` without autograd, overwriting ``c`` (``... x n x m``, owned by the
    caller) and reusing the ``n x m`` buffers in ``work`` across layers: fresh large
    buffers cost page faults that dominate these memory-bound maps. Same values."""
    if "det" not in work:
        work.setdefault("prod", torch.empty_like(c))
        work["det"] = torch.empty_like(c)
        work["mask"] = torch.empty(c.shape, dtype=torch.bool, device=c.device)
    prod, det, mask = work["prod"], work["det"], work["mask"]
    torch.mul(k1, k2, out=prod)
    torch.addcmul(prod, c, c, value=-1.0, out=det)
    prod.mul_(16 * torch.finfo(det.dtype).eps)
    det.masked_fill_(torch.le(det, prod, out=mask), 0.0)
    s = det.sqrt_()
    theta = torch.atan2(s, c, out=prod)  # atan2(0, 0) = 0: the degenerate case needs no guard
    theta.neg_().add_(math.pi)  # π − θ
    dot = None
    if want_dot:
        dot = theta.mul((b - a) ** 2 / (2 * math.pi)).add_(a * b)
    j1 = s.addcmul_(theta, c)  # s + (π − θ) c
    if a * b == 0:  # ReLU: c·0 + j1·k is j1·k exactly, one pass fewer
        torch.mul(j1, (b - a) ** 2 / (2 * math.pi), out=c)
    else:
        c.mul_(a * b).add_(j1, alpha=(b - a) ** 2 / (2 * math.pi))
    return c, dot


def _erf(
    c: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, want_dot: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``φ = erf``: ``F = (2/π) arcsin(2c / √((1 + 2k1)(1 + 2k2)))``,
    ``Ḟ = 4 / (π √((1 + 2k1)(1 + 2k2) − 4c²))``."""
    p = (1 + 2 * k1) * (1 + 2 * k2)
    root = torch.sqrt(p - 4 * c * c)  # > 0 always: p − 4c² ≥ 1 + 2k1 + 2k2
    out = (2 / math.pi) * torch.atan2(2 * c, root)
    dot = 4 / (math.pi * root) if want_dot else None
    return out, dot


def _gelu(
    c: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, want_dot: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``φ(x) = x Φ(x)`` (exact GELU). With ``P = (1 + k1)(1 + k2)``, ``δ = √(P − c²)``
    and ``A = atan2(c, δ)``:
    ``F = c/4 + (c A + (c² + k1 k2 δ²) / (P δ)) / (2π)`` and
    ``Ḟ = ∂F/∂c = 1/4 + A/(2π) + c (1 + (2 − k1 k2)/P + c²/(P δ²)) / (2π δ)``."""
    p = (1 + k1) * (1 + k2)
    delta_sq = p - c * c  # ≥ 1 + k1 + k2 > 0
    delta = torch.sqrt(delta_sq)
    angle = torch.atan2(c, delta)
    prod = k1 * k2
    out = c / 4 + (c * angle + (c * c + prod * delta_sq) / (p * delta)) / (2 * math.pi)
    dot = None
    if want_dot:
        dot = (
            0.25
            + angle / (2 * math.pi)
            + c * (1 + (2 - prod) / p + c * c / (p * delta_sq)) / (2 * math.pi * delta)
        )
    return out, dot


def layer_map(
    name: str,
    c: torch.Tensor,
    k1: torch.Tensor,
    k2: torch.Tensor,
    slopes: tuple[float, float],
    want_dot: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(F, Ḟ)`` of activation ``name`` at covariance ``c`` and variances ``k1``, ``k2``
    (broadcastable tensors). ``slopes = (a, b)`` is used by the ReLU family only."""
    if name == "erf":
        return _erf(c, k1, k2, want_dot)
    if name == "gelu":
        return _gelu(c, k1, k2, want_dot)
    return _ab_relu(c, k1, k2, slopes[0], slopes[1], want_dot)


def diag_map(
    name: str, k: torch.Tensor, slopes: tuple[float, float], want_dot: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact ``(F(k, k, k), Ḟ(k, k, k))``: the variance map with angle exactly 0."""
    if name == "erf":
        root = torch.sqrt(1 + 4 * k)
        out = (2 / math.pi) * torch.atan2(2 * k, root)
        return out, (4 / (math.pi * root) if want_dot else None)
    if name == "gelu":
        return _gelu(k, k, k, want_dot)
    a, b = slopes
    out = (a * a + b * b) / 2 * k
    dot = torch.full_like(k, (a * a + b * b) / 2) if want_dot else None
    return out, dot
