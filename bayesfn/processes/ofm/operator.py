"""Time-conditioned neural operators for operator flow matching.

Both operators map ``(t, u, x)`` to a velocity of the same shape as ``u``:

* :class:`FourierNeuralOperator`: a Fourier neural operator (Li et al., 2021) on a
  regular 1-D or 2-D grid with ``c`` channels. ``u`` is ``(B, *grid, c)``; the spectral
  layers keep the lowest ``modes`` frequencies, so the same weights act on any grid
  resolution (train on 64 points, evaluate on 256).
* :class:`AttentionOperator`: a kernel integral operator on an arbitrary set of points,
  ``u`` ``(B, n, c)`` at positions ``x`` ``(n, d)`` or ``(B, n, d)``. Every layer is a
  softmax-weighted average over all points (a learned, position-dependent kernel) plus
  a pointwise map, and nothing depends on the order of the points, so the operator is
  exactly permutation-equivariant.

Positions are expected in the unit box ``[0, 1]^d`` (the model rescales its domain).
Time ``t`` is ``(B,)`` in ``[0, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionOperator", "FourierNeuralOperator", "build_operator"]


class _TimeEmbedding(nn.Module):
    """``(B,)`` times to ``(B, width)`` features: sinusoids then a two-layer MLP.

    Angular frequencies run from 1 to 30 only: the velocity must stay smooth in ``t`` on
    ``[0, 1]``, or an adaptive ODE solver takes thousands of steps.
    """

    def __init__(self, width: int, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(0.0, math.log(30.0), frequencies)), False
        )
        self.net = nn.Sequential(
            nn.Linear(2 * frequencies, width), nn.GELU(), nn.Linear(width, width)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t[:, None] * self.freqs[None, :]
        return self.net(torch.cat([arg.sin(), arg.cos()], -1))


class _SpectralConv(nn.Module):
    """Multiply the lowest Fourier modes of a ``(B, C, *grid)`` field by learned complex
    ``(C, C', modes...)`` weights; modes above the grid's Nyquist frequency are dropped.

    Weights are stored as real ``(..., 2)`` tensors (real and imaginary parts), so that
    they save as plain float tensors.
    """

    def __init__(self, dim: int, width: int, modes: tuple[int, ...]) -> None:
        super().__init__()
        self.dim, self.modes = dim, modes
        scale = 1.0 / (width * width)
        # 2-D keeps positive and negative frequencies along the first axis: two blocks
        blocks = 1 if dim == 1 else 2
        self.weight = nn.Parameter(scale * torch.randn(blocks, width, width, *modes, 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.view_as_complex(self.weight)
        if self.dim == 1:
            n = h.shape[-1]
            coef = torch.fft.rfft(h, dim=-1)
            m = min(self.modes[0], coef.shape[-1])
            out = torch.zeros(
                h.shape[0], w.shape[2], coef.shape[-1], dtype=coef.dtype, device=h.device
            )
            out[..., :m] = torch.einsum("bix,iox->box", coef[..., :m], w[0, :, :, :m])
            return torch.fft.irfft(out, n=n, dim=-1)
        n1, n2 = h.shape[-2:]
        coef = torch.fft.rfft2(h, dim=(-2, -1))
        m1 = min(self.modes[0], n1 // 2)
        m2 = min(self.modes[1], coef.shape[-1])
        out = torch.zeros(
            h.shape[0], w.shape[2], n1, coef.shape[-1], dtype=coef.dtype, device=h.device
        )
        out[..., :m1, :m2] = torch.einsum(
            "bixy,ioxy->boxy", coef[..., :m1, :m2], w[0, :, :, :m1, :m2]
        )
        if m1 > 0:
            out[..., n1 - m1 :, :m2] = torch.einsum(
                "bixy,ioxy->boxy", coef[..., n1 - m1 :, :m2], w[1, :, :, :m1, :m2]
            )
        return torch.fft.irfft2(out, s=(n1, n2), dim=(-2, -1))


class FourierNeuralOperator(nn.Module):
    """A time-conditioned Fourier neural operator on a regular 1-D or 2-D grid.

    Input channels are ``[u (c), grid position (d), t (1)]``; a pointwise lift to
    ``width`` channels, ``depth`` Fourier layers ``h ← σ(K h + W h + b(t))`` (``K`` the
    spectral convolution, ``b(t)`` a learned time shift), and a pointwise two-layer
    projection back to ``c`` channels.

    Args:
        dim: grid dimension, 1 or 2.
        channels: ``c``, the number of function outputs (channels of ``u``).
        width: hidden channels.
        modes: Fourier modes kept per axis (an int, or one per axis).
        depth: number of Fourier layers.
        projection: hidden size of the final pointwise projection.

    Shapes:
        ``forward(t, u)``: ``t`` ``(B,)``, ``u`` ``(B, *grid, c)`` → ``(B, *grid, c)``.
    """

    def __init__(
        self,
        dim: int = 1,
        channels: int = 1,
        *,
        width: int = 32,
        modes: int | tuple[int, ...] = 12,
        depth: int = 4,
        projection: int = 64,
    ) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2 for the Fourier operator; got {dim!r}")
        modes = (modes,) * dim if isinstance(modes, int) else tuple(modes)
        if len(modes) != dim or any(m < 1 for m in modes):
            raise ValueError(f"modes must be a positive int or {dim} positive ints; got {modes}")
        self.dim, self.channels = dim, channels
        self.lift = nn.Linear(channels + dim + 1, width)
        self.time = _TimeEmbedding(width)
        self.spectral = nn.ModuleList(_SpectralConv(dim, width, modes) for _ in range(depth))
        self.pointwise = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.shift = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.project = nn.Sequential(
            nn.Linear(width, projection), nn.GELU(), nn.Linear(projection, channels)
        )

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if u.ndim != self.dim + 2 or u.shape[-1] != self.channels:
            raise ValueError(
                f"u must have shape (B, *grid, {self.channels}) with a {self.dim}-D grid; "
                f"got {tuple(u.shape)}"
            )
        b, grid = u.shape[0], u.shape[1:-1]
        axes = [torch.linspace(0.0, 1.0, n, dtype=u.dtype, device=u.device) for n in grid]
        pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).expand(b, *grid, self.dim)
        tt = t.to(u.dtype).reshape(b, *([1] * (self.dim + 1))).expand(b, *grid, 1)
        h = self.lift(torch.cat([u, pos, tt], -1))
        emb = self.time(t.to(u.dtype))
        h = h.movedim(-1, 1)  # (B, width, *grid)
        for k, (spec, point, shift) in enumerate(
            zip(self.spectral, self.pointwise, self.shift, strict=True)
        ):
            lin = point(h.movedim(1, -1)).movedim(-1, 1)
            h = spec(h) + lin + shift(emb).reshape(b, -1, *([1] * self.dim))
            if k < len(self.spectral) - 1:
                h = F.gelu(h)
        return self.project(h.movedim(1, -1))


class AttentionOperator(nn.Module):
    """A time-conditioned kernel integral operator on arbitrary point sets.

    Each point carries ``[u_i, Fourier features of x_i]`` lifted to ``width``; each of
    ``depth`` layers adds multi-head attention over all points, whose logits are
    ``q_i·k_j/√h − γ_h |x_i − x_j|²`` (a learned, per-head locality ``γ_h ≥ 0``), and a
    time-shifted pointwise MLP. Attention averages over points with weights that sum
    to one, so the layer is a Monte Carlo estimate of an integral operator and refines
    gracefully with more points; and since nothing indexes the points, permuting the
    input permutes the output in the same way, exactly.

    Args:
        dim: input dimension ``d`` of the positions.
        channels: ``c``, the number of function outputs.
        width: hidden size.
        heads: attention heads (must divide ``width``).
        depth: number of attention layers.
        frequencies: Fourier features per input dimension (``sin``/``cos`` of
            ``2^k π x``, ``k < frequencies``).

    Shapes:
        ``forward(t, u, x)``: ``t`` ``(B,)``, ``u`` ``(B, n, c)``, ``x`` ``(n, d)`` or
        ``(B, n, d)`` → ``(B, n, c)``.
    """

    def __init__(
        self,
        dim: int = 1,
        channels: int = 1,
        *,
        width: int = 64,
        heads: int = 4,
        depth: int = 3,
        frequencies: int = 6,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"heads={heads} must divide width={width}")
        self.dim, self.channels, self.heads = dim, channels, heads
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32), False
        )
        self.lift = nn.Linear(channels + dim * (1 + 2 * frequencies), width)
        self.time = _TimeEmbedding(width)
        self.norm1 = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.qkv = nn.ModuleList(nn.Linear(width, 3 * width) for _ in range(depth))
        self.out = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.locality = nn.Parameter(torch.full((depth, heads), 1.0))
        self.norm2 = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
            for _ in range(depth)
        )
        self.shift = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, channels))

    def forward(self, t: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if u.ndim != 3 or u.shape[-1] != self.channels:
            raise ValueError(f"u must have shape (B, n, {self.channels}); got {tuple(u.shape)}")
        b, n, _ = u.shape
        if x.ndim == 2:
            x = x.expand(b, *x.shape)
        if x.shape != (b, n, self.dim):
            raise ValueError(
                f"x must have shape (n, {self.dim}) or (B, n, {self.dim}); got {tuple(x.shape)}"
            )
        x = x.to(u.dtype)
        arg = x[..., None] * self.freqs.to(u.dtype)
        feats = torch.cat([x, arg.sin().flatten(-2), arg.cos().flatten(-2)], -1)
        h = self.lift(torch.cat([u, feats], -1))
        emb = self.time(t.to(u.dtype))[:, None, :]
        dist2 = torch.cdist(x, x).square()[:, None]  # (B, 1, n, n)
        hd = h.shape[-1] // self.heads
        for k in range(len(self.qkv)):
            q, kk, v = self.qkv[k](self.norm1[k](h)).chunk(3, -1)
            q, kk, v = (z.reshape(b, n, self.heads, hd).transpose(1, 2) for z in (q, kk, v))
            gamma = F.softplus(self.locality[k]).to(u.dtype)[None, :, None, None]
            att = F.scaled_dot_product_attention(q, kk, v, attn_mask=-gamma * dist2)
            h = h + self.out[k](att.transpose(1, 2).reshape(b, n, -1))
            h = h + self.mlp[k](self.norm2[k](h) + self.shift[k](emb))
        return self.head(h)


def build_operator(kind: str, dim: int, channels: int, options: dict) -> nn.Module:
    """``"fno"`` → :class:`FourierNeuralOperator`, ``"attention"`` → :class:`AttentionOperator`,
    with ``options`` passed as keyword settings."""
    if kind == "fno":
        return FourierNeuralOperator(dim, channels, **options)
    if kind == "attention":
        return AttentionOperator(dim, channels, **options)
    raise ValueError(f"operator must be 'fno' or 'attention'; got {kind!r}")
