"""Neural-process baselines for the 1-D table of the NDP reproduction
(:mod:`bayesfn.reproduce.ndp`): a ConvCNP (Gordon et al., ICLR 2020) and an attentive
neural process, ANP (Kim et al., ICLR 2019), written here in PyTorch, trained on fresh
batches of the same sampler as the NDP (``ndp._sampler``) for the same number of Adam
steps and scored on the same saved task sets.

Shapes: ``b`` tasks, ``c`` (padded) context points, ``t`` (padded) targets, 1-D inputs
and outputs: ``x_context (b, c, 1)``, ``y_context (b, c, 1)``, ``context_mask (b, c)``
bool, ``x_target (b, t, 1)``, ``y_target (b, t, 1)``, ``target_mask (b, t)`` bool. Every
task has at least one real context point. Padded points never change the result.

* :class:`ConvCNP`: a SetConv encoder with a density channel onto a uniform grid of
  ``points_per_unit`` points per unit of x, whose origin is each task's smallest input
  (context or target) minus ``margin``, so that shifting all inputs of a task shifts the
  grid with them (exact translation equivariance); a 1-D U-Net (stride-2 convolutions
  down, transposed convolutions up, skip connections); a SetConv decoder to the targets
  and a pointwise head to a Gaussian mean and ``min_std + softplus`` std. Trained by the
  Gaussian log-likelihood of the targets (factorised, as its predictive is).
* :class:`AttentiveNP`: a deterministic path (MLP of (x, y), self-attention blocks over
  the context, multi-head cross-attention from the embedded target x to the embedded
  context x), a latent path (MLP, self-attention, masked mean pool, diagonal Gaussian
  ``z``) and an MLP decoder of ``(x_t, r_t, z)`` to a Gaussian mean and std. Trained by
  the ELBO ``E_q(z|C∪T)[log p(y_T | z, C)] − KL(q(z|C∪T) || p(z|C))`` (one
  reparameterised draw), per target point. Its test log-likelihood is the importance
  estimate ``log (1/K) Σ_k p(y_T|z_k, C) p(z_k|C) / q(z_k|C, T)``, ``z_k ~ q(z|C, T)``
  (:func:`importance_log_marginal`): an estimate of ``log p(y_T | C)`` whose expectation
  lies below it (Jensen), with the gap shrinking as ``K`` grows.

Training tasks (:func:`split_context_target`): each function of a sampler batch (50-59
points) is split at random, per function, into a context of 1-9 points (uniform, the
evaluation tasks' range) and targets made of all its other points (41-58, disjoint from
the context, as in the evaluation tasks).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

MODELS = ("convcnp", "anp")

PAPER = (
    "Neural-process baselines (ConvCNP, Gordon et al. 2020; ANP, Kim et al. 2019) for the "
    "NDP 1-D table (Dutordoir et al., ICML 2023)"
)

#: the Geometric-NDP 1-D table's baseline rows (taken there from the Gaussian-NP paper)
PUBLISHED: dict[str, dict[str, Any]] = {
    "convcnp": {
        "source": "Geometric-NDP 1-D table (cambridge-mlg/neural_diffusion_processes, "
        "experiments/regression1d/table.py), ConvCNP, interpolation",
        "values": {
            "se": -0.80,
            "matern52": -0.95,
            "weakly_periodic": -1.20,
            "sawtooth": 0.55,
            "mixture": -0.93,
        },
    },
    "anp": {
        "source": "Geometric-NDP 1-D table, ANP, interpolation",
        "values": {
            "se": -0.61,
            "matern52": -0.75,
            "weakly_periodic": -1.19,
            "sawtooth": 0.34,
            "mixture": -0.69,
        },
    },
    "convcnp_generalisation": {
        "source": "Geometric-NDP 1-D table, ConvCNP, generalisation (inputs in U(2, 6))",
        "values": {
            "se": -0.81,
            "matern52": -0.95,
            "weakly_periodic": -1.20,
            "sawtooth": 0.53,
            "mixture": -0.96,
        },
    },
    "anp_generalisation": {
        "source": "Geometric-NDP 1-D table, ANP, generalisation (inputs in U(2, 6))",
        "values": {
            "se": -1.42,
            "matern52": -1.34,
            "weakly_periodic": -1.33,
            "sawtooth": -0.17,
            "mixture": -1.24,
        },
    },
}

#: the training recipe shared by both models (the NDP rows: 6,000 steps, batch 32)
TRAINING = {
    "steps": 6000,
    "batch_size": 32,
    "num_points": (50, 59),
    "max_context": 9,
    "lr": 1e-3,
    "lr_end": 1e-5,
    "grad_clip": 1.0,
}


# ---------------------------------------------------------------------------- checks


def _check_tasks(x_context, y_context, context_mask, x_target, target_mask=None) -> None:
    for name, v, nd in (
        ("x_context", x_context, 3),
        ("y_context", y_context, 3),
        ("x_target", x_target, 3),
    ):
        if not isinstance(v, torch.Tensor) or v.ndim != nd or v.shape[-1] != 1:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name} must be a (b, n, 1) tensor; got {got}")
    b, c = x_context.shape[:2]
    if y_context.shape[:2] != (b, c):
        raise ValueError(
            f"y_context must have shape {(b, c, 1)} like x_context; got {tuple(y_context.shape)}"
        )
    if x_target.shape[0] != b:
        raise ValueError(f"x_target must hold {b} tasks like x_context; got {x_target.shape[0]}")
    for name, m, shape in (
        ("context_mask", context_mask, (b, c)),
        ("target_mask", target_mask, tuple(x_target.shape[:2])),
    ):
        if m is None:
            continue
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or tuple(m.shape) != shape:
            got = (m.dtype, tuple(m.shape)) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ValueError(f"{name} must be a bool tensor of shape {shape}; got {got}")
    if not bool(context_mask.any(1).all()):
        raise ValueError("every task needs at least one real context point (context_mask)")


# ---------------------------------------------------------------------- training data


def split_context_target(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_context: int = 9,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """Split each function of a padded batch at random into a context of ``1 ..
    max_context`` points (uniform per function) and targets made of its other points.

    Args:
        x, y: ``(b, n, 1)``; mask: ``(b, n)`` bool (every function needs more than
            ``max_context`` real points).

    Returns:
        ``(x_c (b, max_context, 1), y_c, context_mask (b, max_context), x_t (b, n, 1),
        y_t, target_mask (b, n))``.
    """
    b, n = mask.shape
    counts = mask.sum(1)
    if int(counts.min()) <= max_context:
        raise ValueError(
            f"every function needs more than max_context={max_context} points; got "
            f"{int(counts.min())}"
        )
    keys = torch.rand(b, n, generator=generator)
    keys = keys.masked_fill(~mask, 2.0)  # padding sorts last
    order = keys.argsort(1)
    xs = x.gather(1, order[..., None].expand_as(x))
    ys = y.gather(1, order[..., None].expand_as(y))
    num_context = torch.randint(1, max_context + 1, (b, 1), generator=generator)
    rank = torch.arange(n)[None]
    context_mask = rank[:, :max_context] < num_context
    target_mask = (rank >= num_context) & (rank < counts[:, None])
    return (
        xs[:, :max_context],
        ys[:, :max_context],
        context_mask,
        xs,
        ys,
        target_mask,
    )


def _gaussian_log_prob(y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((y - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- ConvCNP


class _UNet(nn.Module):
    """1-D U-Net on ``(b, channels, g)`` with ``g`` a multiple of ``2**levels``:
    ``levels`` stride-2 convolutions down, transposed convolutions up, each level's
    input concatenated to the upsampled path; same shape out."""

    def __init__(self, channels: int, levels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.down = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, stride=2, padding=pad) for _ in range(levels)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(
                channels if i == levels - 1 else 2 * channels,
                channels,
                kernel_size,
                stride=2,
                padding=pad,
                output_padding=1,
            )
            for i in range(levels)
        )
        self.out = nn.Conv1d(2 * channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        skips = [h]
        for conv in self.down:
            h = F.relu(conv(h))
            skips.append(h)
        u = skips.pop()
        for i in reversed(range(len(self.up))):
            u = F.relu(self.up[i](u))
            u = torch.cat([u, skips.pop()], 1)
        return self.out(u)


class ConvCNP(nn.Module):
    """Convolutional conditional neural process for 1-D inputs and outputs.

    Args:
        points_per_unit: grid density (points per unit of x).
        channels: channels of the U-Net.
        levels: stride-2 levels of the U-Net; the receptive field is about
            ``2 (kernel_size - 1) (2**levels - 1) / points_per_unit`` units of x (5 levels,
            kernel 5, 64 per unit: 3.9 units).
        kernel_size: of every convolution.
        margin: grid padding beyond the smallest and largest input of each task.
        min_std: floor of the predictive standard deviation.

    Call: ``model(x_context, y_context, context_mask, x_target, target_mask=None) ->
    (mean (b, t), std (b, t))``, a factorised Gaussian over the targets (``target_mask``
    only keeps padded targets out of the grid's extent).
    """

    def __init__(
        self,
        *,
        points_per_unit: int = 64,
        channels: int = 32,
        levels: int = 5,
        kernel_size: int = 5,
        margin: float = 0.5,
        min_std: float = 0.01,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd; got {kernel_size}")
        self.points_per_unit = points_per_unit
        self.levels = levels
        self.margin = margin
        self.min_std = min_std
        init = math.log(2.0 / points_per_unit)
        self.log_lengthscale_in = nn.Parameter(torch.tensor(init))
        self.log_lengthscale_out = nn.Parameter(torch.tensor(init))
        self.embed = nn.Conv1d(2, channels, 1)
        self.unet = _UNet(channels, levels, kernel_size)
        self.head = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, 2))

    def grid(self, x_context, context_mask, x_target, target_mask=None) -> torch.Tensor:
        """``(b, g)`` grid inputs: per task, from its smallest real input minus ``margin``
        in steps of ``1 / points_per_unit``; ``g`` covers the widest task of the batch and
        is a multiple of ``2**levels``."""
        if target_mask is None:
            target_mask = torch.ones(x_target.shape[:2], dtype=torch.bool, device=x_target.device)
        x = torch.cat([x_context[..., 0], x_target[..., 0]], 1)
        m = torch.cat([context_mask, target_mask], 1)
        lo = x.masked_fill(~m, math.inf).amin(1)
        hi = x.masked_fill(~m, -math.inf).amax(1)
        span = float((hi - lo).max()) + 2 * self.margin
        block = 2**self.levels
        g = math.ceil((math.ceil(span * self.points_per_unit) + 1) / block) * block
        steps = torch.arange(g, dtype=x.dtype, device=x.device) / self.points_per_unit
        return (lo - self.margin)[:, None] + steps[None]

    def forward(self, x_context, y_context, context_mask, x_target, target_mask=None):
        _check_tasks(x_context, y_context, context_mask, x_target, target_mask)
        grid = self.grid(x_context, context_mask, x_target, target_mask)  # (b, g)
        ls_in = self.log_lengthscale_in.exp()
        d = (grid[:, :, None] - x_context[:, None, :, 0]) / ls_in  # (b, g, c)
        w = torch.exp(-0.5 * d**2) * context_mask[:, None, :].to(d.dtype)
        density = w.sum(-1)  # (b, g)
        data = (w * y_context[:, None, :, 0]).sum(-1) / (density + 1e-8)
        h = self.unet(self.embed(torch.stack([density, data], 1)))  # (b, channels, g)
        ls_out = self.log_lengthscale_out.exp()
        d = (x_target[:, :, None, 0] - grid[:, None, :]) / ls_out  # (b, t, g)
        f = torch.einsum("btg,bcg->btc", torch.exp(-0.5 * d**2), h)
        out = self.head(f)
        return out[..., 0], self.min_std + F.softplus(out[..., 1])

    def log_likelihood(
        self, x_context, y_context, context_mask, x_target, y_target, target_mask
    ) -> torch.Tensor:
        """``(b,)`` sum over the real targets of ``log N(y_t; mean_t, std_t²)``."""
        mean, std = self(x_context, y_context, context_mask, x_target, target_mask)
        lp = _gaussian_log_prob(y_target[..., 0], mean, std)
        return (lp * target_mask.to(lp.dtype)).sum(1)


# --------------------------------------------------------------------------------- ANP


class _Attention(nn.Module):
    """Multi-head dot-product attention; ``key_mask (b, n)`` bool hides padded keys
    (every query needs at least one real key). ``q (b, m, d)``, ``k, v (b, n, d)`` ->
    ``(b, m, d)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden ({dim}) must be a multiple of num_heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, q, k, v, key_mask):
        b, m, d = q.shape
        n, h = k.shape[1], self.heads

        def split(t, length):
            return t.reshape(b, length, h, d // h).transpose(1, 2)  # (b, h, len, d/h)

        qh, kh, vh = split(self.q(q), m), split(self.k(k), n), split(self.v(v), n)
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(d // h)  # (b, h, m, n)
        scores = scores.masked_fill(~key_mask[:, None, None, :], -math.inf)
        out = scores.softmax(-1) @ vh  # (b, h, m, d/h)
        return self.o(out.transpose(1, 2).reshape(b, m, d))


class _SelfAttentionBlock(nn.Module):
    """Post-norm transformer block over a set: attention, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = _Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, h, mask):
        h = self.norm1(h + self.attn(h, h, h, mask))
        return self.norm2(h + self.ff(h))


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def importance_log_marginal(
    log_likelihood: Callable[[torch.Tensor], torch.Tensor],
    prior: torch.distributions.Normal,
    proposal: torch.distributions.Normal,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-sampling estimate of ``log ∫ p(y | z) p(z) dz``:
    ``log (1/K) Σ_k p(y | z_k) p(z_k) / q(z_k)``, ``z_k ~ q`` (``K = num_samples``).

    Args:
        log_likelihood: maps ``z (K, b, dz)`` to ``log p(y | z) (K, b)``.
        prior, proposal: diagonal Normals with ``loc, scale (b, dz)``.

    Returns:
        ``(b,)``. Unbiased for the marginal itself, so its expectation lies below the log
        marginal (Jensen); exact for any ``K`` when ``q`` is the exact posterior.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    loc, scale = proposal.loc, proposal.scale
    eps = torch.randn(
        (num_samples, *loc.shape), generator=generator, dtype=loc.dtype, device=loc.device
    )
    z = loc + scale * eps
    log_w = log_likelihood(z) + prior.log_prob(z).sum(-1) - proposal.log_prob(z).sum(-1)
    return torch.logsumexp(log_w, 0) - math.log(num_samples)


class AttentiveNP(nn.Module):
    """Attentive neural process for 1-D inputs and outputs.

    Args:
        hidden: width of every embedding and MLP.
        latent_dim: dimension of ``z``.
        num_heads: attention heads.
        num_blocks: self-attention blocks in each path.
        min_std: floor of the predictive standard deviation.

    Methods take the shapes of the module docstring; ``z`` has shape ``(k, b, latent_dim)``
    and predictions ``(k, b, t)``.
    """

    def __init__(
        self,
        *,
        hidden: int = 64,
        latent_dim: int = 32,
        num_heads: int = 4,
        num_blocks: int = 2,
        min_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.min_std = min_std
        self.det_embed = _mlp([2, hidden, hidden])
        self.det_blocks = nn.ModuleList(
            _SelfAttentionBlock(hidden, num_heads) for _ in range(num_blocks)
        )
        self.x_embed = _mlp([1, hidden, hidden])
        self.cross = _Attention(hidden, num_heads)
        self.lat_embed = _mlp([2, hidden, hidden])
        self.lat_blocks = nn.ModuleList(
            _SelfAttentionBlock(hidden, num_heads) for _ in range(num_blocks)
        )
        self.lat_head = _mlp([hidden, hidden, 2 * latent_dim])
        self.decoder = _mlp([1 + hidden + latent_dim, hidden, hidden, 2])

    def latent(self, x, y, mask) -> torch.distributions.Normal:
        """The diagonal Gaussian over ``z`` given the set ``(x, y)`` (``(b, n, 1)``,
        ``mask (b, n)``): ``loc, scale (b, latent_dim)``, scale in (0.1, 1)."""
        h = self.lat_embed(torch.cat([x, y], -1))
        for block in self.lat_blocks:
            h = block(h, mask)
        w = mask.to(h.dtype)[..., None]
        pooled = (h * w).sum(1) / w.sum(1)
        loc, raw = self.lat_head(pooled).chunk(2, -1)
        return torch.distributions.Normal(loc, 0.1 + 0.9 * torch.sigmoid(raw))

    def deterministic(self, x_context, y_context, context_mask, x_target) -> torch.Tensor:
        """``(b, t, hidden)``: cross-attention of the targets to the context."""
        h = self.det_embed(torch.cat([x_context, y_context], -1))
        for block in self.det_blocks:
            h = block(h, context_mask)
        return self.cross(self.x_embed(x_target), self.x_embed(x_context), h, context_mask)

    def decode(self, x_target, r, z):
        """``x_target (b, t, 1)``, ``r (b, t, hidden)``, ``z (k, b, dz)`` -> ``(mean, std)``,
        each ``(k, b, t)``."""
        k, t = z.shape[0], x_target.shape[1]
        inputs = torch.cat(
            [
                x_target.expand(k, *x_target.shape),
                r.expand(k, *r.shape),
                z[:, :, None, :].expand(-1, -1, t, -1),
            ],
            -1,
        )
        out = self.decoder(inputs)
        return out[..., 0], self.min_std + F.softplus(out[..., 1])

    def _union(self, x_context, y_context, context_mask, x_target, y_target, target_mask):
        return (
            torch.cat([x_context, x_target], 1),
            torch.cat([y_context, y_target], 1),
            torch.cat([context_mask, target_mask], 1),
        )

    def _target_log_lik(self, mean, std, y_target, target_mask):
        lp = _gaussian_log_prob(y_target[..., 0], mean, std)
        return (lp * target_mask.to(lp.dtype)).sum(-1)

    def elbo(self, x_context, y_context, context_mask, x_target, y_target, target_mask):
        """``(b,)`` one-draw ELBO: ``log p(y_T | z, C) − KL(q(z|C∪T) || p(z|C))``,
        ``z ~ q(z|C∪T)`` (reparameterised)."""
        _check_tasks(x_context, y_context, context_mask, x_target, target_mask)
        prior = self.latent(x_context, y_context, context_mask)
        post = self.latent(
            *self._union(x_context, y_context, context_mask, x_target, y_target, target_mask)
        )
        z = post.rsample()[None]
        r = self.deterministic(x_context, y_context, context_mask, x_target)
        mean, std = self.decode(x_target, r, z)
        ll = self._target_log_lik(mean, std, y_target, target_mask)[0]
        kl = torch.distributions.kl_divergence(post, prior).sum(-1)
        return ll - kl

    def log_likelihood(
        self,
        x_context,
        y_context,
        context_mask,
        x_target,
        y_target,
        target_mask,
        *,
        num_samples: int = 64,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(b,)`` importance estimate of ``log p(y_T | C)`` (joint over the real targets)
        with the proposal ``q(z | C ∪ T)`` (:func:`importance_log_marginal`)."""
        _check_tasks(x_context, y_context, context_mask, x_target, target_mask)
        prior = self.latent(x_context, y_context, context_mask)
        post = self.latent(
            *self._union(x_context, y_context, context_mask, x_target, y_target, target_mask)
        )
        r = self.deterministic(x_context, y_context, context_mask, x_target)

        def log_lik(z):
            mean, std = self.decode(x_target, r, z)
            return self._target_log_lik(mean, std, y_target, target_mask)

        return importance_log_marginal(log_lik, prior, post, num_samples, generator=generator)

    def sample_predictive(
        self,
        x_context,
        y_context,
        context_mask,
        x_target,
        num_samples: int,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(num_samples, b, t)`` draws of the target values: ``z ~ p(z | C)``, then
        ``y_t ~ N(mean_t, std_t²)``."""
        _check_tasks(x_context, y_context, context_mask, x_target)
        prior = self.latent(x_context, y_context, context_mask)
        loc, scale = prior.loc, prior.scale
        z = loc + scale * torch.randn(
            (num_samples, *loc.shape), generator=generator, dtype=loc.dtype, device=loc.device
        )
        r = self.deterministic(x_context, y_context, context_mask, x_target)
        mean, std = self.decode(x_target, r, z)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + std * noise


# ------------------------------------------------------------------ training, scoring


def build(name: str, **kwargs: Any) -> nn.Module:
    """A fresh ``"convcnp"`` or ``"anp"`` with the default (or given) settings."""
    if name == "convcnp":
        return ConvCNP(**kwargs)
    if name == "anp":
        return AttentiveNP(**kwargs)
    raise ValueError(f"name must be one of {MODELS}; got {name!r}")


def training_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Negative training objective per target point, averaged over the batch: the
    Gaussian log-likelihood (ConvCNP) or the ELBO (ANP), each divided by the task's
    number of targets."""
    *_, target_mask = batch
    if isinstance(model, ConvCNP):
        obj = model.log_likelihood(*batch)
    else:
        obj = model.elbo(*batch)
    return -(obj / target_mask.sum(1)).mean()


def fit(
    model: nn.Module,
    sampler: Callable[..., Any],
    *,
    steps: int = TRAINING["steps"],
    max_context: int = TRAINING["max_context"],
    lr: float = TRAINING["lr"],
    lr_end: float = TRAINING["lr_end"],
    grad_clip: float | None = TRAINING["grad_clip"],
    seed: int = 0,
    progress_bar: bool = True,
):
    """Train ``model`` by :func:`bayesfn.training.optimize` (Adam, ``lr`` cosine-decayed
    to ``lr_end``, gradient clipping) on a fresh ``sampler(generator=...)`` batch at every
    step (a ``FunctionSet``: ``x, y (b, n, 1)``, ``mask (b, n)``), split by
    :func:`split_context_target`. Returns the ``FitResult``."""
    from bayesfn.training import optimize

    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype

    def loss_fn(_batch):
        fs = sampler(generator=gen)
        batch = split_context_target(
            fs.x.to(dtype), fs.y.to(dtype), fs.mask, max_context=max_context, generator=gen
        )
        return training_loss(model, batch)

    def schedule(opt):
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr_end)

    return optimize(
        model,
        loss_fn,
        max_steps=steps,
        lr=lr,
        scheduler=schedule,
        grad_clip=grad_clip,
        seed=seed,
        progress_bar=progress_bar,
        desc=type(model).__name__,
    )


@torch.no_grad()
def score_tasks(
    model: nn.Module,
    tasks,
    *,
    num_samples: int = 64,
    num_draws: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Log-likelihood per target point of every task of a ``TaskSet`` and the 95 %
    interval coverage, in float64 (``model`` is converted to float64 in place).

    ConvCNP: the factorised Gaussian; coverage of ``mean ± 1.96 std``. ANP: the importance
    estimate with ``num_samples`` draws of ``q(z | C ∪ T)``; coverage of the 2.5-97.5 %
    quantiles of ``num_draws`` predictive draws (``z ~ p(z | C)``).

    Returns:
        ``{"ll": (b,) tensor, "coverage95": float, "seconds": float}``.
    """
    model = model.double().eval()
    g = torch.Generator().manual_seed(seed)
    xc, yc, cm = tasks.x_context.double(), tasks.y_context.double(), tasks.context_mask
    xt, yt, tm = tasks.x_target.double(), tasks.y_target.double(), tasks.target_mask
    start = time.perf_counter()
    if isinstance(model, ConvCNP):
        ll = model.log_likelihood(xc, yc, cm, xt, yt, tm)
        mean, std = model(xc, yc, cm, xt, tm)
        lo, hi = mean - 1.96 * std, mean + 1.96 * std
    else:
        ll = model.log_likelihood(xc, yc, cm, xt, yt, tm, num_samples=num_samples, generator=g)
        draws = model.sample_predictive(xc, yc, cm, xt, num_draws, generator=g)
        lo, hi = draws.quantile(0.025, 0), draws.quantile(0.975, 0)
    y = yt[..., 0]
    inside = ((y >= lo) & (y <= hi))[tm].to(torch.float64)
    return {
        "ll": ll / tm.sum(1),
        "coverage95": float(inside.mean()),
        "seconds": round(time.perf_counter() - start, 2),
    }


def save(model: nn.Module, path: str | Path, info: dict[str, Any]) -> Path:
    """Write the weights (float32) and ``info`` with :func:`bayesfn.io.write_state`."""
    from bayesfn import io

    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    return io.write_state(path, {"format": "bayesfn-np-baseline", "info": info}, state)


def load(name: str, path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Read what :func:`save` wrote into a fresh ``build(name)``; ``(model, info)``."""
    from bayesfn import io

    header, state = io.read_state(path)
    model = build(name, **header["info"].get("settings", {}))
    model.load_state_dict(state)
    return model, header["info"]


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_LABEL = {"convcnp": "ConvCNP", "anp": "ANP"}


def load_or_fit(
    name: str,
    family: str,
    out: str | Path,
    *,
    steps: int = TRAINING["steps"],
    seed: int = 0,
    progress_bar: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``name`` of ``family`` saved as ``out/<name>_<family>_seed<seed>`` when
    its recorded training settings match, else one trained by :func:`fit` on
    ``ndp._sampler(family, ...)`` (batch 32, 50-59 points) and saved there. Returns
    ``(model, info)``; ``info`` holds the settings, seconds and final loss."""
    from bayesfn.reproduce import ndp

    if family not in ndp.FAMILIES:
        raise ValueError(f"family must be one of {ndp.FAMILIES}; got {family!r}")
    wanted = {**TRAINING, "steps": steps, "num_points": list(TRAINING["num_points"])}
    path = Path(out) / f"{name}_{family}_seed{seed}"
    from bayesfn import io

    if io.state_exists(path):
        model, info = load(name, path)
        if info["training"] != wanted:
            raise ValueError(
                f"{path} was trained with {info['training']}, not {wanted}; remove it or use "
                "another out folder"
            )
        return model, info
    torch.manual_seed(seed)  # the initial weights
    model = build(name)
    sampler = ndp._sampler(
        family, {"batch_size": TRAINING["batch_size"], "num_points": TRAINING["num_points"]}
    )
    start = time.perf_counter()
    result = fit(model, sampler, steps=steps, seed=seed, progress_bar=progress_bar)
    info = {
        "model": name,
        "family": family,
        "seed": seed,
        "training": wanted,
        "settings": {},
        "objective": "Gaussian log-likelihood" if name == "convcnp" else "ELBO (one draw)",
        "num_parameters": num_parameters(model),
        "fit_seconds": round(time.perf_counter() - start, 1),
        "final_loss": float(sum(result.losses[-100:]) / min(100, len(result.losses))),
    }
    save(model, path, info)
    return model, info


def run_one(
    name: str,
    family: str,
    out: str | Path,
    tasks_dir: str | Path,
    *,
    steps: int = TRAINING["steps"],
    seed: int = 0,
    num_samples: int = 64,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Train (or load) one model of one family and score the saved NDP task sets
    ``tasks_dir/tasks_<family>`` and ``tasks_dir/tasks_<family>_generalisation``: the
    ``results.json`` payload (rows: LL per target point with the published value as the
    reference, 95 % coverage)."""
    from bayesfn.data import TaskSet
    from bayesfn.reproduce.results import make_results, result_row

    if name not in MODELS:
        raise ValueError(f"name must be one of {MODELS}; got {name!r}")
    begin = time.perf_counter()
    model, info = load_or_fit(name, family, out, steps=steps, seed=seed, progress_bar=progress_bar)
    rows, details = [], {"fit": info}
    for kind, suffix in (("interpolation", ""), ("generalisation", "_generalisation")):
        tasks = TaskSet.load(Path(tasks_dir) / f"tasks_{family}{suffix}")
        found = score_tasks(model, tasks, num_samples=num_samples, seed=seed)
        ll = found["ll"]
        mean = float(ll.mean())
        se = float(ll.std() / math.sqrt(ll.numel()))
        key = name if kind == "interpolation" else f"{name}_generalisation"
        setting = f"1d {kind}/{family}"
        metric = f"LL per target, {_LABEL[name]}"
        if name == "anp":
            metric += f" (importance estimate, K = {num_samples})"
        rows.append(
            result_row(
                setting,
                metric,
                mean,
                ours_std=se,
                reference=PUBLISHED[key]["values"][family],
                reference_source=PUBLISHED[key]["source"],
            )
        )
        rows.append(
            result_row(setting, f"95 % interval coverage, {_LABEL[name]}", found["coverage95"])
        )
        details[kind] = {
            "num_tasks": len(tasks),
            "ll_per_task": ll.tolist(),
            "coverage95": found["coverage95"],
            "score_seconds": found["seconds"],
        }
        logger.info("%s %s %s: %.3f ± %.3f", name, family, kind, mean, se)
    return make_results(
        PAPER,
        "cpu",
        [seed],
        rows,
        settings={"training": info["training"], "num_importance_samples": num_samples},
        published=PUBLISHED,
        details={f"{name}/{family}": details},
        notes=[
            "ours_std is the standard error over tasks; LL per target point (ANP: joint over "
            "the 50 targets, importance estimate, lower bound in expectation; ConvCNP: "
            "factorised Gaussian).",
            "Training: fresh batches of ndp._sampler (batch 32, 50-59 points), split per "
            "function into 1-9 context points and the rest as targets.",
        ],
        seconds=round(time.perf_counter() - begin, 1),
    )
