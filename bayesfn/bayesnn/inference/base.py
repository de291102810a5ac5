"""What every BNN inference works on, and the interface it implements.

:class:`BNNTarget` is the unnormalised log posterior over a network's weights (and the
likelihood's own parameters): a fixed module evaluated under stacked parameter
samples, a bound prior, a likelihood, and the (standardised) training data.
An :class:`Inference` (SGHMC, implicit VI, MAP, ...) turns a target into a fitted
state of tensors and, from that state, into weight draws.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bayesfn.bayesnn.likelihoods import Likelihood
from bayesfn.bayesnn.nets import batched_forward
from bayesfn.bayesnn.priors import Prior
from bayesfn.model import Component
from bayesfn.training import FitResult, StepInfo

__all__ = ["BNNTarget", "Inference"]

Params = dict[str, torch.Tensor]


class BNNTarget:
    """``log p(θ, D) = Σ_i log p(y_i | f(x_i; w), φ) + log p(w) + log p(φ)``.

    ``θ = (w, φ)``: the network weights ``w`` (names as in ``module``) and the
    likelihood's own parameters ``φ`` (names starting with ``"likelihood."``).
    Every parameter dict holds ``(K, *shape)`` tensors for ``K`` samples.

    Args:
        module: the network; its parameters are a template, never mutated to hold a
            sample.
        prior: bound to ``module``'s parameters.
        likelihood: the likelihood.
        x: ``(n, d)`` training inputs (as the network sees them).
        y: ``(n, m)`` targets, or ``(n,)`` int64 labels.
        num_outputs: ``m`` (regression) or the number of classes.
    """

    def __init__(
        self,
        module: nn.Module,
        prior: Prior,
        likelihood: Likelihood,
        x: torch.Tensor,
        y: torch.Tensor,
        num_outputs: int,
    ) -> None:
        self.module = module
        self.prior = prior
        self.likelihood = likelihood
        self.x, self.y = x, y
        self.num_data = x.shape[0]
        self.num_outputs = num_outputs
        self.shapes = {n: p.shape for n, p in module.named_parameters()}
        prior.check_covers({n: torch.empty(1, *s) for n, s in self.shapes.items()})

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    @property
    def device(self) -> torch.device:
        return self.x.device

    def batch_size(self, requested: int | None) -> int | None:
        """A minibatch size clamped to the data (``None``: the full data every step)."""
        return None if requested is None else min(requested, self.num_data)

    @property
    def num_weights(self) -> int:
        """The number of network weights ``d``."""
        return sum(s.numel() for s in self.shapes.values())

    def split(self, params: Mapping[str, torch.Tensor]) -> tuple[Params, Params]:
        """``(weights, likelihood parameters)`` of a parameter dict."""
        weights = {n: params[n] for n in self.shapes}
        extra = {n: v for n, v in params.items() if n not in self.shapes}
        return weights, extra

    def init_params(
        self, num: int, *, generator: torch.Generator | None = None, how: str = "default"
    ) -> Params:
        """``num`` starting points: ``"default"`` (``W ~ N(0, 1)``, ``b = 0``, as the
        official code starts each chain) or ``"prior"`` (a prior draw)."""
        if how == "prior":
            weights = {
                n: v.to(self.dtype, self.device)
                for n, v in self.prior.sample(num, generator=generator).items()
            }
        elif how == "default":
            weights = {}
            for n, s in self.shapes.items():
                if n.endswith("bias"):
                    weights[n] = torch.zeros(num, *s, dtype=self.dtype, device=self.device)
                else:
                    weights[n] = torch.randn(
                        num, *s, generator=generator, dtype=self.dtype, device=self.device
                    )
        else:
            raise ValueError(f"init must be 'default' or 'prior'; got {how!r}")
        extra = self.likelihood.init_params(
            num, self.num_outputs, dtype=self.dtype, device=self.device
        )
        return {**weights, **extra}

    def forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Network outputs ``(K, ..., n, m)`` at ``x (..., n, d)``."""
        weights, _ = self.split(params)
        return batched_forward(self.module, weights, x)

    def log_likelihood(
        self,
        params: Mapping[str, torch.Tensor],
        batch: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(K,)`` log likelihood of the full data, estimated from ``batch = (x_b, y_b)``
        (all data when ``None``) by ``(n / |B|) Σ_B log p(y_i | ...)``: unbiased."""
        x, y = (self.x, self.y) if batch is None else batch
        _, extra = self.split(params)
        per_point = self.likelihood.log_prob(self.forward(params, x), y, extra)
        return per_point.sum(-1) * (self.num_data / x.shape[0])

    def log_prior(
        self,
        params: Mapping[str, torch.Tensor],
        prior_state: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(K,)`` log prior of weights (given a hierarchical prior's latent state,
        or marginally without one) and of the likelihood's parameters."""
        weights, extra = self.split(params)
        return self.prior.log_prob(weights, prior_state) + self.likelihood.log_prior(extra)

    def log_joint(
        self,
        params: Mapping[str, torch.Tensor],
        batch: Sequence[torch.Tensor] | None = None,
        prior_state: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(K,)`` unbiased estimate of ``log p(θ, D)`` from a minibatch."""
        return self.log_likelihood(params, batch) + self.log_prior(params, prior_state)


class Inference(Component, abc.ABC):
    """How a :class:`~bayesfn.bayesnn.BNN` finds its posterior over weights.

    Settings only (a :class:`~bayesfn.model.Component`); what :meth:`run` learns is
    returned as a state dict that the BNN saves and hands back to :meth:`draws`.
    """

    #: whether :meth:`draws` returns a point estimate (one draw) rather than a posterior
    is_point_estimate: bool = False

    @abc.abstractmethod
    def run(
        self,
        target: BNNTarget,
        *,
        seed: int | None = None,
        progress_bar: bool = True,
        callbacks: Sequence[Callable[[StepInfo], bool | None]] = (),
        checkpoint_dir: Any = None,
        **options: Any,
    ) -> tuple[dict[str, Any], FitResult]:
        """Fit the posterior approximation; return ``(state, fit_result)``. ``state``
        is a nested dict of tensors and JSON-able values."""

    def _check_options(self, options: dict[str, Any]) -> None:
        """Refuse ``run`` options this inference does not take, naming them."""
        if options:
            raise TypeError(f"{type(self).__name__}.run got unexpected option(s) {sorted(options)}")

    @abc.abstractmethod
    def draws(
        self,
        target: BNNTarget,
        state: Mapping[str, Any],
        num_samples: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Params:
        """Posterior draws of all parameters, each ``(C, S, *shape)`` for ``C`` chains
        of ``S`` draws. Stored draws (MCMC) ignore ``num_samples``; generative
        approximations draw ``num_samples`` (their default when ``None``) with ``C = 1``.
        """
