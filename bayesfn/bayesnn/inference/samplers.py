"""Neural samplers: generators of whole BNN weight vectors from low-dimensional noise.

A sampler is a network ``g_γ`` mapping noise ``z ∈ R^{d₀}`` to a flat weight vector
``g_γ(z) ∈ R^d`` (``d₀ ≪ d``); implicit VI (:mod:`~bayesfn.bayesnn.inference.implicit_vi`)
adds isotropic output noise, ``θ = g_γ(z) + σε``, ``z ~ N(0, I_{d₀})``, ``ε ~ N(0, I_d)``.

* :class:`MLPSampler`: a fully connected generator for small networks (the official
  toy generator is 60 → 105 → 105).
* :class:`MatrixSampler`: the matrix-multiplication generator that scales to tens of
  millions of weights. The noise is a matrix ``X (a, b)``; a shared trunk of layers
  ``Y = act(W_L X W_R + B)`` feeds one head per weight block, ``W_L^(i) H W_R^(i) + B^(i)``
  of the block's ``(rows, cols)`` shape, so every block depends on the same trunk and
  weights correlate across layers. Each head's bias ``B^(i)`` has the block's size, so the
  generator has at least as many parameters as the BNN (as the official ``MMLayer``
  generator); :meth:`MatrixSampler.num_parameters` says how many.

Every sampler maps ``z (..., d₀)`` to ``(..., d)`` row by row (no mixing across leading
dimensions), so one call generates ``K`` weight samples, and per-row Jacobian-vector
products are those of the batched call.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLPSampler", "MatrixSampler", "NeuralSampler", "blocks_for"]

_ACTIVATIONS = {"elu": F.elu, "tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {name!r}")
    return _ACTIVATIONS[name]


def _check_center(center: torch.Tensor | None, num_weights: int) -> None:
    if center is not None and tuple(center.shape) != (num_weights,):
        raise ValueError(f"center must have shape ({num_weights},); got {tuple(center.shape)}")


class NeuralSampler(nn.Module):
    """Base of the generators: ``noise_dim`` in, ``num_weights`` out, row by row."""

    noise_dim: int
    num_weights: int

    def sample_noise(self, num: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` standard normal noise vectors ``(num, noise_dim)``."""
        p = next(self.parameters())
        return torch.randn(num, self.noise_dim, generator=generator, dtype=p.dtype, device=p.device)

    def num_parameters(self) -> int:
        """The generator's number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())


class MLPSampler(NeuralSampler):
    """``g(z) = L_out(act(... act(L_1 z)))``: a fully connected generator.

    Args:
        noise_dim: ``d₀``.
        num_weights: ``d``, the BNN's weight count.
        hidden: hidden widths; ``()`` is a linear (Gaussian) generator.
        activation: ``"elu"`` (the official toy generator's), ``"tanh"``, ``"relu"`` or
            ``"gelu"``.
        center: ``(d,)`` initial output bias (where samples start, e.g. the network's
            default initialisation); zeros when ``None``.
        init_spread: the initial standard deviation of the output around ``center``
            induced by ``z`` (the output layer is scaled to it).
    """

    def __init__(
        self,
        noise_dim: int,
        num_weights: int,
        hidden: Sequence[int] = (),
        activation: str = "elu",
        *,
        center: torch.Tensor | None = None,
        init_spread: float = 0.1,
    ) -> None:
        super().__init__()
        _check_center(center, num_weights)
        self.noise_dim, self.num_weights = int(noise_dim), int(num_weights)
        sizes = [self.noise_dim, *[int(h) for h in hidden], self.num_weights]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.phi = _activation(activation)
        with torch.no_grad():
            out = self.layers[-1]
            # unit-variance inputs to the last layer give outputs of sd init_spread
            out.weight.normal_(0.0, init_spread / math.sqrt(sizes[-2]))
            if center is None:
                out.bias.zero_()
            else:
                out.bias.copy_(center)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., noise_dim) -> (..., num_weights)``."""
        for layer in self.layers[:-1]:
            z = self.phi(layer(z))
        return self.layers[-1](z)


class _MatMul(nn.Module):
    """``Y = W_L X W_R + B``: ``X (..., a, b) -> Y (..., r, c)``."""

    def __init__(self, a: int, b: int, r: int, c: int, scale: float = 1.0) -> None:
        super().__init__()
        # each entry of Y sums a*b products: unit-variance X and Y need var(W_L W_R) = 1/(ab)
        self.left = nn.Parameter(torch.randn(r, a) * (scale / math.sqrt(a)))
        self.right = nn.Parameter(torch.randn(b, c) / math.sqrt(b))
        self.bias = nn.Parameter(torch.zeros(r, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left @ x @ self.right + self.bias


def blocks_for(shapes: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """One ``(rows, cols)`` block per parameter tensor: ``(out, prod(rest))`` for a
    matrix or convolution kernel, ``(1, n)`` for a vector, ``(1, 1)`` for a scalar."""
    blocks = []
    for s in shapes:
        s = tuple(int(v) for v in s)
        if len(s) >= 2:
            blocks.append((s[0], math.prod(s[1:])))
        else:
            blocks.append((1, math.prod(s)))
    return blocks


class MatrixSampler(NeuralSampler):
    """The matrix-multiplication generator with a shared trunk and per-block heads.

    ``X = z.reshape(a, b)``; trunk ``H_1 = act(W_L X W_R + B)`` of shape ``hidden_shape``,
    then ``num_hidden - 1`` more such layers; head ``i`` gives block ``i`` as
    ``U_i H V_i + B_i`` of shape ``blocks[i]``; the blocks are flattened row-major and
    concatenated into the ``(d,)`` weight vector.

    Args:
        noise_shape: ``(a, b)``; ``noise_dim = a b``.
        blocks: ``(rows, cols)`` of each output block, e.g. :func:`blocks_for` of the
            BNN's parameter shapes; ``num_weights = Σ rows·cols``.
        hidden_shape: ``(h₁, h₂)`` of the trunk's matrices.
        num_hidden: trunk layers (at least 1).
        activation: as for :class:`MLPSampler`.
        center: ``(d,)`` initial output bias; zeros when ``None``.
        init_spread: the initial output standard deviation induced by ``z``.

    Cost per sample: about ``2 d h₂`` flops for the heads (plus the trunk); parameters
    ``Σ_i (rows_i h₁ + h₂ cols_i + rows_i cols_i) ≥ d`` plus the trunk's.
    """

    def __init__(
        self,
        noise_shape: Sequence[int],
        blocks: Sequence[Sequence[int]],
        hidden_shape: Sequence[int] = (64, 64),
        num_hidden: int = 1,
        activation: str = "elu",
        *,
        center: torch.Tensor | None = None,
        init_spread: float = 0.1,
    ) -> None:
        super().__init__()
        a, b = (int(v) for v in noise_shape)
        h1, h2 = (int(v) for v in hidden_shape)
        if num_hidden < 1:
            raise ValueError(f"num_hidden must be at least 1; got {num_hidden!r}")
        self.blocks = [(int(r), int(c)) for r, c in blocks]
        self.noise_shape = (a, b)
        self.noise_dim = a * b
        self.num_weights = sum(r * c for r, c in self.blocks)
        _check_center(center, self.num_weights)
        trunk = [_MatMul(a, b, h1, h2)]
        trunk += [_MatMul(h1, h2, h1, h2) for _ in range(num_hidden - 1)]
        self.trunk = nn.ModuleList(trunk)
        self.heads = nn.ModuleList(_MatMul(h1, h2, r, c, init_spread) for r, c in self.blocks)
        self.phi = _activation(activation)
        if center is not None:
            with torch.no_grad():
                start = 0
                for head, (r, c) in zip(self.heads, self.blocks, strict=True):
                    head.bias.copy_(center[start : start + r * c].reshape(r, c))
                    start += r * c

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The trunk's output, flattened: ``(..., noise_dim) -> (..., h₁ h₂)``."""
        h = z.reshape(*z.shape[:-1], *self.noise_shape)
        for layer in self.trunk:
            h = self.phi(layer(h))
        return h.flatten(-2)

    def weights_from(self, features: torch.Tensor) -> torch.Tensor:
        """The heads: ``(..., h₁ h₂) -> (..., num_weights)``, linear in the features."""
        lead = features.shape[:-1]
        h = features.reshape(*lead, *self.trunk[-1].bias.shape)
        return torch.cat([head(h).reshape(*lead, -1) for head in self.heads], dim=-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., noise_dim) -> (..., num_weights)``."""
        return self.weights_from(self.features(z))

    def metric(self, t: torch.Tensor) -> torch.Tensor:
        """``Aᵀ A t`` for the heads' linear map ``A`` (``t (..., h₁ h₂)``).

        The heads send a feature change ``T (h₁, h₂)`` to blocks ``U_i T V_i``, so
        ``‖A t‖² = Σ_i ‖U_i T V_i‖²_F = ⟨T, Σ_i (U_iᵀU_i) T (V_i V_iᵀ)⟩``: the generator's
        ``JᵀJ = J_trunkᵀ (AᵀA) J_trunk`` costs ``O(h₁ h₂ (h₁ + h₂))`` per head and
        product, independent of ``d``.
        """
        lead = t.shape[:-1]
        tm = t.reshape(*lead, *self.trunk[-1].bias.shape)
        out = torch.zeros_like(tm)
        for head in self.heads:
            out = out + (head.left.T @ head.left) @ tm @ (head.right @ head.right.T)
        return out.flatten(-2)
