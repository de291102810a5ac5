"""The weight-space Bayesian neural network: ``BNN(net, prior, likelihood, inference)``.

One model for every weight-space method of the package: the architecture, the prior
(fixed, GP-induced, hierarchical, flow), the likelihood and the inference (SGHMC,
implicit VI, MAP, ...) are settings; ``fit`` runs the inference and ``posterior``
pushes its weight draws through the network, vectorised over draws with
``torch.func`` (the network is never mutated to hold a sample).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bayesfn.bayesnn.inference import INFERENCES
from bayesfn.bayesnn.inference.base import BNNTarget, Inference
from bayesfn.bayesnn.likelihoods import CategoricalLikelihood, GaussianLikelihood, Likelihood
from bayesfn.bayesnn.nets import MLP, Network
from bayesfn.bayesnn.priors import GaussianPrior, HierarchicalPrior, Prior
from bayesfn.model import (
    Model,
    check_inputs,
    check_labels,
    check_targets,
    component_from,
    resolve_device,
    resolve_dtype,
)
from bayesfn.posterior import GaussianPosterior, Posterior, SamplePosterior
from bayesfn.training import FitResult, StepInfo

__all__ = ["BNN"]

_PRIORS = {"gaussian": GaussianPrior, "hierarchical": HierarchicalPrior}
_LIKELIHOODS = {"gaussian": GaussianLikelihood, "categorical": CategoricalLikelihood}


def _resolve(value: Any, base: type, names: dict[str, Callable[[], Any]], name: str):
    """A component given as itself, its JSON form, or a short name."""
    if isinstance(value, str):
        if value not in names:
            raise ValueError(
                f"{name} must be one of {sorted(names)} or a {base.__name__}; got {value!r}"
            )
        return names[value]()
    return component_from(value, base, name)


class BNN(Model):
    """A Bayesian neural network in weight space.

    Args:
        net: the architecture (:class:`~bayesfn.bayesnn.MLP`, :class:`~bayesfn.bayesnn.CNN`).
        prior: a :class:`~bayesfn.bayesnn.priors.Prior`, e.g. the result of
            :func:`~bayesfn.bayesnn.fit_functional_prior`, or ``"gaussian"`` (fixed
            N(0, 1)) / ``"hierarchical"`` (Gamma(1, 1) precision per layer). A fitted
            prior's hyperparameters are copied into the model at ``fit`` and saved with it.
        likelihood: ``"gaussian"`` (noise variance 0.1 in standardised units, as in the
            paper's UCI runs), ``"categorical"`` (classification), or a
            :class:`~bayesfn.bayesnn.likelihoods.Likelihood`.
        inference: ``"sghmc"`` (default), ``"map"``, or any registered name or
            :class:`~bayesfn.bayesnn.inference.base.Inference` object with its settings.
        standardize: fit on inputs (and regression targets) standardised with the
            training data's mean and standard deviation; predictions come back in
            the original units.
        dtype: float32 by default (neural training).
        device: where fitting and prediction run.

    ``posterior(x)`` is over the network outputs ``f`` (a :class:`SamplePosterior`
    with event ``(n, m)``; logits ``(n, C)`` for classification) and
    ``posterior(x, observation_noise=True)`` over targets (a :class:`MixturePosterior`
    of Gaussians, one per draw, or a :class:`CategoricalPosterior`).

    Example:
        >>> bnn = BNN(MLP(hidden=(50,)), prior="gaussian", inference="sghmc")
        >>> post = bnn.fit(x, y).posterior(x_test, observation_noise=True)
    """

    def __init__(
        self,
        net: Network | dict = MLP(),  # noqa: B008 - architectures are immutable settings
        prior: Prior | dict | str = "gaussian",
        likelihood: Likelihood | dict | str = "gaussian",
        inference: Inference | dict | str = "sghmc",
        *,
        standardize: bool = True,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.net = component_from(net, Network, "net")
        self.prior = _resolve(prior, Prior, _PRIORS, "prior")
        self.likelihood = _resolve(likelihood, Likelihood, _LIKELIHOODS, "likelihood")
        self.inference = _resolve(inference, Inference, INFERENCES, "inference")
        self.standardize = bool(standardize)
        self.dtype = resolve_dtype(dtype, torch.float32)
        self.device = resolve_device(device)

    # ------------------------------------------------------------------ fit
    @property
    def _is_classifier(self) -> bool:
        return self.likelihood.task == "classification"

    def _scale_x(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean_) / self.x_std_

    def _make_target(self, x: torch.Tensor, y: torch.Tensor) -> BNNTarget:
        module = self.net.build(self.num_features_, self.num_outputs_)
        module = module.to(dtype=self.dtype, device=self.device).requires_grad_(False)
        if not hasattr(self, "prior_"):
            self.prior_ = copy.deepcopy(self.prior)
        self.prior_.bind(module, dtype=self.dtype, device=self.device)
        return BNNTarget(module, self.prior_, self.likelihood, x, y, self.num_outputs_)

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        seed: int | None = None,
        progress_bar: bool = True,
        callbacks: Sequence[Callable[[StepInfo], bool | None]] = (),
        checkpoint_dir: Any = None,
        **options: Any,
    ) -> BNN:
        """Run the inference on ``x (n, d)`` and ``y (n,)`` / ``(n, m)`` (regression)
        or integer labels ``(n,)`` (classification). Extra ``options`` (e.g.
        ``max_steps=``) go to the inference's ``run``. Returns ``self``."""
        x = check_inputs(x, dtype=self.dtype, device=self.device)
        if self._is_classifier:
            y, num_classes = check_labels(y, x.shape[0], None)
            y = y.to(self.device)
            self.num_outputs_ = num_classes
        else:
            y = check_targets(y, x.shape[0], dtype=self.dtype, device=self.device)
            self.num_outputs_ = y.shape[1]
        self.num_features_ = x.shape[1]
        if self.standardize:
            self.x_mean_, self.x_std_ = x.mean(0), _safe_std(x)
            if self._is_classifier:
                self.y_mean_ = torch.zeros(1, dtype=self.dtype, device=self.device)
                self.y_std_ = torch.ones(1, dtype=self.dtype, device=self.device)
            else:
                self.y_mean_, self.y_std_ = y.mean(0), _safe_std(y)
        else:
            self.x_mean_ = torch.zeros(x.shape[1], dtype=self.dtype, device=self.device)
            self.x_std_ = torch.ones_like(self.x_mean_)
            self.y_mean_ = torch.zeros(self.num_outputs_, dtype=self.dtype, device=self.device)
            self.y_std_ = torch.ones_like(self.y_mean_)
        if hasattr(self, "prior_"):
            del self.prior_  # a refit starts from the prior as given
        y_fit = y if self._is_classifier else (y - self.y_mean_) / self.y_std_
        self.target_ = self._make_target(self._scale_x(x), y_fit)
        self.state_, result = self.inference.run(
            self.target_,
            seed=seed,
            progress_bar=progress_bar,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            **options,
        )
        self.fit_result_ = result if isinstance(result, FitResult) else FitResult(**result)
        return self

    # ------------------------------------------------------------ posterior
    def weight_draws(
        self, num_samples: int | None = None, *, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Posterior draws of every parameter, ``(C, S, *shape)`` (standardised units)."""
        self._check_fitted()
        return self.inference.draws(self.target_, self.state_, num_samples, generator=generator)

    def posterior(
        self,
        x: Any,
        *,
        observation_noise: bool = False,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Posterior:
        """The predictive at ``x (n, d)`` or ``(b, n, d)``.

        Args:
            x: test inputs.
            observation_noise: over targets instead of network outputs.
            num_samples: weight draws for generative approximations (stored MCMC draws
                are all used).
            generator: for those draws.
        """
        self._check_fitted()
        x = check_inputs(
            x,
            dtype=self.dtype,
            device=self.device,
            num_features=self.num_features_,
            allow_batch=True,
        )
        draws = self.weight_draws(num_samples, generator=generator)
        first = next(iter(draws.values()))
        chains, per_chain = first.shape[:2]
        flat = {k: v.reshape(chains * per_chain, *v.shape[2:]) for k, v in draws.items()}
        with torch.no_grad():
            f = self.target_.forward(flat, self._scale_x(x))
        if self._is_classifier:
            if observation_noise:
                return self.likelihood.predictive(f, {})
        else:
            f = f * self.y_std_ + self.y_mean_
            if observation_noise:
                _, extra = self.target_.split(flat)
                return self.likelihood.predictive(f, extra, scale=self.y_std_)
        if f.shape[0] == 1:  # a point estimate: a degenerate Gaussian at it
            return GaussianPosterior(f[0], variance=torch.zeros_like(f[0]))
        # keep the chains, so that ArviZ's R-hat and ESS diagnose the sampler
        return SamplePosterior(f.reshape(chains, per_chain, *f.shape[1:]), chains=True)

    # ------------------------------------------------------------ state
    def _get_state(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features_,
            "num_outputs": self.num_outputs_,
            "x_mean": self.x_mean_,
            "x_std": self.x_std_,
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "prior": self.prior_.state_dict(),
            "inference": self.state_,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.num_features_ = state["num_features"]
        self.num_outputs_ = state["num_outputs"]
        for name in ("x_mean", "x_std", "y_mean", "y_std"):
            setattr(self, f"{name}_", state[name].to(self.device))
        empty_x = torch.zeros(1, self.num_features_, dtype=self.dtype, device=self.device)
        empty_y = (
            torch.zeros(1, dtype=torch.int64)
            if self._is_classifier
            else torch.zeros(1, self.num_outputs_, dtype=self.dtype)
        )
        self.target_ = self._make_target(empty_x, empty_y.to(self.device))
        self.prior_.load_state_dict(state["prior"])
        self.state_ = state["inference"]


def _safe_std(t: torch.Tensor) -> torch.Tensor:
    """Per-column standard deviation; 1 where a column is constant (or a single row)."""
    if t.shape[0] < 2:
        return torch.ones_like(t[0])
    std = t.std(0)
    return torch.where(std > 1e-12 * (1 + t.abs().amax(0)), std, torch.ones_like(std))
