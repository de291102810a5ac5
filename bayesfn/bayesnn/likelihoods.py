"""Likelihoods of weight-space BNNs: how network outputs ``f`` explain targets.

A likelihood may carry parameters of its own that inference learns beside the weights
(a Gaussian noise level). They live in the same stacked parameter dict as the weights,
under names starting with ``"likelihood."``, with the same leading sample dimension, and
:meth:`Likelihood.log_prior` gives their prior, so that samplers and variational
methods treat them like any other parameter.

Shapes: ``f`` is ``(K, ..., n, m)`` for ``K`` parameter samples; ``y`` is ``(n, m)``
(regression) or ``(n,)`` integer labels (classification); per-example log likelihoods
are ``(K, ..., n)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F

from bayesfn.model import Component
from bayesfn.posterior import (
    CategoricalPosterior,
    GaussianPosterior,
    MixturePosterior,
    Posterior,
)

__all__ = ["CategoricalLikelihood", "GaussianLikelihood", "Likelihood"]

NOISE = "likelihood.log_noise"


class Likelihood(Component, abc.ABC):
    """Base of BNN likelihoods."""

    #: ``"regression"`` (real targets ``(n, m)``) or ``"classification"`` (labels)
    task: str = "regression"

    def init_params(
        self, num: int, num_outputs: int, *, dtype: torch.dtype, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Starting values of the likelihood's own parameters for ``num`` samples."""
        return {}

    def log_prior(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor | float:
        """``(K,)`` log prior density of the likelihood's own parameters (0 if none)."""
        return 0.0

    @abc.abstractmethod
    def log_prob(
        self, f: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Per-example log likelihood ``(K, ..., n)`` of outputs ``f (K, ..., n, m)``."""

    @abc.abstractmethod
    def predictive(
        self,
        f: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        *,
        scale: torch.Tensor | float = 1.0,
    ) -> Posterior:
        """The posterior predictive of targets from ``S`` equally weighted draws
        ``f (S, ..., n, m)`` and the likelihood parameters of each draw; ``scale``
        ``(m,)`` converts standardised noise to the units of ``f``."""


class GaussianLikelihood(Likelihood):
    """``y = f + ε``, ``ε ~ N(0, σ²)`` independently per point and output.

    Args:
        noise: the noise variance ``σ²`` (fixed), or its starting value when learned.
            In the units the model sees: :class:`~bayesfn.bayesnn.BNN` standardises
            targets by default, so ``0.1`` is a tenth of the targets' variance (Tran
            et al.'s UCI setting).
        learn_noise: infer ``σ²`` (one per output) beside the weights.
        noise_prior: ``(α, β)`` of the inverse-gamma prior on a learned ``σ²``
            (density ``∝ (σ²)^(-α-1) exp(-β/σ²)``); ``None``: flat in ``log σ²``.
    """

    def __init__(
        self,
        noise: float = 0.1,
        *,
        learn_noise: bool = False,
        noise_prior: Sequence[float] | None = (1.0, 0.1),
    ) -> None:
        if not (isinstance(noise, int | float) and math.isfinite(noise) and noise > 0):
            raise ValueError(f"noise must be a positive finite variance; got {noise!r}")
        if noise_prior is not None:
            noise_prior = [float(v) for v in noise_prior]
            if len(noise_prior) != 2 or not all(v > 0 and math.isfinite(v) for v in noise_prior):
                raise ValueError(
                    f"noise_prior must be a pair (alpha, beta) of positive numbers or None; "
                    f"got {noise_prior!r}"
                )
        self.noise = float(noise)
        self.learn_noise = bool(learn_noise)
        self.noise_prior = noise_prior

    def noise_variance(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor | float:
        """``σ²``: ``(K, m)`` when learned, else the fixed number."""
        return params[NOISE].exp() if self.learn_noise else self.noise

    def init_params(self, num, num_outputs, *, dtype, device):
        if not self.learn_noise:
            return {}
        start = math.log(self.noise)
        return {NOISE: torch.full((num, num_outputs), start, dtype=dtype, device=device)}

    def log_prior(self, params):
        if not self.learn_noise or self.noise_prior is None:
            return 0.0
        a, b = self.noise_prior
        u = params[NOISE]  # u = log σ²; the density of u includes the Jacobian σ²
        lp = a * math.log(b) - math.lgamma(a) - a * u - b * torch.exp(-u)
        return lp.sum(-1)

    def log_prob(self, f, y, params):
        var = self.noise_variance(params)
        if isinstance(var, torch.Tensor):  # (K, m) -> broadcast over (..., n)
            var = var.reshape(var.shape[0], *([1] * (f.ndim - 2)), var.shape[-1])
            log_var = torch.log(var)
        else:
            log_var = math.log(var)
        lp = -0.5 * ((y - f) ** 2 / var + log_var + math.log(2 * math.pi))
        return lp.sum(-1)

    def predictive(self, f, params, *, scale=1.0):
        var = self.noise_variance(params)
        scale2 = torch.as_tensor(scale, dtype=f.dtype, device=f.device) ** 2
        components = []
        for s in range(f.shape[0]):
            v = var[s] if isinstance(var, torch.Tensor) else var
            v = (torch.as_tensor(v, dtype=f.dtype, device=f.device) * scale2).expand(f[s].shape)
            components.append(GaussianPosterior(f[s], variance=v.contiguous()))
        return MixturePosterior(components, weights=torch.ones(f.shape[0], dtype=f.dtype))


class CategoricalLikelihood(Likelihood):
    """Labels ``y ~ Categorical(softmax(f))``; ``f`` holds ``C`` logits per point."""

    task = "classification"

    def __init__(self) -> None:
        pass

    def log_prob(self, f, y, params):
        logp = F.log_softmax(f, dim=-1)
        idx = y.reshape(*([1] * (f.ndim - 2)), -1, 1).expand(*f.shape[:-1], 1)
        return logp.gather(-1, idx).squeeze(-1)

    def predictive(self, f, params, *, scale=1.0):
        probs = torch.softmax(f, dim=-1).mean(0)
        return CategoricalPosterior(probs)
