"""Random draws that honour an explicit ``torch.Generator``.

``torch.distributions.Gamma`` cannot take a generator, and posteriors promise
``sample(..., generator=g)`` reproducibility, so the gamma draw is done here.
"""

from __future__ import annotations

import torch

__all__ = ["standard_gamma"]


def standard_gamma(
    concentration: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``Gamma(concentration, rate=1)`` elementwise (Marsaglia & Tsang, 2000).

    Args:
        concentration: a tensor of positive shapes ``a``; one draw per element.
        generator: the source of randomness.

    Returns:
        A tensor shaped like ``concentration``.
    """
    a = concentration.detach().reshape(-1)  # flat, so that 0-d inputs index like the rest
    if (a <= 0).any() or not torch.isfinite(a).all():
        raise ValueError("concentration must be positive and finite")
    # Shapes below one are boosted: Gamma(a) = Gamma(a + 1) * U^(1/a).
    boosted = a < 1
    a1 = torch.where(boosted, a + 1, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    pending = torch.ones_like(a, dtype=torch.bool)
    while pending.any():
        idx = pending.nonzero(as_tuple=True)
        dk, ck = d[idx], c[idx]
        x = torch.randn(dk.shape, generator=generator, dtype=a.dtype, device=a.device)
        u = torch.rand(dk.shape, generator=generator, dtype=a.dtype, device=a.device)
        v = (1 + ck * x) ** 3
        ok = (v > 0) & (
            torch.log(u) < 0.5 * x**2 + dk - dk * v + dk * torch.log(v.clamp_min(1e-300))
        )
        accepted = tuple(i[ok] for i in idx)
        out[accepted] = (dk * v)[ok]
        pending[accepted] = False
    if boosted.any():
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype, device=a.device)
        out = torch.where(boosted, out * u ** (1.0 / a), out)
    return out.reshape(concentration.shape)
