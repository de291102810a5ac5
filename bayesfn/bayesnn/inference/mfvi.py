"""Mean-field variational inference: Bayes by Backprop (Blundell et al., ICML 2015).

``q(θ) = Π_j N(θ_j; μ_j, σ_j²)`` over every network weight and every learned likelihood
parameter (a learned noise level is one more coordinate of ``θ``), fitted by maximising

``ELBO = E_q[log p(D | θ)] + E_q[log p(φ)] + H[q(φ)] − KL(q(w) ‖ p(w))``

with the reparameterisation trick (``σ = softplus(ρ)``). The expected log likelihood is
estimated from a minibatch, scaled by ``n / |B|``, and ``K`` draws per step:

* through the local reparameterisation (Kingma et al., NeurIPS 2015) when the network is
  an :class:`~bayesfn.bayesnn.MLP`: each layer's pre-activations are Gaussian given its
  input, ``a ~ N(h μ_Wᵀ / sqrt(n_in) + μ_b, h² σ_W²ᵀ / n_in + σ_b²)``, drawn per example;
* otherwise by drawing ``K`` weight sets and evaluating them with
  :func:`~bayesfn.bayesnn.nets.batched_forward`.

The KL to a :class:`~bayesfn.bayesnn.GaussianPrior` is exact; for any other prior it is
the exact entropy of ``q`` minus a Monte Carlo estimate of ``E_q[log p(w)]`` (the
marginal density of a hierarchical prior).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bayesfn.bayesnn.inference.base import BNNTarget, Inference, Params
from bayesfn.bayesnn.nets import ScaledLinear, _MLPModule
from bayesfn.bayesnn.priors import GaussianPrior, softplus_inverse
from bayesfn.training import optimize

__all__ = ["MeanFieldVI"]

_SCHEDULES = ("constant", "cosine")


def _key(name: str) -> str:
    return name.replace(".", "__")


def gaussian_kl(
    mean: torch.Tensor, std: torch.Tensor, prior_std: torch.Tensor | float
) -> torch.Tensor:
    """``KL(N(mean, std²) ‖ N(0, prior_std²))`` summed over all entries (a scalar)."""
    prior_std = torch.as_tensor(prior_std, dtype=mean.dtype, device=mean.device)
    ratio = (std / prior_std) ** 2
    return 0.5 * (ratio + (mean / prior_std) ** 2 - 1.0 - torch.log(ratio)).sum()


def _local_reparam_forward(
    module: _MLPModule,
    mean: Mapping[str, torch.Tensor],
    std: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    num: int,
) -> torch.Tensor:
    """Outputs ``(num, n, m)`` of an MLP at ``x (n, d)`` with every layer's
    pre-activations drawn from their Gaussian under ``q``, independently per example."""
    h = x.expand(num, *x.shape)
    last = len(module.layers) - 1
    for i, layer in enumerate(module.layers):
        w_mean, b_mean = mean[f"layers.{i}.weight"], mean[f"layers.{i}.bias"]
        w_var, b_var = std[f"layers.{i}.weight"] ** 2, std[f"layers.{i}.bias"] ** 2
        scale = 1.0 / math.sqrt(layer.in_features)
        a_mean = h @ w_mean.T * scale + b_mean
        a_var = (h**2) @ w_var.T * scale**2 + b_var
        h = a_mean + a_var.sqrt() * torch.randn_like(a_mean)
        if i < last:
            h = module.phi(h)
    return h


class MeanFieldVI(Inference):
    """Mean-field Gaussian variational inference (Bayes by Backprop).

    Args:
        max_steps: optimisation steps.
        lr: Adam's learning rate.
        batch_size: minibatch size (``None``: full batch); the likelihood term is
            scaled by ``n / |B|``.
        train_samples: ``K``, Monte Carlo draws per step.
        init_std: the starting ``σ`` of every coordinate.
        init: ``"default"`` or ``"prior"`` starting means (see
            :meth:`~bayesfn.bayesnn.inference.base.BNNTarget.init_params`).
        local_reparameterization: use the local reparameterisation for MLPs (other
            networks always draw weights).
        lr_schedule: ``"constant"`` or ``"cosine"`` (annealed to 0 over ``max_steps``).
        num_draws: weight draws that :meth:`draws` returns by default.

    The fitted state is ``{"mean": {name: (*shape)}, "std": {name: (*shape)},
    "draw_seed": int}``; :meth:`draws` without a generator uses one seeded with
    ``draw_seed`` (the fit's seed), so that repeated predictions agree. Draws are
    ``(1, S, *shape)``.
    """

    def __init__(
        self,
        max_steps: int = 2000,
        lr: float = 1e-2,
        batch_size: int | None = None,
        train_samples: int = 1,
        init_std: float = 1e-2,
        init: str = "default",
        local_reparameterization: bool = True,
        lr_schedule: str = "constant",
        num_draws: int = 100,
    ) -> None:
        if not (isinstance(max_steps, int) and max_steps >= 0):
            raise ValueError(f"max_steps must be a non-negative integer; got {max_steps!r}")
        if not (isinstance(lr, int | float) and lr > 0):
            raise ValueError(f"lr must be positive; got {lr!r}")
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        if not (isinstance(train_samples, int) and train_samples >= 1):
            raise ValueError(f"train_samples must be a positive integer; got {train_samples!r}")
        if not (isinstance(init_std, int | float) and math.isfinite(init_std) and init_std > 0):
            raise ValueError(f"init_std must be a positive finite number; got {init_std!r}")
        if init not in ("default", "prior"):
            raise ValueError(f"init must be 'default' or 'prior'; got {init!r}")
        if lr_schedule not in _SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {_SCHEDULES}; got {lr_schedule!r}")
        if not (isinstance(num_draws, int) and num_draws >= 1):
            raise ValueError(f"num_draws must be a positive integer; got {num_draws!r}")
        self.max_steps = max_steps
        self.lr = float(lr)
        self.batch_size = batch_size
        self.train_samples = train_samples
        self.init_std = float(init_std)
        self.init = init
        self.local_reparameterization = bool(local_reparameterization)
        self.lr_schedule = lr_schedule
        self.num_draws = num_draws

    # ------------------------------------------------------------ objective
    @staticmethod
    def uses_local_reparameterization(target: BNNTarget) -> bool:
        """Whether the network is an MLP of ``sqrt(fan_in)``-scaled linear layers."""
        module = target.module
        return isinstance(module, _MLPModule) and all(
            isinstance(layer, ScaledLinear) for layer in module.layers
        )

    def negative_elbo(
        self,
        target: BNNTarget,
        mean: Mapping[str, torch.Tensor],
        std: Mapping[str, torch.Tensor],
        batch: tuple[torch.Tensor, ...] | None = None,
        num_samples: int | None = None,
    ) -> torch.Tensor:
        """``−ELBO / n`` (a scalar), estimated from ``batch = (x_b, y_b)`` (all data
        when ``None``) and ``num_samples`` draws (``train_samples`` when ``None``).

        ``mean`` and ``std`` map every parameter name to a ``(*shape)`` tensor."""
        k = self.train_samples if num_samples is None else num_samples
        x, y = (target.x, target.y) if batch is None else batch
        weight_names = list(target.shapes)
        extra_names = [n for n in mean if n not in target.shapes]
        extra = {
            n: mean[n] + std[n] * torch.randn((k, *mean[n].shape), dtype=x.dtype, device=x.device)
            for n in extra_names
        }
        w_mean = {n: mean[n] for n in weight_names}
        w_std = {n: std[n] for n in weight_names}
        if self.local_reparameterization and self.uses_local_reparameterization(target):
            f = _local_reparam_forward(target.module, w_mean, w_std, x, k)
            weights = None
        else:
            weights = {
                n: w_mean[n] + w_std[n] * torch.randn_like(w_mean[n].expand(k, *w_mean[n].shape))
                for n in weight_names
            }
            f = target.forward(weights, x)
        expected_ll = target.likelihood.log_prob(f, y, extra).mean(0).sum() * (
            target.num_data / x.shape[0]
        )
        # likelihood parameters: E_q[log p(φ)] + H[q(φ)]
        log_prior_extra = target.likelihood.log_prior(extra)
        extra_term = log_prior_extra.mean() if torch.is_tensor(log_prior_extra) else 0.0
        for n in extra_names:
            extra_term = extra_term + _entropy(std[n])
        prior = target.prior
        if isinstance(prior, GaussianPrior):
            scales = prior.scales()
            kl = sum(
                gaussian_kl(w_mean[n], w_std[n], scales[n].detach().to(x.dtype))
                for n in weight_names
            )
        else:
            if weights is None:
                weights = {
                    n: w_mean[n]
                    + w_std[n] * torch.randn_like(w_mean[n].expand(k, *w_mean[n].shape))
                    for n in weight_names
                }
            kl = -sum(_entropy(w_std[n]) for n in weight_names) - prior.log_prob(weights).mean()
        return -(expected_ll + extra_term - kl) / target.num_data

    # ------------------------------------------------------------ interface
    def run(
        self,
        target: BNNTarget,
        *,
        seed=None,
        progress_bar=True,
        callbacks=(),
        checkpoint_dir=None,
        max_steps: int | None = None,
        **options: Any,
    ):
        self._check_options(options)
        steps = self.max_steps if max_steps is None else max_steps
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        start = target.init_params(1, generator=generator, how=self.init)
        raw_std = float(softplus_inverse(self.init_std))
        holder = nn.ParameterDict()
        for name, value in start.items():
            holder["mean__" + _key(name)] = nn.Parameter(value[0].clone())
            holder["rho__" + _key(name)] = nn.Parameter(torch.full_like(value[0], raw_std))
        names = list(start)

        def moments() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
            mean = {n: holder["mean__" + _key(n)] for n in names}
            std = {n: F.softplus(holder["rho__" + _key(n)]) for n in names}
            return mean, std

        def loss(batch):
            mean, std = moments()
            return self.negative_elbo(target, mean, std, batch if batch else None)

        batch_size = target.batch_size(self.batch_size)
        scheduler = None
        if self.lr_schedule == "cosine" and steps > 0:

            def scheduler(opt):
                return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

        result = optimize(
            holder,
            loss,
            data=(target.x, target.y),
            batch_size=batch_size,
            max_steps=steps,
            lr=self.lr,
            scheduler=scheduler,
            seed=seed,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            progress_bar=progress_bar,
            desc="MFVI",
        )
        mean, std = moments()
        state = {
            "mean": {n: v.detach().clone() for n, v in mean.items()},
            "std": {n: v.detach().clone() for n, v in std.items()},
            "draw_seed": 0 if seed is None else int(seed),
        }
        return state, result

    def draws(self, target, state, num_samples=None, *, generator=None) -> Params:
        num = self.num_draws if num_samples is None else num_samples
        if not (isinstance(num, int) and num >= 1):
            raise ValueError(f"num_samples must be a positive integer; got {num!r}")
        if generator is None:  # repeated calls give the same draws
            generator = torch.Generator().manual_seed(int(state.get("draw_seed", 0)))
        out = {}
        for name, mean in state["mean"].items():
            eps = torch.randn((num, *mean.shape), generator=generator, dtype=mean.dtype)
            out[name] = (mean + state["std"][name] * eps.to(mean.device)).unsqueeze(0)
        return out


def _entropy(std: torch.Tensor) -> torch.Tensor:
    """Entropy of ``N(μ, diag(std²))`` (a scalar)."""
    return torch.log(std).sum() + 0.5 * std.numel() * (1.0 + math.log(2 * math.pi))
