"""Two-dimensional (and n-D ring) toy densities for density-estimation experiments.

Definitions (``z``, ``z1``, ``z2`` are independent standard normals, ``U`` uniform):

================== =========================================================================
``"rings"``        4 concentric rings of radii 0.5, 1.0, 1.5, 2.0, equally likely; the
                   radius gets ``N(0, 0.08^2)`` noise and the angle is uniform
``"mring"``        3 concentric rings of radii 1, 3, 5 with probabilities proportional to
                   the radius (uniform along the arcs), radial noise ``N(0, 0.2^2)``; the
                   "multiple rings" set of squared NPCs (Loconte et al., 2024)
``"banana"``       ``x1 = 2 z1``, ``x2 = z2 + 0.2 (x1^2 - 4)``
``"funnel"``       ``x1 = 2 z1``, ``x2 = z2 sqrt(min(exp(-x1), 5))``
``"cosine"``       ``x1 ~ U[-4, 4]``, ``x2 = 3 cos(2 x1) + z2``
``"moons"``        two interleaved half circles of radius 1 (upper ``(cos t, sin t)``,
                   lower ``(1 - cos t, 1/2 - sin t)``, ``t ~ U[0, pi]``), shifted by
                   ``(-1/2, -1/4)``, plus ``N(0, 0.1^2)`` noise per coordinate
``"spirals"``      two interleaved arms ``+-(r cos a, r sin a)`` with ``a = 3 pi sqrt(U)``,
                   ``r = 2 a / (3 pi)``, plus ``N(0, 0.08^2)`` noise per coordinate
``"checkerboard"`` uniform on the 8 cells ``[i, i+1) x [j, j+1)`` of ``[-2, 2]^2`` with
                   ``i + j`` even (density 1/8 there, 0 elsewhere)
``"spiral"``       the squared-NPC paper's spiral (Loconte et al., 2024): three arms
                   starting at angles ``s = 0, 2 pi / 3, 4 pi / 3``; a point draws an arm and
                   ``u ~ U[0, 1]``, angle ``a = s + pi u``, radius ``r = 1.5 pi u``, and is
                   ``N((r cos a, r sin a), v^2 I)`` with ``v = 0.5 u + 0.1`` (the noise grows
                   along the arm)
``"wave"``         ``x1 ~ U[-4, 4]``, ``x2 = sin(pi x1 / 2) + N(0, 0.4^2)``: the "wave"
                   ridge of Rezende & Mohamed (2015), ``w(x1) = sin(2 pi x1 / 4)`` with
                   width 0.4, on a uniform ``x1``. A stand-in: the authors' own "wave"
                   generator (workshop version of the squared-NPC paper) is not public
``"cosine_rotated"`` ``"cosine"`` rotated by ``pi / 4`` about its mean ``(0, 3 sin(8) / 8)``,
                   as the squared-NPC paper's loader does
``"funnel_rotated"`` ``"funnel"`` rotated by ``pi / 4`` about its mean ``(0, 0)``, likewise
================== =========================================================================

:func:`toy2d_log_prob` gives the exact log density of ``rings``, ``mring``, ``banana``,
``funnel``, ``cosine``, ``checkerboard``, ``wave``, the rotated sets and (by a converged
1-D quadrature over the arm parameter ``u``) ``spiral``; :func:`rings_nd_log_prob` that
of :func:`sample_rings_nd`. For a ring of radius ``R`` with radial noise
``sigma`` a negative radius puts the point on the opposite side, so the density at
``rho = |x|`` is ``(N(rho; R, sigma^2) + N(-rho; R, sigma^2)) / (2 pi rho)``, exact for
any noise level (it is infinite, but integrable, at the origin).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ._rng import make_generator

__all__ = [
    "rings_nd_log_prob",
    "sample_rings_nd",
    "sample_toy2d",
    "toy2d_log_prob",
    "toy2d_names",
]

_NAMES = (
    "rings",
    "mring",
    "banana",
    "funnel",
    "cosine",
    "moons",
    "spirals",
    "checkerboard",
    "spiral",
    "wave",
    "cosine_rotated",
    "funnel_rotated",
)
_WITH_LOG_PROB = (
    "rings",
    "mring",
    "banana",
    "funnel",
    "cosine",
    "checkerboard",
    "spiral",
    "wave",
    "cosine_rotated",
    "funnel_rotated",
)

_RINGS = {"radii": (0.5, 1.0, 1.5, 2.0), "weights": (1.0, 1.0, 1.0, 1.0), "noise": 0.08}
_MRING = {"radii": (1.0, 3.0, 5.0), "weights": (1.0, 3.0, 5.0), "noise": 0.2}
_BANANA_SCALE, _BANANA_CURVE = 2.0, 0.2
_FUNNEL_SCALE, _FUNNEL_MAX_VAR = 2.0, 5.0
_COSINE_XLIM, _COSINE_AMPLITUDE, _COSINE_OMEGA, _COSINE_NOISE = 4.0, 3.0, 2.0, 1.0
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SPIRAL_STARTS = (0.0, 2.0 * math.pi / 3.0, 4.0 * math.pi / 3.0)
_SPIRAL_LENGTH, _SPIRAL_RSCALE, _SPIRAL_NOISE, _SPIRAL_FLOOR = math.pi, 1.5, 0.5, 0.1
# composite Gauss-Legendre in u: an arm's centre moves at most |d(r e^{ia})/du| <= 1.5 pi
# sqrt(1 + pi^2) ~ 15.5 per unit u and its Gaussian is at least 0.1 wide, so a bump is at
# least 0.0065 wide in u; 200 panels of width 0.005 with 8 nodes each integrate such a
# bump (and the arm's ends, where the integrand does not vanish) to ~1e-12
_SPIRAL_PANELS, _SPIRAL_ORDER = 200, 8
_WAVE_XLIM, _WAVE_OMEGA, _WAVE_NOISE = 4.0, math.pi / 2.0, 0.4
_ROT_ANGLE = math.pi / 4.0
# E[A cos(w x1)] for x1 ~ U[-L, L] is A sin(w L) / (w L)
_COSINE_MEAN = (
    0.0,
    _COSINE_AMPLITUDE * math.sin(_COSINE_OMEGA * _COSINE_XLIM) / (_COSINE_OMEGA * _COSINE_XLIM),
)


def toy2d_names(*, with_log_prob: bool = False) -> tuple[str, ...]:
    """Names accepted by :func:`sample_toy2d`.

    Args:
        with_log_prob: list only the densities :func:`toy2d_log_prob` can evaluate.

    Returns:
        ``("rings", "mring", "banana", "funnel", "cosine", "moons", "spirals",
        "checkerboard", "spiral", "wave", "cosine_rotated", "funnel_rotated")``, or the
        subset whose log density :func:`toy2d_log_prob` evaluates.
    """
    return _WITH_LOG_PROB if with_log_prob else _NAMES


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name not in _NAMES:
        raise ValueError(f"Unknown toy density {name!r}; valid names are {', '.join(_NAMES)}.")
    return name


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int; got {n!r}")


def _normal_log_pdf(x: torch.Tensor, mean: torch.Tensor | float, std: torch.Tensor | float):
    """Elementwise ``log N(x; mean, std^2)``."""
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - _LOG_SQRT_2PI


def _shell_params(
    radii: Sequence[float], weights: Sequence[float] | str, noise: float, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated radii and normalised mixture weights (``"surface"``: ``w_k ~ R_k^(dim-1)``)."""
    r = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
    if r.numel() == 0 or not torch.all(r > 0) or not torch.isfinite(r).all():
        raise ValueError(f"radii must be a non-empty list of positive numbers; got {radii!r}")
    if isinstance(weights, str):
        if weights == "surface":
            w = r ** (dim - 1)
        elif weights == "equal":
            w = torch.ones_like(r)
        else:
            raise ValueError(f"weights must be 'surface', 'equal' or a list; got {weights!r}")
    else:
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if w.shape != r.shape or not torch.all(w >= 0) or w.sum() <= 0:
            raise ValueError(
                f"weights must be {r.numel()} non-negative numbers, not all zero; got {weights!r}"
            )
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise > 0):
        raise ValueError(f"noise must be a positive number; got {noise!r}")
    return r, w / w.sum()


def _sample_shells(
    n: int,
    dim: int,
    radii: Sequence[float],
    weights: Sequence[float] | str,
    noise: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``(n, dim)`` float64 points on noisy concentric spheres centred at the origin."""
    r, w = _shell_params(radii, weights, noise, dim)
    which = torch.multinomial(w, n, replacement=True, generator=generator) if n else r[:0].long()
    radius = r[which] + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    direction = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return radius[:, None] * direction


def _shells_log_prob(
    x: torch.Tensor, radii: Sequence[float], weights: Sequence[float] | str, noise: float
) -> torch.Tensor:
    """Exact log density of :func:`_sample_shells` at ``(..., dim)`` points ``x``."""
    dim = x.shape[-1]
    r, w = _shell_params(radii, weights, noise, dim)
    r, w = r.to(x), w.to(x)
    rho = x.norm(dim=-1)[..., None]
    radial = torch.logaddexp(_normal_log_pdf(rho, r, noise), _normal_log_pdf(-rho, r, noise))
    log_radial = torch.logsumexp(radial + w.log(), dim=-1)
    # surface area of the unit sphere in R^dim is 2 pi^(dim/2) / Gamma(dim/2)
    log_area = math.log(2.0) + 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim)
    return log_radial - log_area - (dim - 1) * torch.log(rho[..., 0])


def sample_rings_nd(
    n: int,
    dim: int,
    *,
    radii: Sequence[float] = (1.0, 3.0, 5.0),
    noise: float = 0.2,
    weights: Sequence[float] | str = "surface",
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Sample noisy concentric hyperspherical shells ("n-D rings") in ``R^dim``.

    Each point picks a shell ``k`` with probability ``weights[k]``, a radius
    ``radii[k] + noise * z`` and a direction uniform on the unit sphere. With
    ``dim=2`` and the defaults this is the ``"mring"`` toy density.

    Args:
        n: the number of points.
        dim: the dimension, ``>= 2``.
        radii: the shell radii.
        noise: the standard deviation of the radial noise.
        weights: shell probabilities (normalised), ``"surface"`` (proportional to
            ``radius^(dim - 1)``, i.e. uniform density over the shells) or ``"equal"``.
        generator: the ``torch.Generator`` to draw from.
        seed: alternatively, an int seeding a fresh generator.
        dtype: floating dtype of the result.

    Returns:
        ``(n, dim)`` tensor.
    """
    _check_n(n)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2; got {dim!r}")
    rng = make_generator(generator, seed)
    return _sample_shells(n, dim, radii, weights, noise, rng).to(dtype)


def rings_nd_log_prob(
    x: torch.Tensor,
    *,
    radii: Sequence[float] = (1.0, 3.0, 5.0),
    noise: float = 0.2,
    weights: Sequence[float] | str = "surface",
) -> torch.Tensor:
    """Exact log density of :func:`sample_rings_nd` with the same settings.

    Args:
        x: ``(..., dim)`` floating points, ``dim >= 2``.
        radii: as in :func:`sample_rings_nd`.
        noise: see ``radii``.
        weights: see ``radii``.

    Returns:
        ``(...)`` log densities.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating torch.Tensor")
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError(f"x must have shape (..., dim) with dim >= 2; got {tuple(x.shape)}")
    return _shells_log_prob(x, radii, weights, noise)


def _rings(n: int, g: torch.Generator | None) -> torch.Tensor:
    return _sample_shells(n, 2, _RINGS["radii"], _RINGS["weights"], _RINGS["noise"], g)


def _mring(n: int, g: torch.Generator | None) -> torch.Tensor:
    return _sample_shells(n, 2, _MRING["radii"], _MRING["weights"], _MRING["noise"], g)


def _banana(n: int, g: torch.Generator | None) -> torch.Tensor:
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = _BANANA_SCALE * z[:, 0]
    x2 = z[:, 1] + _BANANA_CURVE * (x1**2 - _BANANA_SCALE**2)
    return torch.stack([x1, x2], dim=1)


def _funnel(n: int, g: torch.Generator | None) -> torch.Tensor:
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x1 = _FUNNEL_SCALE * z[:, 0]
    var = torch.exp(-x1).clamp_max(_FUNNEL_MAX_VAR)
    return torch.stack([x1, z[:, 1] * var.sqrt()], dim=1)


def _cosine(n: int, g: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    x1 = _COSINE_XLIM * (2.0 * u - 1.0)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    x2 = _COSINE_AMPLITUDE * torch.cos(_COSINE_OMEGA * x1) + _COSINE_NOISE * z
    return torch.stack([x1, x2], dim=1)


def _moons(n: int, g: torch.Generator | None) -> torch.Tensor:
    lower = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    t = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    upper_pts = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower_pts = torch.stack([1.0 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    pts = torch.where(lower[:, None], lower_pts, upper_pts)
    shift = torch.tensor([-0.5, -0.25], dtype=torch.float64)
    return pts + shift + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _spirals(n: int, g: torch.Generator | None) -> torch.Tensor:
    sign = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    a = 3.0 * math.pi * torch.rand(n, generator=g, dtype=torch.float64).sqrt()
    r = 2.0 * a / (3.0 * math.pi)
    pts = sign[:, None] * torch.stack([r * torch.cos(a), r * torch.sin(a)], dim=1)
    return pts + 0.08 * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _checkerboard(n: int, g: torch.Generator | None) -> torch.Tensor:
    # pick one of the 8 cells with i + j even, then a uniform point inside it
    cells = torch.tensor(
        [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0],
        dtype=torch.float64,
    )
    which = torch.randint(len(cells), (n,), generator=g)
    return cells[which] + torch.rand(n, 2, generator=g, dtype=torch.float64)


def _spiral(n: int, g: torch.Generator | None) -> torch.Tensor:
    arm = torch.randint(len(_SPIRAL_STARTS), (n,), generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    start = torch.tensor(_SPIRAL_STARTS, dtype=torch.float64)[arm]
    mean, std = _spiral_arm(u, start)
    return mean + std[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)


def _spiral_arm(u: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre ``(..., 2)`` and per-coordinate std ``(...)`` at arm parameter ``u``."""
    a = start + _SPIRAL_LENGTH * u
    r = _SPIRAL_RSCALE * _SPIRAL_LENGTH * u
    centre = torch.stack([r * torch.cos(a), r * torch.sin(a)], dim=-1)
    return centre, _SPIRAL_NOISE * u + _SPIRAL_FLOOR


def _spiral_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Mixture over the 3 arms of the integral over ``u`` of an isotropic normal, by
    composite Gauss-Legendre quadrature (see ``_SPIRAL_PANELS``)."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(_SPIRAL_ORDER)
    width = 1.0 / _SPIRAL_PANELS
    left = np.arange(_SPIRAL_PANELS)[:, None] * width
    u = torch.as_tensor((left + (nodes + 1) / 2 * width).ravel(), dtype=x.dtype, device=x.device)
    log_w = torch.as_tensor(
        np.log(np.tile(weights / 2 * width, _SPIRAL_PANELS)), dtype=x.dtype, device=x.device
    )
    starts = torch.tensor(_SPIRAL_STARTS, dtype=x.dtype, device=x.device)
    centre, std = _spiral_arm(u[None, :], starts[:, None])  # (3, U, 2), (3, U)
    flat = x.reshape(-1, 2)
    out = []
    for chunk in flat.split(1024):
        d2 = ((chunk[:, None, None, :] - centre[None]) ** 2).sum(-1)  # (B, 3, U)
        log_n = -0.5 * d2 / std**2 - 2.0 * torch.log(std) - 2.0 * _LOG_SQRT_2PI + log_w
        out.append(torch.logsumexp(log_n.flatten(1), dim=1) - math.log(3.0))
    return torch.cat(out).reshape(x.shape[:-1]) if out else flat.new_zeros(x.shape[:-1])


def _wave(n: int, g: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    x1 = _WAVE_XLIM * (2.0 * u - 1.0)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    return torch.stack([x1, torch.sin(_WAVE_OMEGA * x1) + _WAVE_NOISE * z], dim=1)


def _rotate(x: torch.Tensor, centre: tuple[float, float], angle: float) -> torch.Tensor:
    """Rotate ``(..., 2)`` points by ``angle`` about ``centre``."""
    c, s = math.cos(angle), math.sin(angle)
    ctr = torch.tensor(centre, dtype=x.dtype, device=x.device)
    d = x - ctr
    return ctr + torch.stack([c * d[..., 0] - s * d[..., 1], s * d[..., 0] + c * d[..., 1]], -1)


def _cosine_rotated(n: int, g: torch.Generator | None) -> torch.Tensor:
    return _rotate(_cosine(n, g), _COSINE_MEAN, _ROT_ANGLE)


def _funnel_rotated(n: int, g: torch.Generator | None) -> torch.Tensor:
    return _rotate(_funnel(n, g), (0.0, 0.0), _ROT_ANGLE)


_SAMPLERS: dict[str, Callable[[int, torch.Generator | None], torch.Tensor]] = {
    "rings": _rings,
    "mring": _mring,
    "banana": _banana,
    "funnel": _funnel,
    "cosine": _cosine,
    "moons": _moons,
    "spirals": _spirals,
    "checkerboard": _checkerboard,
    "spiral": _spiral,
    "wave": _wave,
    "cosine_rotated": _cosine_rotated,
    "funnel_rotated": _funnel_rotated,
}


def sample_toy2d(
    name: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Draw ``n`` points from a 2-D toy density (see the module docstring).

    Args:
        name: one of :func:`toy2d_names`.
        n: the number of points.
        generator: a CPU ``torch.Generator`` to draw from.
        seed: alternatively, an int seeding a fresh generator.
        dtype: floating dtype of the result (sampling is done in float64).

    Returns:
        ``(n, 2)`` tensor.

    Raises:
        ValueError: unknown ``name`` or a negative ``n``.
    """
    _check_name(name)
    _check_n(n)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    rng = make_generator(generator, seed)
    return _SAMPLERS[name](n, rng).to(dtype)


def toy2d_log_prob(name: str, x: torch.Tensor) -> torch.Tensor:
    """Exact log density of a 2-D toy distribution.

    Args:
        name: one of ``toy2d_names(with_log_prob=True)`` (every name but ``"moons"``
            and ``"spirals"``).
        x: ``(..., 2)`` floating tensor of points.

    Returns:
        ``(...)`` tensor of log densities (``-inf`` outside the support).

    Raises:
        ValueError: unknown ``name``, a density without a closed form (moons, spirals),
            or ``x`` whose last dimension is not 2.
    """
    _check_name(name)
    if name not in _WITH_LOG_PROB:
        raise ValueError(
            f"Toy density {name!r} has no closed-form log density; toy2d_log_prob supports "
            f"{', '.join(_WITH_LOG_PROB)}."
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"x must have shape (..., 2); got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    # a rotation has unit Jacobian: evaluate the unrotated density at the rotated-back point
    if name == "cosine_rotated":
        return toy2d_log_prob("cosine", _rotate(x, _COSINE_MEAN, -_ROT_ANGLE))
    if name == "funnel_rotated":
        return toy2d_log_prob("funnel", _rotate(x, (0.0, 0.0), -_ROT_ANGLE))
    if name == "spiral":
        return _spiral_log_prob(x)
    x1, x2 = x[..., 0], x[..., 1]
    if name == "wave":
        inside = x1.abs() <= _WAVE_XLIM
        mean2 = torch.sin(_WAVE_OMEGA * x1)
        value = _normal_log_pdf(x2, mean2, _WAVE_NOISE) - math.log(2.0 * _WAVE_XLIM)
        return torch.where(inside, value, torch.full_like(value, -math.inf))
    if name == "rings":
        return _shells_log_prob(x, _RINGS["radii"], _RINGS["weights"], _RINGS["noise"])
    if name == "mring":
        return _shells_log_prob(x, _MRING["radii"], _MRING["weights"], _MRING["noise"])
    if name == "banana":
        mean2 = _BANANA_CURVE * (x1**2 - _BANANA_SCALE**2)
        return _normal_log_pdf(x1, 0.0, _BANANA_SCALE) + _normal_log_pdf(x2, mean2, 1.0)
    if name == "funnel":
        std2 = torch.exp(-x1).clamp_max(_FUNNEL_MAX_VAR).sqrt()
        return _normal_log_pdf(x1, 0.0, _FUNNEL_SCALE) + _normal_log_pdf(x2, 0.0, std2)
    if name == "cosine":
        inside = x1.abs() <= _COSINE_XLIM
        mean2 = _COSINE_AMPLITUDE * torch.cos(_COSINE_OMEGA * x1)
        value = _normal_log_pdf(x2, mean2, _COSINE_NOISE) - math.log(2.0 * _COSINE_XLIM)
        return torch.where(inside, value, torch.full_like(value, -math.inf))
    # checkerboard
    inside = (x1 >= -2) & (x1 < 2) & (x2 >= -2) & (x2 < 2)
    even = (torch.floor(x1) + torch.floor(x2)).remainder(2) == 0
    value = torch.full_like(x1, -math.log(8.0))
    return torch.where(inside & even, value, torch.full_like(x1, -math.inf))
