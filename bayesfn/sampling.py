"""The one MCMC loop: stochastic-gradient samplers stepping stacked parameters.

:func:`sample` runs ``C`` Markov chains at once. The state is a dict of tensors whose
leading dimension is the chain, ``{name: (C, *shape)}``; the caller's log density takes
that stacked dict (typically ``torch.func.functional_call`` under ``torch.func.vmap``),
so a network is never mutated to hold a sample. Each step evaluates the caller's
per-chain log density on a minibatch, takes the gradient of every chain with one
backward pass of their sum, and hands it to a step kernel (:class:`SGHMCKernel`,
:class:`AdaptiveSGHMCKernel`, or any :class:`StepKernel`) that updates all chains with
pure tensor operations.

Like :func:`bayesfn.training.optimize` the loop has a ``tqdm`` progress bar, callbacks,
seeding, checkpoints every ``N`` steps with exact resume after a kill, and
``torchrun`` support. Randomness is per chain: chain ``c`` owns generators seeded from
``(seed, c)`` for its injected noise, its minibatch order and its hook, so a chain's
trajectory does not depend on which other chains run beside it. Hence running the
chains one at a time, all in one process, or sharded over ``torchrun`` ranks (each
rank runs a contiguous share of the chains, with no gradient all-reduce; the draws are
gathered to every rank at the end) gives the same draws.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from bayesfn import io
from bayesfn.training import (
    FitResult,
    _check_data,
    _Dist,
    _shared_seed,
    distributed_context,
)

__all__ = [
    "AdaptiveSGHMCKernel",
    "SGHMCKernel",
    "SampleResult",
    "SampleStepInfo",
    "StepKernel",
    "chain_seed",
    "sample",
]

logger = logging.getLogger(__name__)

_CKPT_FORMAT = "bayesfn-sampler-checkpoint"
_FLAT = "params"  # the one entry of the dicts the loop hands a kernel
Params = dict[str, torch.Tensor]

# the independent random streams of one chain (see chain_seed)
_NOISE, _DATA, _HOOK = 0, 1, 2


def chain_seed(seed: int, chain: int, stream: int = 0) -> int:
    """The seed of one random stream of one chain: a 63-bit integer mixed from
    ``(seed, chain, stream)`` by NumPy's ``SeedSequence``, so that nearby seeds and
    chain indices give unrelated streams. Streams: 0 the kernel's noise, 1 the
    minibatch order, 2 the hook."""
    state = np.random.SeedSequence([seed % 2**64, chain, stream]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# ----------------------------------------------------------------------------- kernels


def _clip_per_chain(grads: Params, max_norm: float | None) -> tuple[Params, torch.Tensor | None]:
    """Scale each chain's gradient so that its norm over all parameters is at most
    ``max_norm`` (``torch.nn.utils.clip_grad_norm_``'s rule, applied per chain).

    Returns the clipped gradients and a ``(C,)`` bool tensor of the chains clipped."""
    if max_norm is None:
        return grads, None
    sq = sum(g.pow(2).reshape(g.shape[0], -1).sum(1) for g in grads.values())
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    out = {k: g * coef.reshape((-1,) + (1,) * (g.ndim - 1)) for k, g in grads.items()}
    return out, coef < 1.0


class StepKernel(abc.ABC):
    """A stochastic-gradient MCMC step rule on stacked chains.

    Subclasses implement :meth:`init_state` and :meth:`step` with pure tensor
    operations (no host synchronisation, no randomness of their own: the loop hands in
    the standard normal noise, drawn from each chain's generator).

    A kernel works on any ``{name: (C, *shape)}`` dict; :func:`sample` hands it one
    entry, ``{"params": (C, P)}``, all of a chain's parameters concatenated, which
    leaves elementwise rules and per-chain norms unchanged and costs a few tensor
    operations per step instead of a few per parameter."""

    @abc.abstractmethod
    def init_state(self, params: Params) -> dict[str, Any]:
        """The kernel's state for ``params`` (``{name: (C, *shape)}``): a nested dict of
        tensors, saved in checkpoints as it is."""

    @abc.abstractmethod
    def step(
        self,
        params: Params,
        grads: Params,
        state: dict[str, Any],
        noise: Params,
        *,
        burn_in: bool,
    ) -> tuple[Params, dict[str, Any]]:
        """One step of every chain.

        Args:
            params: ``{name: (C, *shape)}`` current positions.
            grads: ``{name: (C, *shape)}`` gradients of the potential
                ``U = -log p`` (an unbiased minibatch estimate), chain by chain.
            state: what :meth:`init_state` or the previous step returned.
            noise: ``{name: (C, *shape)}`` independent standard normal draws.
            burn_in: whether the loop is in its burn-in phase (adaptive kernels adapt
                only then).

        Returns:
            ``(params, state)`` after the step.
        """

    def describe(self) -> dict[str, Any]:
        """Settings recorded in a :class:`SampleResult` and checked on resume."""
        return {"kernel": type(self).__name__}


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite; got {value}")
    return float(value)


def _check_mdecay(mdecay: float) -> float:
    mdecay = _check_positive("mdecay", mdecay)
    if mdecay > 1:
        raise ValueError(f"mdecay (friction per step) must lie in (0, 1]; got {mdecay}")
    return mdecay


class SGHMCKernel(StepKernel):
    """Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014).

    The discretisation of their eq. (15), in its "SGD with momentum" form, with the
    gradient-noise estimate ``β̂ = 0``: for every chain and parameter,

    .. code-block:: text

        v ← v − η ∇U(w) − α v + sqrt(2 α η) ξ,    ξ ~ N(0, 1)
        w ← w + v

    with learning rate ``η = ε²`` (``ε`` the HMC step, unit mass) and momentum decay
    ``α = ε C`` (``C`` the friction). The position moves with the *new* momentum
    (symplectic Euler). The stationary distribution tends to ``exp(−U)`` as ``η → 0``;
    the minibatch gradient noise, of variance ``V`` per coordinate, adds ``η² V`` to the
    injected ``2 α η``, so keep ``η V ≪ α``.

    Args:
        lr: ``η > 0``.
        mdecay: ``α`` in ``(0, 1]``.
        grad_clip: clip each chain's gradient (its norm over all parameters) to this
            value before the step; ``None`` disables clipping.
    """

    def __init__(self, lr: float = 0.01, mdecay: float = 0.05, grad_clip: float | None = None):
        self.lr = _check_positive("lr", lr)
        self.mdecay = _check_mdecay(mdecay)
        self.grad_clip = None if grad_clip is None else _check_positive("grad_clip", grad_clip)

    def init_state(self, params: Params) -> dict[str, Any]:
        c = next(iter(params.values())).shape[0]
        return {
            "momentum": {k: torch.zeros_like(v) for k, v in params.items()},
            "num_clipped": torch.zeros(c, dtype=torch.int64, device=_device(params)),
        }

    def step(self, params, grads, state, noise, *, burn_in):
        grads, clipped = _clip_per_chain(grads, self.grad_clip)
        scale = math.sqrt(2.0 * self.mdecay * self.lr)
        keep = 1.0 - self.mdecay
        new_p, new_v = {}, {}
        for k, w in params.items():
            v = state["momentum"][k] * keep - self.lr * grads[k] + scale * noise[k]
            new_v[k], new_p[k] = v, w + v
        count = state["num_clipped"] if clipped is None else state["num_clipped"] + clipped
        return new_p, {"momentum": new_v, "num_clipped": count}

    def describe(self) -> dict[str, Any]:
        return {
            "kernel": "SGHMC",
            "lr": self.lr,
            "mdecay": self.mdecay,
            "grad_clip": self.grad_clip,
        }


class AdaptiveSGHMCKernel(StepKernel):
    """Scale-adapted SGHMC (Springenberg, Klein, Falkner & Hutter, NeurIPS 2016), the
    sampler of Tran et al.'s functional-prior BNNs.

    Per chain and parameter it keeps a window length ``τ``, a gradient average ``ḡ``
    and a squared-gradient average ``v̂`` (all started at one). During burn-in, with
    ``r = 1/(τ + 1)`` from the *old* ``τ``:

    .. code-block:: text

        τ ← τ − τ ḡ² / (v̂ + ε) + 1
        ḡ ← ḡ + r (g − ḡ)
        v̂ ← v̂ + r (g² − v̂)

    and at every step, with the preconditioner ``M⁻¹ = 1 / (sqrt(v̂) + ε)``:

    .. code-block:: text

        v ← v − η² M⁻¹ g − α v + sqrt(max(2 η² α M⁻¹ − η⁴, 1e-16)) ξ,   ξ ~ N(0, 1)
        w ← w + v

    The learning rate enters **squared**: ``lr=0.01`` is a step of ``1e-4`` on the
    gradient scaled by ``M⁻¹``. The ``− η⁴`` is the paper's correction for the
    minibatch gradient noise (``η⁴ M⁻¹ V̂ M⁻¹`` with ``V̂ ≈ M²``); the variance is
    clamped at ``1e-16``, never skipped, so a too large ``lr`` shows as a noise floor
    rather than a NaN.

    Args:
        lr: ``η > 0`` (official UCI setting: 0.01).
        mdecay: ``α`` in ``(0, 1]`` (official: 0.01).
        grad_clip: per-chain gradient-norm clip (official: 100); ``None`` disables it.
        epsilon: ``ε`` in the preconditioner (official: 1e-16).
    """

    def __init__(
        self,
        lr: float = 0.01,
        mdecay: float = 0.05,
        grad_clip: float | None = None,
        epsilon: float = 1e-16,
    ):
        self.lr = _check_positive("lr", lr)
        self.mdecay = _check_mdecay(mdecay)
        self.grad_clip = None if grad_clip is None else _check_positive("grad_clip", grad_clip)
        self.epsilon = _check_positive("epsilon", epsilon)

    def init_state(self, params: Params) -> dict[str, Any]:
        c = next(iter(params.values())).shape[0]
        return {
            "momentum": {k: torch.zeros_like(v) for k, v in params.items()},
            "tau": {k: torch.ones_like(v) for k, v in params.items()},
            "g": {k: torch.ones_like(v) for k, v in params.items()},
            "v_hat": {k: torch.ones_like(v) for k, v in params.items()},
            "num_clipped": torch.zeros(c, dtype=torch.int64, device=_device(params)),
        }

    def step(self, params, grads, state, noise, *, burn_in):
        grads, clipped = _clip_per_chain(grads, self.grad_clip)
        lr2, a, eps = self.lr**2, self.mdecay, self.epsilon
        tau, gbar, vhat = dict(state["tau"]), dict(state["g"]), dict(state["v_hat"])
        new_p, new_v = {}, {}
        for k, w in params.items():
            g = grads[k]
            if burn_in:
                r = 1.0 / (tau[k] + 1.0)
                tau[k] = tau[k] - tau[k] * gbar[k].pow(2) / (vhat[k] + eps) + 1.0
                gbar[k] = gbar[k] + r * (g - gbar[k])
                vhat[k] = vhat[k] + r * (g.pow(2) - vhat[k])
            minv = 1.0 / (vhat[k].sqrt() + eps)
            var = (2.0 * lr2 * a * minv - lr2 * lr2).clamp_min(1e-16)
            v = state["momentum"][k] * (1.0 - a) - lr2 * minv * g + var.sqrt() * noise[k]
            new_v[k], new_p[k] = v, w + v
        count = state["num_clipped"] if clipped is None else state["num_clipped"] + clipped
        return new_p, {
            "momentum": new_v,
            "tau": tau,
            "g": gbar,
            "v_hat": vhat,
            "num_clipped": count,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "kernel": "AdaptiveSGHMC",
            "lr": self.lr,
            "mdecay": self.mdecay,
            "grad_clip": self.grad_clip,
            "epsilon": self.epsilon,
        }


# ------------------------------------------------------------------------------ result


@dataclass
class SampleResult:
    """What :func:`sample` returns (on every rank under ``torchrun``).

    Attributes:
        draws: ``{name: (C, S, *shape)}`` kept draws of every chain.
        extra_draws: ``{name: (C, S, *shape)}`` the hook's state at each kept draw
            (empty without a hook).
        potentials: ``(C, T)`` the potential ``U = −log p`` estimate (the negated
            ``log_prob_fn`` output) of every chain at each of the ``T`` steps, burn-in
            included, evaluated before the step's update.
        record: a :class:`~bayesfn.training.FitResult`: ``losses`` are the chain-mean
            potentials per step, ``num_steps``, ``wall_time``, ``resumed_from``,
            ``stopped_early``; ``diagnostics`` hold the kernel settings, the chain and
            draw counts and ``clipped_fraction`` (per chain, the share of steps whose
            gradient was clipped).
    """

    draws: dict[str, torch.Tensor]
    extra_draws: dict[str, torch.Tensor] = field(default_factory=dict)
    potentials: torch.Tensor | None = None
    record: FitResult = field(default_factory=FitResult)

    @property
    def num_chains(self) -> int:
        return next(iter(self.draws.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.draws.values())).shape[1]


@dataclass(frozen=True)
class SampleStepInfo:
    """Handed to every callback after each step; a callback returning ``True`` stops.

    ``params`` and ``extra`` are this rank's chains ``{name: (C_local, *shape)}``,
    ``potential`` their ``(C_local,)`` potential (a tensor: reading it synchronises)."""

    step: int
    burn_in: bool
    params: Params
    extra: Params
    potential: torch.Tensor


# -------------------------------------------------------------------------------- loop


def _device(params: Params) -> torch.device:
    return next(iter(params.values())).device


def _check_init(init: Mapping[str, torch.Tensor], name: str = "init") -> int:
    """Validate a stacked state; return the number of chains."""
    if not isinstance(init, Mapping) or not init:
        raise TypeError(f"{name} must be a non-empty dict of (C, *shape) tensors")
    chains = None
    first = None
    for k, v in init.items():
        if not isinstance(k, str):
            raise TypeError(f"{name} keys must be strings; got {k!r}")
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name}[{k!r}] must be a torch.Tensor; got {type(v).__name__}")
        if v.ndim < 1 or v.shape[0] < 1:
            raise ValueError(
                f"{name}[{k!r}] must have a leading chain dimension, shape (C, *shape) "
                f"with C >= 1; got {tuple(v.shape)}"
            )
        if chains is None:
            chains, first = v.shape[0], k
        elif v.shape[0] != chains:
            raise ValueError(
                f"{name}[{k!r}] has {v.shape[0]} chains (leading dimension); "
                f"{name}[{first!r}] has {chains}"
            )
        if name == "init":
            if not v.is_floating_point():
                raise TypeError(f"init[{k!r}] must be floating point; got {v.dtype}")
            ref = init[first]
            if v.dtype != ref.dtype or v.device != ref.device:
                raise ValueError(
                    f"init[{k!r}] is {v.dtype} on {v.device}; init[{first!r}] is "
                    f"{ref.dtype} on {ref.device}: all parameters must share both"
                )
            if not torch.isfinite(v).all():
                raise ValueError(f"init[{k!r}] contains NaN or inf")
    return chains


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}")
    return value


def _chain_share(num_chains: int, d: _Dist) -> tuple[int, int]:
    """The contiguous block of chains ``[lo, hi)`` this rank runs."""
    return d.rank * num_chains // d.world_size, (d.rank + 1) * num_chains // d.world_size


def _gather_chains(t: torch.Tensor, num_chains: int, d: _Dist) -> torch.Tensor:
    """All ranks' ``(C_r, ...)`` blocks, concatenated in rank order: ``(C, ...)``."""
    shares = [_chain_share(num_chains, _Dist(r, d.world_size)) for r in range(d.world_size)]
    width = max(hi - lo for lo, hi in shares)
    padded = torch.zeros((width,) + t.shape[1:], dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    out = [torch.empty_like(padded) for _ in range(d.world_size)]
    dist.all_gather(out, padded)
    return torch.cat([o[: hi - lo] for o, (lo, hi) in zip(out, shares, strict=True)])


class _ChainBatches:
    """Each chain's own shuffled minibatches, epoch after epoch, by the rule of
    :class:`bayesfn.training._BatchStream` (a ragged tail is dropped): chain ``c``'s
    rows are exactly those of a ``_BatchStream`` on chain ``c``'s generator. All chains
    reach the end of an epoch at the same step, so a step slices one ``(C, B)`` block
    of the ``(C, n)`` permutations and only an epoch's start loops over the chains."""

    def __init__(self, n: int, batch_size: int, generators: list[torch.Generator]):
        self.n, self.batch_size, self.generators = n, batch_size, generators
        self.perm = self._shuffle()
        self.pos = 0

    def _shuffle(self) -> torch.Tensor:
        return torch.stack([torch.randperm(self.n, generator=g) for g in self.generators])

    def next(self) -> torch.Tensor:
        """``(C, B)`` row indices."""
        if self.pos + self.batch_size > self.n:
            self.perm = self._shuffle()
            self.pos = 0
        idx = self.perm[:, self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state(self) -> dict[str, Any]:
        return {
            "perm": self.perm,
            "pos": self.pos,
            "generators": [g.get_state() for g in self.generators],
        }

    def load(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], state["pos"]
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s)


class _Layout:
    """The stacked parameter dict as one ``(C, P)`` tensor and back. The loop steps the
    flat tensor: an elementwise step rule and a per-chain norm are the same on it, and
    one tensor costs a few operations per step instead of a few per parameter."""

    def __init__(self, params: Mapping[str, torch.Tensor]):
        self.shapes = {k: tuple(v.shape[1:]) for k, v in params.items()}
        self.sizes = {k: math.prod(s) for k, s in self.shapes.items()}
        self.size = sum(self.sizes.values())

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{name: (C, *shape)}`` -> ``(C, P)``."""
        return torch.cat([params[k].reshape(params[k].shape[0], -1) for k in self.shapes], 1)

    def views(self, flat: torch.Tensor) -> Params:
        """``(..., P)`` -> ``{name: (..., *shape)}``, views sharing ``flat``'s memory."""
        out, offset = {}, 0
        lead = flat.shape[:-1]
        for k, shape in self.shapes.items():
            out[k] = flat[..., offset : offset + self.sizes[k]].view(lead + shape)
            offset += self.sizes[k]
        return out


class _Noise:
    """Standard normal noise for every chain from its own generator, written into one
    preallocated ``(C, P)`` buffer."""

    def __init__(self, like: torch.Tensor, generators: list[torch.Generator]):
        self.generators = generators
        self.buf = torch.empty_like(like)

    def draw(self) -> torch.Tensor:
        for row, g in zip(self.buf, self.generators, strict=True):
            torch.randn(row.shape, generator=g, dtype=row.dtype, device=row.device, out=row)
        return self.buf


def sample(
    log_prob_fn: Callable[[Params, tuple[torch.Tensor, ...], Params], torch.Tensor],
    init: Mapping[str, torch.Tensor],
    kernel: StepKernel,
    *,
    num_draws: int,
    num_burn_in: int = 0,
    thin: int = 1,
    data: Sequence[torch.Tensor] | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    first_chain: int = 0,
    hook: Callable[[Params, Params, list[torch.Generator]], Params] | None = None,
    hook_init: Mapping[str, torch.Tensor] | None = None,
    hook_every: int = 1000,
    callbacks: Sequence[Callable[[SampleStepInfo], bool | None]] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    check_every: int = 100,
    progress_bar: bool = True,
    desc: str = "sample",
) -> SampleResult:
    """Run ``C`` stochastic-gradient MCMC chains, vectorised, and keep thinned draws.

    The run takes ``num_burn_in + num_draws * thin`` steps and keeps the parameters
    after every ``thin``-th step past burn-in.

    Args:
        log_prob_fn: ``log_prob_fn(params, batch, extra) -> (C,)``: for every chain, an
            unbiased estimate of its log posterior density (up to a constant) from the
            minibatch, e.g. ``N/|B| Σ_B log p(y|x, w) + log p(w)``; the caller does the
            ``N/|B|`` scaling. ``params`` is ``{name: (C, *shape)}`` (differentiable);
            ``batch`` is a tuple of ``(C, B, ...)`` tensors, each chain's own minibatch
            (``()`` without ``data``); ``extra`` is the hook's state
            ``{name: (C, *shape)}`` (``{}`` without a hook). Chain ``c``'s value must
            depend on chain ``c``'s inputs only.
        init: ``{name: (C, *shape)}`` starting points of all ``C`` chains (floating
            point, one dtype and device). Under ``torchrun`` every rank passes the same
            ``init`` and runs its contiguous share of the chains.
        kernel: the step rule, e.g. :class:`AdaptiveSGHMCKernel`.
        num_draws: draws kept per chain, ``S >= 1``.
        num_burn_in: steps before the first kept draw (adaptive kernels adapt only then).
        thin: keep every ``thin``-th step after burn-in.
        data: tensors sharing their first dimension ``n``; each chain draws its own
            minibatches from them.
        batch_size: minibatch size ``B`` (``None``: the full data every step). Chain
            ``c`` shuffles with its own generator, epoch after epoch, dropping a ragged
            tail (as :func:`~bayesfn.training.optimize` does).
        seed: chain ``c`` draws its noise, minibatch order and hook randomness from
            generators seeded by :func:`chain_seed` ``(seed, c, stream)``; the global
            torch RNG is seeded with ``seed`` as well. ``None`` picks a random seed.
        first_chain: the index of ``init``'s first chain in that numbering: running
            ``init[c:c+1]`` with ``first_chain=c`` repeats chain ``c`` of a run of all
            chains (so chains can also be run one by one, or added to a run later).
        hook: ``hook(params, extra, generators) -> extra``, called under ``no_grad``
            after every ``hook_every``-th step, burn-in included (a Gibbs step on
            per-chain latent variables, such as a hierarchical prior's variances).
            ``generators[i]`` is the ``i``-th local chain's own generator: draw each
            chain's randomness from its own generator so that sharding stays exact.
        hook_init: ``{name: (C, *shape)}`` the hook's initial state (needed with
            ``hook``); kept with every draw and in checkpoints.
        hook_every: steps between hook calls.
        callbacks: called with a :class:`SampleStepInfo` after each step; ``True`` stops
            (the draws kept so far are returned).
        checkpoint_dir: write a checkpoint here every ``checkpoint_every`` steps and at
            the end (``rank{r}/`` per rank under ``torchrun``, else ``latest/``); if one
            exists, resume from it exactly (parameters, kernel and hook state, every
            generator, minibatch order, kept draws).
        check_every: every this many steps the loop reads the potentials back (the
            only host synchronisation), stops with ``FloatingPointError`` if a chain's
            went non-finite, and updates the progress bar.
        progress_bar: show a ``tqdm`` bar (rank 0 only).
        desc: the bar's label.

    Returns:
        A :class:`SampleResult` with all ``C`` chains (gathered to every rank).
    """
    from tqdm.auto import tqdm

    num_draws = _check_count("num_draws", num_draws, 1)
    num_burn_in = _check_count("num_burn_in", num_burn_in, 0)
    thin = _check_count("thin", thin, 1)
    hook_every = _check_count("hook_every", hook_every, 1)
    checkpoint_every = _check_count("checkpoint_every", checkpoint_every, 1)
    check_every = _check_count("check_every", check_every, 1)
    first_chain = _check_count("first_chain", first_chain, 0)
    if not isinstance(kernel, StepKernel):
        raise TypeError(f"kernel must be a StepKernel; got {type(kernel).__name__}")
    if not callable(log_prob_fn):
        raise TypeError(f"log_prob_fn must be callable; got {type(log_prob_fn).__name__}")
    num_chains = _check_init(init)
    if hook is not None and hook_init is None:
        raise ValueError("hook= needs hook_init=, the hook's initial {name: (C, *shape)} state")
    if hook_init is not None:
        if hook is None:
            raise ValueError("hook_init= is given without hook=")
        extra_chains = _check_init(hook_init, "hook_init")
        if extra_chains != num_chains:
            raise ValueError(
                f"hook_init has {extra_chains} chains (leading dimension); init has {num_chains}"
            )
    tensors, n = _check_data(data, batch_size)
    d = distributed_context()
    if num_chains < d.world_size:
        raise ValueError(
            f"init holds {num_chains} chains, fewer than the {d.world_size} torchrun ranks"
        )
    seed = _shared_seed(seed, d)
    torch.manual_seed(seed)

    lo, hi = _chain_share(num_chains, d)
    local = hi - lo
    device = _device(dict(init))
    layout = _Layout(init)
    flat = layout.flatten({k: v[lo:hi].detach() for k, v in init.items()}).clone()  # (C_l, P)
    extra: Params = {k: v[lo:hi].detach().clone() for k, v in (hook_init or {}).items()}
    noise_gens = [
        torch.Generator(device).manual_seed(chain_seed(seed, first_chain + c, _NOISE))
        for c in range(lo, hi)
    ]
    hook_gens = [
        torch.Generator(device).manual_seed(chain_seed(seed, first_chain + c, _HOOK))
        for c in range(lo, hi)
    ]
    batches = None
    if tensors and batch_size is not None:
        data_gens = [
            torch.Generator().manual_seed(chain_seed(seed, first_chain + c, _DATA))
            for c in range(lo, hi)
        ]
        batches = _ChainBatches(n, batch_size, data_gens)
    whole = None
    if tensors and batch_size is None:  # the full data every step: one view per chain
        whole = tuple(t.to(device).expand((local,) + t.shape) for t in tensors)

    kstate = kernel.init_state({_FLAT: flat})
    noise = _Noise(flat, noise_gens)
    total = num_burn_in + num_draws * thin
    draws = flat.new_zeros((local, num_draws, layout.size))
    extra_draws = {k: v.new_zeros((local, num_draws) + v.shape[1:]) for k, v in extra.items()}
    potentials = torch.full((total, local), math.nan, dtype=noise.buf.dtype, device=device)
    record = FitResult()
    fingerprint = {
        "num_chains": num_chains,
        "chains": [lo, hi],
        "num_burn_in": num_burn_in,
        "num_draws": num_draws,
        "thin": thin,
        "seed": seed,
        "first_chain": first_chain,
        "batch_size": batch_size,
        "n": n,
        "params": {k: list(s) for k, s in layout.shapes.items()},
        "extra": {k: list(v.shape) for k, v in extra.items()},
        "kernel": kernel.describe(),
    }

    ckpt_path = None
    if checkpoint_dir is not None:
        ckpt_path = Path(checkpoint_dir) / (f"rank{d.rank}" if d.active else "latest")
    step = 0

    def save_checkpoint() -> None:
        state = {
            "step": step,
            "params": flat,
            "kernel": kstate,
            "extra": extra,
            "noise_generators": [g.get_state() for g in noise_gens],
            "hook_generators": [g.get_state() for g in hook_gens],
            "batches": batches.state() if batches is not None else None,
            "torch_rng": torch.get_rng_state(),
            "draws": draws,
            "extra_draws": extra_draws,
            "potentials": potentials,
            "record": {k: v for k, v in record.to_dict().items() if k != "wall_time"},
        }
        io.write_state(ckpt_path, {"format": _CKPT_FORMAT, "run": fingerprint}, state)

    if ckpt_path is not None and (ckpt_path / io.CONFIG_FILE).exists():
        header, state = io.read_state(ckpt_path)
        if header.get("format") != _CKPT_FORMAT:
            raise ValueError(f"{ckpt_path} is not a bayesfn sampler checkpoint")
        if header.get("run") != fingerprint:
            raise ValueError(
                f"the checkpoint in {ckpt_path} is of another run ({header.get('run')}); "
                f"this run is {fingerprint}: use another checkpoint_dir= or delete it"
            )
        to = {"device": device}
        flat = state["params"].to(**to)
        kstate = _to_device(state["kernel"], device)
        extra = {k: v.to(**to) for k, v in state["extra"].items()}
        for g, s in zip(noise_gens, state["noise_generators"], strict=True):
            g.set_state(s)
        for g, s in zip(hook_gens, state["hook_generators"], strict=True):
            g.set_state(s)
        if batches is not None:
            batches.load(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        draws = state["draws"].to(**to)
        extra_draws = {k: v.to(**to) for k, v in state["extra_draws"].items()}
        potentials = state["potentials"].to(**to)
        for k, v in state["record"].items():
            setattr(record, k, v)
        step = state["step"]
        record.resumed_from = step
        logger.info("resumed from %s at step %d", ckpt_path, step)

    start = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=step,
        desc=desc,
        disable=not progress_bar or d.rank != 0,
        dynamic_ncols=True,
        leave=False,
    )
    stop = record.stopped_early
    checked = step  # potentials up to here were read and found finite
    try:
        while step < total and not stop:
            if whole is not None:
                batch = whole
            elif batches is not None:
                idx = batches.next()  # (C_local, B)
                batch = tuple(t[idx].to(device) for t in tensors)
            else:
                batch = ()
            flat.requires_grad_(True)
            log_p = log_prob_fn(layout.views(flat), batch, extra)
            if not isinstance(log_p, torch.Tensor) or log_p.shape != (local,):
                got = tuple(log_p.shape) if isinstance(log_p, torch.Tensor) else type(log_p)
                raise ValueError(
                    f"log_prob_fn must return one value per chain, shape ({local},); got {got}"
                )
            (grad,) = torch.autograd.grad(-log_p.sum(), flat)
            burn_in = step < num_burn_in
            with torch.no_grad():
                new, kstate = kernel.step(
                    {_FLAT: flat.detach()},
                    {_FLAT: grad},
                    kstate,
                    {_FLAT: noise.draw()},
                    burn_in=burn_in,
                )
                flat = new[_FLAT]
                potentials[step] = -log_p.detach()
                step += 1
                if hook is not None and step % hook_every == 0:
                    extra = dict(hook(layout.views(flat), extra, hook_gens))
                kept = step - num_burn_in
                if kept > 0 and kept % thin == 0:
                    j = kept // thin - 1
                    draws[:, j] = flat
                    for k, v in extra.items():
                        extra_draws[k][:, j] = v
            if callbacks:
                info = SampleStepInfo(
                    step, burn_in, layout.views(flat), extra, potentials[step - 1]
                )
                for cb in callbacks:
                    if cb(info):
                        stop = record.stopped_early = True
            bar.update(1)
            if step % check_every == 0 or step == total or stop:
                _check_finite(potentials[checked:step], checked, first_chain + lo, desc)
                checked = step
                bar.set_postfix(U=f"{float(potentials[step - 1].mean()):.4g}")
            if ckpt_path is not None and (step % checkpoint_every == 0 or step == total or stop):
                save_checkpoint()
    finally:
        bar.close()
    record.wall_time += time.perf_counter() - start

    num_kept = max(0, step - num_burn_in) // thin
    kstate_clipped = kstate.get("num_clipped") if isinstance(kstate, dict) else None
    potentials = potentials[:step].T.contiguous()  # (C_local, T)
    if d.active:
        draws = _gather_chains(draws, num_chains, d)
        extra_draws = {k: _gather_chains(v, num_chains, d) for k, v in extra_draws.items()}
        potentials = _gather_chains(potentials, num_chains, d)
        if kstate_clipped is not None:
            kstate_clipped = _gather_chains(kstate_clipped, num_chains, d)
    record.num_steps = step
    record.losses = potentials.mean(0).tolist()
    record.diagnostics.update(
        {
            **kernel.describe(),
            "num_chains": num_chains,
            "num_burn_in": num_burn_in,
            "num_draws": num_kept,
            "thin": thin,
            "seed": seed,
        }
    )
    if kstate_clipped is not None:
        record.diagnostics["clipped_fraction"] = (kstate_clipped.double() / max(step, 1)).tolist()
    return SampleResult(
        draws={k: v.clone() for k, v in layout.views(draws[:, :num_kept]).items()},
        extra_draws={k: v[:, :num_kept] for k, v in extra_draws.items()},
        potentials=potentials,
        record=record,
    )


def _check_finite(block: torch.Tensor, first_step: int, lo: int, desc: str) -> None:
    """Raise if any chain's potential in ``block`` (``(steps, C_local)``) is not finite."""
    bad = ~torch.isfinite(block)
    if bool(bad.any()):
        step, chain = (int(i) for i in bad.nonzero()[0])
        raise FloatingPointError(
            f"{desc}: the potential of chain {lo + chain} became "
            f"{float(block[step, chain])} at step {first_step + step + 1}; lower lr= "
            "(an adaptive kernel's step is lr squared) or check the log density"
        )


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj
