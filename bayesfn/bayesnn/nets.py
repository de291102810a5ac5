"""Network architectures for weight-space BNNs, in the paper's parameterisation.

Every layer divides its weights by ``sqrt(fan_in)`` (Tran et al., 2022; the "NTK"
parameterisation), so a prior ``W ~ N(0, 1)`` keeps activations of order one at any
width and the prior acts on the raw ``W`` and ``b``:

``h_{l+1} = φ(h_l W_lᵀ / sqrt(n_l) + b_l)``; convolutions use ``sqrt(C_in k_h k_w)``.

An architecture here is a :class:`~bayesfn.model.Component` (settings only);
:meth:`Network.build` makes the ``torch.nn.Module`` once the data's input and output
sizes are known. Its parameters are named ``layers.<i>.weight`` / ``layers.<i>.bias``.
Samples of the weights never live in the module: :func:`batched_forward` evaluates the
module under a stacked dict of parameters with ``torch.func.functional_call`` and
``vmap``.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bayesfn.model import Component

__all__ = [
    "CNN",
    "MLP",
    "Network",
    "ScaledConv2d",
    "ScaledLinear",
    "batched_forward",
]

_ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": F.gelu,
    "elu": F.elu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "leaky_relu": F.leaky_relu,
    "erf": torch.erf,
    "sin": torch.sin,
}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}; got {name!r}")
    return _ACTIVATIONS[name]


class ScaledLinear(nn.Module):
    """``y = x Wᵀ / sqrt(in_features) + b`` with ``W (out, in)``, ``b (out,)``.

    Initialised at a draw of the standard prior: ``W ~ N(0, 1)``, ``b = 0``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) / math.sqrt(self.in_features) + self.bias


class ScaledConv2d(nn.Module):
    """A same-padded 2-D convolution divided by ``sqrt(C_in k k)``; ``W ~ N(0, 1)``, ``b = 0``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.fan_in = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (
            F.conv2d(x, self.weight, padding="same") / math.sqrt(self.fan_in)
            + self.bias[:, None, None]
        )


class Network(Component, abc.ABC):
    """An architecture: settings now, a module once the data's sizes are known."""

    @abc.abstractmethod
    def build(self, in_features: int, out_features: int) -> nn.Module:
        """The module mapping ``(..., in_features)`` to ``(..., out_features)``."""


class _MLPModule(nn.Module):
    def __init__(self, sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ScaledLinear(a, b) for a, b in itertools.pairwise(sizes))
        self.phi = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.phi(layer(x))
        return self.layers[-1](x)


class MLP(Network):
    """A fully connected network with ``sqrt(fan_in)``-scaled layers.

    Args:
        hidden: widths of the hidden layers, e.g. ``(50, 50, 50)``; ``()`` is a
            linear model.
        activation: ``"tanh"`` (the paper's), ``"relu"``, ``"gelu"``, ``"elu"``,
            ``"sigmoid"``, ``"softplus"``, ``"leaky_relu"``, ``"erf"`` or ``"sin"``.

    Example:
        >>> MLP(hidden=(50, 50), activation="tanh").build(1, 1)  # 1 -> 50 -> 50 -> 1
    """

    def __init__(self, hidden: Sequence[int] = (50,), activation: str = "tanh") -> None:
        hidden = list(hidden)
        if not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a sequence of positive integers; got {hidden!r}")
        _activation(activation)
        self.hidden = hidden
        self.activation = activation

    def build(self, in_features: int, out_features: int) -> nn.Module:
        return _MLPModule([in_features, *self.hidden, out_features], self.activation)


class _CNNModule(nn.Module):
    def __init__(self, net: CNN, out_features: int) -> None:
        super().__init__()
        c, h, w = net.image_shape
        convs, sizes = [], [c, *net.channels]
        for a, b in itertools.pairwise(sizes):
            convs.append(ScaledConv2d(a, b, net.kernel_size))
            h, w = h // 2, w // 2
        self.convs = nn.ModuleList(convs)
        flat = sizes[-1] * h * w
        self.layers = nn.ModuleList(
            ScaledLinear(a, b)
            for a, b in zip([flat, *net.hidden], [*net.hidden, out_features], strict=True)
        )
        self.image_shape = tuple(net.image_shape)
        self.phi = _activation(net.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, *self.image_shape)
        for conv in self.convs:
            x = F.avg_pool2d(self.phi(conv(x)), 2)
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = self.phi(layer(x))
        return self.layers[-1](x).reshape(*lead, -1)


class CNN(Network):
    """A small convolutional network: same-padded convolutions, each followed by the
    activation and 2x2 average pooling, then fully connected layers; all layers
    ``sqrt(fan_in)``-scaled.

    Inputs are flat rows ``(n, C*H*W)`` (the model contract's ``(n, d)``) reshaped to
    ``image_shape`` inside, so every BNN tool applies unchanged.

    Args:
        image_shape: ``(C, H, W)`` of one input.
        channels: output channels of each convolution.
        kernel_size: odd kernel size of every convolution.
        hidden: widths of the fully connected hidden layers.
        activation: as for :class:`MLP`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
    ) -> None:
        image_shape, channels, hidden = list(image_shape), list(channels), list(hidden)
        if len(image_shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive integers; got {image_shape}")
        if not all(isinstance(c, int) and c >= 1 for c in channels):
            raise ValueError(f"channels must be positive integers; got {channels!r}")
        if min(image_shape[1:]) < 2 ** len(channels):
            raise ValueError(
                f"image_shape {image_shape} is too small for {len(channels)} 2x2 poolings"
            )
        if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
            raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size!r}")
        if not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be positive integers; got {hidden!r}")
        _activation(activation)
        self.image_shape = image_shape
        self.channels = channels
        self.kernel_size = kernel_size
        self.hidden = hidden
        self.activation = activation

    def build(self, in_features: int, out_features: int) -> nn.Module:
        if in_features != math.prod(self.image_shape):
            raise ValueError(
                f"x has {in_features} features but image_shape {self.image_shape} needs "
                f"{math.prod(self.image_shape)}"
            )
        return _CNNModule(self, out_features)


def batched_forward(
    module: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Evaluate ``module`` at ``x`` under each of a stack of parameter sets.

    Args:
        module: the network; its own parameters are ignored (only their names matter).
        params: every parameter of ``module`` by name, each ``(K, *shape)`` for ``K``
            samples (chains, draws, particles, ensemble members).
        x: ``(..., d)`` inputs, shared by all ``K`` samples.

    Returns:
        ``(K, ..., m)`` outputs.
    """

    def one(p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(module, dict(p), (x,))

    return torch.func.vmap(one)(dict(params))
