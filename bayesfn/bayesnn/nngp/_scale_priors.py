"""Priors on the last-layer variance ``σ²`` of a scale-mixture NNGP.

Every prior is a log density over ``σ² > 0`` evaluated on tensors; the named ones are
parameterised as in Lee et al. (2022) where the paper fixes a form:

=================  ====================  ==============================================
name               params (defaults)     density of ``σ²``
=================  ====================  ==============================================
``inverse_gamma``  ``a=2, b=2``          ``bᵃ/Γ(a) (σ²)^(−a−1) exp(−b/σ²)``
``burr12``         ``c=2, d=1``          ``c d (σ²)^(c−1) (1 + (σ²)^c)^(−d−1)``
``half_cauchy``    ``scale=1``           ``σ ~ HalfCauchy(scale)``, mapped to ``σ²``
``lognormal``      ``loc=0, scale=1``    ``log σ² ~ N(loc, scale²)``
``point_mass``     ``value=1``           ``σ² = value`` (the plain NNGP)
=================  ====================  ==============================================

A user ``torch.distributions.Distribution`` over ``σ² > 0`` is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["LEARNABLE", "PRIORS", "check_prior", "prior_log_density"]

PRIORS: dict[str, dict[str, float]] = {
    "inverse_gamma": {"a": 2.0, "b": 2.0},
    "burr12": {"c": 2.0, "d": 1.0},
    "half_cauchy": {"scale": 1.0},
    "lognormal": {"loc": 0.0, "scale": 1.0},
    "point_mass": {"value": 1.0},
}
_POSITIVE = {"a", "b", "c", "d", "scale", "value"}
# prior parameters that ScaleMixtureNNGP can fit by the marginal likelihood (positive,
# so they live on the same softplus scale as the network hyperparameters)
LEARNABLE: dict[str, tuple[str, ...]] = {
    "inverse_gamma": ("a", "b"),
    "burr12": ("c", "d"),
    "half_cauchy": ("scale",),
    "lognormal": ("scale",),
}


def check_prior(prior: Any, prior_params: dict[str, float] | None) -> dict[str, float]:
    """Validate ``prior`` / ``prior_params`` and return the full parameter dict."""
    if isinstance(prior, torch.distributions.Distribution):
        if prior_params:
            raise ValueError("prior_params must be empty when prior is a torch Distribution")
        if prior.batch_shape != () or prior.event_shape != ():
            raise ValueError(
                "a torch Distribution prior must be scalar (batch and event shape ()); got "
                f"batch {tuple(prior.batch_shape)}, event {tuple(prior.event_shape)}"
            )
        return {}
    if prior not in PRIORS:
        raise ValueError(
            f"prior must be one of {sorted(PRIORS)} or a torch.distributions.Distribution over "
            f"σ² > 0; got {prior!r}"
        )
    params = dict(PRIORS[prior])
    unknown = set(prior_params or {}) - set(params)
    if unknown:
        raise ValueError(
            f"prior_params has unknown key(s) {sorted(unknown)} for prior {prior!r}; "
            f"it takes {sorted(params)}"
        )
    params.update({k: float(v) for k, v in (prior_params or {}).items()})
    for key, value in params.items():
        if not math.isfinite(value) or (key in _POSITIVE and not value > 0):
            raise ValueError(
                f"prior_params[{key!r}] of the {prior} prior must be "
                f"{'positive and ' if key in _POSITIVE else ''}finite; got {value!r}"
            )
    return params


def _as(value: Any, like: torch.Tensor) -> torch.Tensor:
    """A float or tensor prior parameter as a tensor of ``like``'s dtype and device, so
    learnable parameters keep their gradient."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def prior_log_density(prior: Any, params: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``log p(σ²)`` as a function of a ``σ²`` tensor (any shape), for every prior but the
    point mass. ``params`` values may be tensors (e.g. learnable ``a``, ``b``)."""
    if isinstance(prior, torch.distributions.Distribution):
        return lambda s2: prior.log_prob(s2).to(s2.dtype)
    if prior == "inverse_gamma":

        def inverse_gamma(s2: torch.Tensor) -> torch.Tensor:
            a, b = _as(params["a"], s2), _as(params["b"], s2)
            return a * b.log() - torch.lgamma(a) - (a + 1) * s2.log() - b / s2

        return inverse_gamma
    if prior == "burr12":
        c, d = params["c"], params["d"]

        def burr12(s2: torch.Tensor) -> torch.Tensor:
            cc, dd = _as(c, s2), _as(d, s2)
            log_s2 = s2.log()
            # softplus(c log σ²) = log(1 + (σ²)^c) without overflow for large σ²
            return (
                cc.log()
                + dd.log()
                + (cc - 1) * log_s2
                - (dd + 1) * torch.nn.functional.softplus(cc * log_s2)
            )

        return burr12
    if prior == "half_cauchy":
        scale = params["scale"]

        # σ = √σ² has density 2 / (π s (1 + σ²/s²)); dσ/dσ² = 1 / (2σ)
        def half_cauchy(s2: torch.Tensor) -> torch.Tensor:
            sc = _as(scale, s2)
            return -math.log(math.pi) - sc.log() - torch.log1p(s2 / sc**2) - 0.5 * s2.log()

        return half_cauchy
    if prior == "lognormal":
        loc, scale = params["loc"], params["scale"]

        def lognormal(s2: torch.Tensor) -> torch.Tensor:
            mu, sc = _as(loc, s2), _as(scale, s2)
            log_s2 = s2.log()
            return (
                -0.5 * ((log_s2 - mu) / sc) ** 2 - sc.log() - 0.5 * math.log(2 * math.pi) - log_s2
            )

        return lognormal
    raise ValueError(f"prior {prior!r} has no density (a point mass)")
