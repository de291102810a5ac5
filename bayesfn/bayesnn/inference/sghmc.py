"""Stochastic gradient Hamiltonian Monte Carlo over a BNN's weights (Tran et al., JMLR
2022, §5: the sampler of every functional-prior experiment).

:class:`SGHMC` runs :func:`bayesfn.sampling.sample` on the BNN's minibatch-scaled log
joint ``(N/|B|) Σ_B log p(y|x, w) + log p(w)``, with ``C`` chains vectorised as stacked
parameters, and, for a hierarchical prior, the prior's conjugate Gibbs step on each
chain's latent precisions every ``resample_prior_every`` steps (burn-in included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from bayesfn.bayesnn.inference.base import BNNTarget, Inference
from bayesfn.sampling import (
    AdaptiveSGHMCKernel,
    SampleStepInfo,
    SGHMCKernel,
    chain_seed,
    sample,
)
from bayesfn.training import _shared_seed, distributed_context

__all__ = ["SGHMC"]

_INIT_STREAM = 3  # chain_seed stream of a chain's starting point (0-2: the loop's)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


class SGHMC(Inference):
    """SGHMC, scale-adapted by default, with ``num_chains`` chains vectorised.

    The defaults are the official code's UCI-regression settings
    (``tranbahien/you-need-a-good-prior``, ``uci_regression.ipynb``): batch 32,
    ``lr = 0.01``, ``mdecay = 0.01``, 2000 burn-in (adaptation) steps, a draw every
    2000 steps, 40 draws per chain of which the first 10 are discarded, 4 chains
    (120 draws kept), gradient norms clipped at 100 and, for hierarchical priors, a
    Gibbs step every 1000 steps. That is 4 × 82 000 steps: minutes per chain on a
    CPU; shrink ``thin`` and ``num_samples`` for quick runs.

    Args:
        lr: the learning rate ``η``. With ``adaptive=True`` it enters **squared**
            (a step of ``η² M⁻¹ ∇U``, see :class:`~bayesfn.sampling.AdaptiveSGHMCKernel`);
            otherwise it is the SGHMC step ``η = ε²`` of
            :class:`~bayesfn.sampling.SGHMCKernel`.
        mdecay: momentum decay (friction) per step, in ``(0, 1]``.
        num_burn_in: steps before the first draw; the adaptive kernel adapts its
            preconditioner during them only.
        num_samples: draws taken per chain (including the discarded ones).
        thin: steps between draws.
        num_discard: the first draws of each chain that are thrown away (as the
            official notebooks do after burn-in).
        num_chains: independent chains ``C``, each from its own starting point.
        batch_size: minibatch size ``|B|`` (``None``, or more than the data: full batch).
        adaptive: scale-adapted SGHMC (Springenberg et al., 2016) rather than plain
            SGHMC (Chen et al., 2014).
        grad_clip: clip each chain's gradient norm to this (``None``: no clipping).
        resample_prior_every: steps between Gibbs updates of a hierarchical prior's
            per-chain precisions (official: 1000 for UCI, 20 for the 1-D demo).
        init: ``"default"`` (``W ~ N(0, 1)``, ``b = 0``, as the official code starts
            each chain) or ``"prior"`` (a prior draw).
        checkpoint_every: steps between checkpoints when ``fit(checkpoint_dir=...)``.

    ``fit(..., seed=s)`` makes the run reproducible: chain ``c`` starts, steps, shuffles
    and Gibbs-samples from generators seeded by ``(s, c)``, so chain ``c`` is the same
    whatever ``num_chains`` is and however chains are sharded over ``torchrun`` ranks.
    ``fit`` takes ``callbacks`` that receive a :class:`~bayesfn.sampling.SampleStepInfo`.
    """

    def __init__(
        self,
        lr: float = 0.01,
        mdecay: float = 0.01,
        num_burn_in: int = 2000,
        num_samples: int = 40,
        thin: int = 2000,
        num_discard: int = 10,
        num_chains: int = 4,
        batch_size: int | None = 32,
        adaptive: bool = True,
        grad_clip: float | None = 100.0,
        resample_prior_every: int = 1000,
        init: str = "default",
        checkpoint_every: int = 1000,
    ) -> None:
        _check_int("num_burn_in", num_burn_in, 0)
        _check_int("num_samples", num_samples, 1)
        _check_int("thin", thin, 1)
        _check_int("num_discard", num_discard, 0)
        if num_discard >= num_samples:
            raise ValueError(
                f"num_discard must be less than num_samples ({num_samples}); got {num_discard}"
            )
        _check_int("num_chains", num_chains, 1)
        if batch_size is not None:
            _check_int("batch_size", batch_size, 1)
        _check_int("resample_prior_every", resample_prior_every, 1)
        _check_int("checkpoint_every", checkpoint_every, 1)
        if init not in ("default", "prior"):
            raise ValueError(f"init must be 'default' or 'prior'; got {init!r}")
        self.lr = lr
        self.mdecay = mdecay
        self.num_burn_in = num_burn_in
        self.num_samples = num_samples
        self.thin = thin
        self.num_discard = num_discard
        self.num_chains = num_chains
        self.batch_size = batch_size
        self.adaptive = bool(adaptive)
        self.grad_clip = grad_clip
        self.resample_prior_every = resample_prior_every
        self.init = init
        self.checkpoint_every = checkpoint_every
        self.kernel()  # validates lr, mdecay and grad_clip now, not at fit

    def kernel(self) -> SGHMCKernel | AdaptiveSGHMCKernel:
        """The step kernel these settings describe."""
        cls = AdaptiveSGHMCKernel if self.adaptive else SGHMCKernel
        return cls(lr=self.lr, mdecay=self.mdecay, grad_clip=self.grad_clip)

    def log_density(
        self, target: BNNTarget
    ) -> Callable[[dict, tuple[torch.Tensor, ...], dict], torch.Tensor]:
        """``log_prob_fn(params, batch, prior_state) -> (C,)`` for
        :func:`~bayesfn.sampling.sample`: each chain's minibatch-scaled log joint on its
        own minibatch ``batch = (x (C, B, d), y (C, B, ...))``, given its latent prior
        state (hierarchical priors), vectorised over chains with ``torch.func.vmap``."""
        hierarchical = target.prior.is_hierarchical
        scale = target.num_data

        def log_lik(params, x, y):
            """One chain: ``(N/|B|) Σ_B log p(y|x, w)``, with ``x (B, d)``."""
            weights, extra = target.split(params)
            f = torch.func.functional_call(target.module, weights, (x,)).unsqueeze(0)
            extra = {k: v.unsqueeze(0) for k, v in extra.items()}
            return target.likelihood.log_prob(f, y, extra)[0].sum() * (scale / x.shape[0])

        per_chain = torch.func.vmap(log_lik)

        def log_prob_fn(params, batch, state):
            # the prior takes stacked (C, *shape) parameters as they are
            prior = target.log_prior(params, state if hierarchical else None)
            return per_chain(params, batch[0], batch[1]) + prior

        return log_prob_fn

    def run(
        self,
        target: BNNTarget,
        *,
        seed: int | None = None,
        progress_bar: bool = True,
        callbacks: Sequence[Callable[[SampleStepInfo], bool | None]] = (),
        checkpoint_dir: Any = None,
        **options: Any,
    ):
        self._check_options(options)
        seed = _shared_seed(seed, distributed_context())
        starts = [
            target.init_params(
                1,
                generator=torch.Generator().manual_seed(chain_seed(seed, c, _INIT_STREAM)),
                how=self.init,
            )
            for c in range(self.num_chains)
        ]
        init = {k: torch.cat([s[k] for s in starts]) for k in starts[0]}
        hook = hook_init = None
        if target.prior.is_hierarchical:
            states = [
                target.prior.init_state(
                    1, generator=torch.Generator().manual_seed(chain_seed(seed, c, _INIT_STREAM))
                )
                for c in range(self.num_chains)
            ]
            hook_init = {k: torch.cat([s[k] for s in states]).to(target.dtype) for k in states[0]}

            def hook(params, state, generators):
                """The prior's Gibbs step, chain by chain on each chain's generator."""
                weights, _ = target.split(params)
                new = [
                    target.prior.gibbs(
                        {k: v[i : i + 1] for k, v in weights.items()},
                        {k: v[i : i + 1] for k, v in state.items()},
                        generator=g,
                    )
                    for i, g in enumerate(generators)
                ]
                return {k: torch.cat([s[k] for s in new]).to(target.dtype) for k in new[0]}

        batch_size = self.batch_size
        if batch_size is not None and batch_size >= target.num_data:
            batch_size = None
        result = sample(
            self.log_density(target),
            init,
            self.kernel(),
            data=(target.x, target.y),
            batch_size=batch_size,
            num_burn_in=self.num_burn_in,
            num_draws=self.num_samples,
            thin=self.thin,
            seed=seed,
            hook=hook,
            hook_init=hook_init,
            hook_every=self.resample_prior_every,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=self.checkpoint_every,
            progress_bar=progress_bar,
            desc="SGHMC",
        )
        keep = slice(self.num_discard, None)
        state = {
            "draws": {k: v[:, keep].contiguous() for k, v in result.draws.items()},
            "prior_state": {k: v[:, keep].contiguous() for k, v in result.extra_draws.items()},
        }
        record = result.record
        record.diagnostics["num_discard"] = self.num_discard
        return state, record

    def draws(self, target, state, num_samples=None, *, generator=None):
        """The kept draws, ``(C, S, *shape)`` each (``num_samples`` is ignored)."""
        return dict(state["draws"])
