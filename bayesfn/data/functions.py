"""Batches of random functions for stochastic-process benchmarks (NDP-style 1-D / d-D tasks).

:func:`sample_functions` draws ``batch_size`` functions, each observed at ``num_points``
inputs drawn uniformly in the box ``x_range ** input_dim`` (or at inputs you pass), and
returns a :class:`FunctionBatch` with ``x (b, n, d)`` and ``y (b, n, 1)``.

Families
--------
Gaussian-process families (zero mean; one draw per function via a Cholesky factor with
``1e-6 x mean(diag)`` jitter, escalated where a factorisation fails):

===================== =================================================================
``"se"``              ``v exp(-r^2 / (2 l^2))``
``"matern52"``        ``v (1 + s + s^2/3) exp(-s)``, ``s = sqrt(5) r / l``
``"periodic"``        ``v exp(-2 sum_k sin^2(pi |dx_k| / p) / l^2)``
``"weakly_periodic"`` periodic ``(l, v, p)`` times ``exp(-r^2 / (2 m^2))`` (NDP)
===================== =================================================================

Non-Gaussian families (``t = w . x`` is the projection of the input on a random unit
direction ``w``, uniform on the sphere; in 1-D ``w = +-1``):

=============== =======================================================================
``"sawtooth"``  ``A * (frac(f t + phase) - 1/2)``: the exact (infinitely many harmonics)
                version of the ConvCNP / NDP sawtooth, centred, values in
                ``[-A/2, A/2)``; frequency ``f``, phase ``~ U[0, 1)``
``"step"``      ``1[t >= s]``: values in ``{0, 1}``, threshold ``s`` uniform over the range
                of ``t`` on the input box (in 1-D: uniform on ``x_range``, as in NDP)
``"mixture"``   each function picks one of ``mixture_families`` uniformly at random
=============== =======================================================================

Hyperparameters
---------------
Each hyperparameter argument takes ``None`` (the default prior below), a number (fixed
for every function) or a pair ``(low, high)`` (drawn per function, log-uniform on
``[low, high]``). The drawn values are returned in :attr:`FunctionBatch.params`.

Default priors (log-uniform; length-type ranges are multiplied by
``c = sqrt(input_dim) * (x_high - x_low) / 4`` so that they suit any box, and frequencies
are divided by it):

===================== ========================================= ===================
argument              families                                  default range
===================== ========================================= ===================
``lengthscale``       se, matern52                              ``[0.1, 1.0] c``
``lengthscale``       periodic, weakly_periodic                 ``[0.5, 2.0]``
``variance``          se, matern52, periodic, weakly_periodic   ``[0.5, 2.0]``
``period``            periodic, weakly_periodic                 ``[0.5, 2.0] c``
``decay_lengthscale`` weakly_periodic                           ``[1.0, 4.0] c``
``frequency``         sawtooth                                  ``[3.0, 5.0] / c``
``amplitude``         sawtooth                                  fixed ``1.0``
===================== ========================================= ===================

The NDP paper's GP benchmark (Dutordoir et al., 2023) fixes ``lengthscale=0.25 *
sqrt(input_dim)``, ``variance=1.0`` and ``noise_std=0.05`` on ``x_range=(-2, 2)``; pass
those numbers to reproduce it.

Observation noise: ``y = f + noise_std * eps`` with ``eps ~ N(0, 1)``; ``noise_std`` is a
number (default ``0.0``, noise-free) or a log-uniform range. The noise-free values are
kept in :attr:`FunctionBatch.f`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from bayesfn._linalg import safe_cholesky
from bayesfn.covariance import batched_covariance

from ._rng import make_generator

__all__ = ["FunctionBatch", "function_families", "sample_functions"]

_GP_FAMILIES = ("se", "matern52", "periodic", "weakly_periodic")
_OTHER_FAMILIES = ("sawtooth", "step")
_FAMILIES = (*_GP_FAMILIES, *_OTHER_FAMILIES, "mixture")
_DEFAULT_MIXTURE = ("se", "matern52", "weakly_periodic", "sawtooth")
_PARAM_NAMES = (
    "lengthscale",
    "variance",
    "period",
    "decay_lengthscale",
    "frequency",
    "amplitude",
    "noise_std",
)

Spec = float | tuple[float, float] | None


def function_families() -> tuple[str, ...]:
    """Names accepted by :func:`sample_functions`.

    Returns:
        ``("se", "matern52", "periodic", "weakly_periodic", "sawtooth", "step",
        "mixture")``.
    """
    return _FAMILIES


@dataclass(frozen=True, eq=False)
class FunctionBatch:
    """A batch of sampled functions.

    Attributes:
        x: ``(b, n, d)`` inputs.
        y: ``(b, n, 1)`` observed values (``f`` plus observation noise).
        f: ``(b, n, 1)`` noise-free function values.
        families: length-``b`` tuple naming the family of each function (differs
            between functions only for ``"mixture"``).
        params: hyperparameters of each function: ``(b,)`` float64 tensors keyed by
            ``"lengthscale"``, ``"variance"``, ``"period"``, ``"decay_lengthscale"``,
            ``"frequency"``, ``"amplitude"`` and ``"noise_std"``; NaN where a
            hyperparameter does not apply to that function's family.
    """

    x: torch.Tensor
    y: torch.Tensor
    f: torch.Tensor
    families: tuple[str, ...]
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """The number of functions ``b``."""
        return self.x.shape[0]

    @property
    def num_points(self) -> int:
        """The number of inputs per function ``n``."""
        return self.x.shape[1]


def _check_spec(spec: Spec, name: str, *, allow_zero: bool = False) -> None:
    """Raise if ``spec`` is not ``None``, a valid number or a valid ``(low, high)`` range."""
    if spec is None:
        return
    if isinstance(spec, bool):
        raise TypeError(f"{name} must be a number, a (low, high) pair or None; got {spec!r}")
    if isinstance(spec, (int, float)):
        value = float(spec)
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be finite and {bound}; got {spec!r}")
        return
    if isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 2:
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in spec):
            raise TypeError(f"{name} range must be two numbers (low, high); got {spec!r}")
        low, high = (float(v) for v in spec)
        if not (0 < low <= high < math.inf):
            raise ValueError(
                f"{name} range (low, high) must satisfy 0 < low <= high < inf for a "
                f"log-uniform draw; got {tuple(spec)!r}"
            )
        return
    raise TypeError(f"{name} must be a number, a (low, high) pair or None; got {spec!r}")


def _draw(
    spec: Spec,
    default: tuple[float, float] | float,
    count: int,
    name: str,
    generator: torch.Generator | None,
    device: torch.device,
    *,
    allow_zero: bool = False,
) -> torch.Tensor:
    """Draw ``count`` float64 values of one hyperparameter according to ``spec``."""
    if spec is None:
        spec = default
    _check_spec(spec, name, allow_zero=allow_zero)
    if isinstance(spec, (int, float)):
        return torch.full((count,), float(spec), dtype=torch.float64, device=device)
    low, high = (float(v) for v in spec)
    u = torch.rand(count, generator=generator, dtype=torch.float64, device=device)
    return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def _unit_directions(
    count: int, dim: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``(count, dim)`` directions uniform on the unit sphere (``+-1`` when ``dim == 1``)."""
    w = torch.randn(count, dim, generator=generator, dtype=torch.float64, device=device)
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)


def _sample_family(
    family: str,
    x: torch.Tensor,
    hyper: dict[str, Spec],
    x_range: tuple[float, float],
    jitter: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw noise-free values ``(b, n)`` of one (non-mixture) family at float64 inputs ``x``."""
    b, n, d = x.shape
    device = x.device
    c = math.sqrt(d) * (x_range[1] - x_range[0]) / 4.0
    params: dict[str, torch.Tensor] = {}

    def draw(name: str, default: tuple[float, float] | float) -> torch.Tensor:
        params[name] = _draw(hyper[name], default, b, name, generator, device)
        return params[name]

    if family in _GP_FAMILIES:
        if family in ("se", "matern52"):
            lengthscale = draw("lengthscale", (0.1 * c, 1.0 * c))
            variance = draw("variance", (0.5, 2.0))
            spec = "rbf" if family == "se" else "matern52"
            cov = batched_covariance(spec, x, variance=variance, lengthscale=lengthscale)
        else:
            lengthscale = draw("lengthscale", (0.5, 2.0))
            variance = draw("variance", (0.5, 2.0))
            period = draw("period", (0.5 * c, 2.0 * c))
            if family == "periodic":
                cov = batched_covariance(
                    "periodic", x, variance=variance, lengthscale=lengthscale, period=period
                )
            else:  # the periodic pattern drifts over distances of order decay_lengthscale
                decay = draw("decay_lengthscale", (1.0 * c, 4.0 * c))
                cov = batched_covariance(
                    "periodic*rbf",
                    x,
                    variance=variance,
                    lengthscale=[lengthscale, decay],
                    period=period,
                )
        factor = safe_cholesky(cov, jitter=jitter, name="GP covariance")
        eps = torch.randn(b, n, 1, generator=generator, dtype=torch.float64, device=device)
        return (factor @ eps)[..., 0], params

    w = _unit_directions(b, d, generator, device)
    t = torch.einsum("bnd,bd->bn", x, w)
    if family == "sawtooth":
        frequency = draw("frequency", (3.0 / c, 5.0 / c))
        amplitude = draw("amplitude", 1.0)
        phase = torch.rand(b, 1, generator=generator, dtype=torch.float64, device=device)
        saw = torch.remainder(frequency[:, None] * t + phase, 1.0)
        saw = torch.where(saw >= 1.0, saw - 1.0, saw)  # remainder(-tiny, 1) rounds to 1
        return amplitude[:, None] * (saw - 0.5), params
    # step: threshold uniform over the range that t = w . x covers on the input box
    low, high = x_range
    t_low = torch.minimum(w * low, w * high).sum(dim=1)
    t_high = torch.maximum(w * low, w * high).sum(dim=1)
    u = torch.rand(b, generator=generator, dtype=torch.float64, device=device)
    threshold = t_low + u * (t_high - t_low)
    return (t >= threshold[:, None]).to(torch.float64), params


def sample_functions(
    family: str,
    batch_size: int,
    num_points: int,
    *,
    input_dim: int = 1,
    x_range: tuple[float, float] = (-2.0, 2.0),
    x: torch.Tensor | None = None,
    lengthscale: Spec = None,
    variance: Spec = None,
    period: Spec = None,
    decay_lengthscale: Spec = None,
    frequency: Spec = None,
    amplitude: Spec = None,
    noise_std: Spec = 0.0,
    mixture_families: Sequence[str] = _DEFAULT_MIXTURE,
    jitter: float = 1e-6,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> FunctionBatch:
    """Draw a batch of random functions evaluated at random (or given) inputs.

    See the module docstring for the families, their formulas and the default
    hyperparameter priors.

    Args:
        family: one of :func:`function_families`.
        batch_size: the number of functions ``b``.
        num_points: the number of inputs per function ``n``.
        input_dim: the input dimension ``d``.
        x_range: ``(low, high)``; inputs are uniform on ``[low, high]^d`` independently
            per function and point.
        x: fixed inputs instead of random ones: an ``(n, d)`` tensor shared by every
            function or a ``(b, n, d)`` tensor; must match ``num_points``/``input_dim``.
        lengthscale: a hyperparameter: ``None`` (default prior), a number (fixed) or
            ``(low, high)`` (log-uniform per function). Arguments that do not apply to
            a family are ignored.
        variance: as ``lengthscale`` (described together above).
        period: as ``lengthscale`` (described together above).
        decay_lengthscale: as ``lengthscale`` (described together above).
        frequency: as ``lengthscale`` (described together above).
        amplitude: as ``lengthscale`` (described together above).
        noise_std: observation noise standard deviation: a number ``>= 0`` or a
            log-uniform range.
        mixture_families: the families ``"mixture"`` picks from (uniformly, per
            function); by default the NDP mixture ``("se", "matern52",
            "weakly_periodic", "sawtooth")``.
        jitter: relative diagonal jitter of the GP Cholesky factorisations.
        generator: the ``torch.Generator`` to draw from.
        seed: alternatively, an int seeding a fresh generator.
        dtype: floating dtype of the returned tensors (sampling is done in float64).
        device: device of the returned tensors (default: the generator's device).

    Returns:
        A :class:`FunctionBatch` with ``x (b, n, d)``, ``y (b, n, 1)`` and ``f (b, n, 1)``.

    Raises:
        ValueError: unknown family, non-positive sizes, an empty ``x_range`` or a bad
            hyperparameter.
    """
    if not isinstance(family, str) or family not in _FAMILIES:
        raise ValueError(
            f"Unknown function family {family!r}; valid families are "
            f"{', '.join(map(repr, _FAMILIES))}."
        )
    for arg, value in (
        ("batch_size", batch_size),
        ("num_points", num_points),
        ("input_dim", input_dim),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int; got {value!r}")
    if len(x_range) != 2 or not float(x_range[0]) < float(x_range[1]):
        raise ValueError(f"x_range must be a pair (low, high) with low < high; got {x_range!r}")
    x_range = (float(x_range[0]), float(x_range[1]))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    mixture = tuple(mixture_families)
    if family == "mixture":
        bad = [m for m in mixture if m not in _GP_FAMILIES + _OTHER_FAMILIES]
        if bad or not mixture:
            raise ValueError(
                "mixture_families must be a non-empty list of "
                f"{', '.join(map(repr, _GP_FAMILIES + _OTHER_FAMILIES))}; got {mixture!r}"
            )
    rng = make_generator(generator, seed)
    work_device = rng.device if rng is not None else torch.device("cpu")
    out_device = torch.device(device) if device is not None else work_device

    if x is None:
        u = torch.rand(
            batch_size,
            num_points,
            input_dim,
            generator=rng,
            dtype=torch.float64,
            device=work_device,
        )
        xs = x_range[0] + (x_range[1] - x_range[0]) * u
    else:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor or None; got {type(x).__name__}")
        xs = x.detach().to(device=work_device, dtype=torch.float64)
        if xs.ndim == 2:
            xs = xs.expand(batch_size, *xs.shape)
        if xs.shape != (batch_size, num_points, input_dim):
            raise ValueError(
                f"x must have shape (num_points, input_dim) = ({num_points}, {input_dim}) "
                f"or (batch_size, num_points, input_dim) = ({batch_size}, {num_points}, "
                f"{input_dim}); got {tuple(x.shape)}"
            )
        if not torch.isfinite(xs).all():
            raise ValueError("x contains NaN or inf")
        xs = xs.contiguous()

    hyper: dict[str, Spec] = {
        "lengthscale": lengthscale,
        "variance": variance,
        "period": period,
        "decay_lengthscale": decay_lengthscale,
        "frequency": frequency,
        "amplitude": amplitude,
    }
    for name, spec in hyper.items():
        _check_spec(spec, name)
    _check_spec(noise_std, "noise_std", allow_zero=True)
    params = {
        name: torch.full((batch_size,), math.nan, dtype=torch.float64, device=work_device)
        for name in _PARAM_NAMES
    }
    if family == "mixture":
        choice = torch.randint(len(mixture), (batch_size,), generator=rng, device=work_device)
        families = tuple(mixture[i] for i in choice.tolist())
    else:
        choice = torch.zeros(batch_size, dtype=torch.long, device=work_device)
        mixture = (family,)
        families = (family,) * batch_size

    f = torch.empty(batch_size, num_points, dtype=torch.float64, device=work_device)
    for index, member in enumerate(mixture):
        rows = (choice == index).nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            continue
        values, drawn = _sample_family(member, xs[rows], hyper, x_range, jitter, rng)
        f[rows] = values
        for name, value in drawn.items():
            params[name][rows] = value

    noise = _draw(noise_std, 0.0, batch_size, "noise_std", rng, work_device, allow_zero=True)
    params["noise_std"] = noise
    eps = torch.randn(
        batch_size, num_points, generator=rng, dtype=torch.float64, device=work_device
    )
    y = f + noise[:, None] * eps

    def out(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=out_device, dtype=dtype)

    return FunctionBatch(
        x=out(xs),
        y=out(y[..., None]),
        f=out(f[..., None]),
        families=families,
        params={name: value.to(out_device) for name, value in params.items()},
    )
