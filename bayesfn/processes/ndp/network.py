"""The bi-dimensional attention noise model of neural diffusion processes.

Dutordoir, Saul, Ghahramani & Simpson, "Neural Diffusion Processes", ICML 2023, §4.
The network maps noisy function values ``y_t (b, n, 1)`` at inputs ``x (b, n, d)`` and a
diffusion time ``t (b,)`` to a noise estimate ``eps (b, n, 1)``. Every point carries a
``d``-vector of features, one per input dimension (the pair ``(x_{n,k}, y_n)`` embedded
to ``hidden`` channels), and every block attends along both axes: across the ``d`` input
dimensions of one point and across the ``n`` points of one input dimension. The head
averages over dimensions. Hence:

* permuting the points permutes the output the same way (equivariance);
* permuting the input dimensions leaves the output unchanged (invariance);
* any ``n`` and ``d`` work with the same weights;
* padded points (``mask`` False) are excluded from the attention over points, so they
  do not change the outputs at real points.

The head's last layer starts at zero, so an untrained network predicts ``eps = 0``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BiDimensionalAttention", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 1e4) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) diffusion times.

    Args:
        t: ``(b,)`` times (integer levels or fractional ones between them).
        dim: embedding width (an odd width gets a trailing zero).
        max_period: the longest wavelength.

    Returns:
        ``(b, dim)`` with ``[sin(t w_k), cos(t w_k)]``, ``w_k = max_period^(-k / half)``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=t.dtype, device=t.device) / half
    )
    angles = t[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _Attention(nn.Module):
    """Multi-head self-attention along one axis of a ``(..., L, hidden)`` tensor; queries,
    keys and values are ``2 hidden`` wide, as is the output."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        width = 2 * hidden
        if width % heads:
            raise ValueError(f"2 * hidden = {width} must be divisible by num_heads = {heads}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``h (B, L, hidden)``, ``key_mask (B, L)`` bool (True = attend) → ``(B, L, 2 hidden)``."""
        batch, length, _ = h.shape
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        if length == 1:
            # softmax over one key is 1: the output is the value (skips q and k)
            return self.out(v)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, length, self.heads, -1).transpose(1, 2)

        mask = None if key_mask is None else key_mask[:, None, None, :]
        a = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
        return self.out(a.transpose(1, 2).reshape(batch, length, -1))


class _Block(nn.Module):
    """One residual block: time injection, attention over dimensions and over points
    (summed), then a residual and a skip path."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.time = nn.Linear(hidden, hidden)
        self.over_dims = _Attention(hidden, heads)
        self.over_points = _Attention(hidden, heads)

    def forward(
        self, s: torch.Tensor, t_emb: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d, h = s.shape
        u = s + self.time(t_emb)[:, None, None, :]
        # across the d input dimensions of each point
        a_dims = self.over_dims(u.reshape(b * n, d, h)).reshape(b, n, d, 2 * h)
        # across the n points, separately for each input dimension
        u_points = u.transpose(1, 2).reshape(b * d, n, h)
        key_mask = None if mask is None else mask.repeat_interleave(d, dim=0)
        a_points = self.over_points(u_points, key_mask).reshape(b, d, n, 2 * h).transpose(1, 2)
        residual, skip = (a_dims + a_points).chunk(2, dim=-1)
        return (s + F.gelu(residual)) / math.sqrt(2.0), F.gelu(skip)


class BiDimensionalAttention(nn.Module):
    """The NDP noise model ``eps(x, y_t, t)``.

    Args:
        hidden: channels per (point, input dimension) cell (the paper: 64).
        num_layers: residual blocks (the paper: 4 for 1-D regression).
        num_heads: attention heads; ``2 * hidden`` must be divisible by it (paper: 8).
        output_dim: the number of function outputs ``m`` (values ``y (b, n, m)``).

    Example:
        >>> net = BiDimensionalAttention(hidden=32, num_layers=2, num_heads=4)
        >>> eps = net(x, y_t, t, mask)   # (b, n, d), (b, n, 1), (b,), (b, n) -> (b, n, 1)
    """

    def __init__(
        self, hidden: int = 64, num_layers: int = 4, num_heads: int = 8, output_dim: int = 1
    ) -> None:
        super().__init__()
        for name, value in (
            ("hidden", hidden),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("output_dim", output_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        self.hidden = hidden
        self.output_dim = output_dim
        self.embed = nn.Linear(1 + output_dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, num_heads) for _ in range(num_layers))
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, output_dim)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``y``.

        Args:
            x: ``(b, n, d)`` inputs.
            y: ``(b, n, m)`` noisy values.
            t: ``(b,)`` diffusion times (integer levels; fractional ones interpolate).
            mask: ``(b, n)`` bool, True at real points and False at padding; every
                function needs at least one real point. ``None``: all real.

        Returns:
            ``(b, n, m)`` noise estimates (zero at padded points is not guaranteed:
            ignore them).
        """
        b, n, d = x.shape
        cells = torch.cat([x[..., None], y[:, :, None, :].expand(b, n, d, y.shape[-1])], -1)
        s = F.gelu(self.embed(cells))
        t_emb = timestep_embedding(t.to(x.dtype), self.hidden)
        skips = torch.zeros_like(s)
        for block in self.blocks:
            s, skip = block(s, t_emb, mask)
            skips = skips + skip
        h = skips.mean(dim=2) / math.sqrt(len(self.blocks))
        return self.head(h)
