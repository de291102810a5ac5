"""Infinite-width kernels of fully connected networks: NNGP and NTK.

The network is neural-tangents' ``stax.serial`` of ``depth`` hidden blocks
``Dense(W_std, b_std) → φ`` followed by a readout ``Dense(W_std_last, b_std_last)``.
Kernels follow ``stax`` exactly, so numbers compare with the literature:

* inputs: ``K⁰(x, x') = x·x' / d`` (the mean over input features);
* ``Dense(W_std, b_std)``: ``K ← W_std² K + b_std²``; NTK parameterisation
  ``Θ ← K_new + W_std² Θ``; standard parameterisation
  ``Θ ← N_in K_old + W_std² Θ + 1`` with ``N_in`` the layer's input width;
* activation ``φ``: ``K ← E[φ(u) φ(v)]``, ``Θ ← Θ · E[φ'(u) φ'(v)]`` with
  ``(u, v) ~ N(0, K)``, in closed form (see :mod:`bayesfn.bayesnn.nngp._activations`).

Everything is vectorised over points and batches: no Python loop touches a data point.
"""

from __future__ import annotations

import math
from typing import Any

import gpytorch
import torch

from bayesfn._tiling import default_tile_rows, tiled_kernel_matrix
from bayesfn.bayesnn.nngp._activations import ACTIVATIONS, ab_relu_inplace, diag_map, layer_map
from bayesfn.bayesnn.nngp._threads import check_threads, intra_op_threads
from bayesfn.bayesnn.nngp.cnn import cnn_kernel

__all__ = ["NNGPKernel", "activation_slopes", "nngp_kernel"]

_KINDS = ("nngp", "ntk")
# NNGPKernel evaluates differentiable matrices with more entries than this in row tiles
_TILE_ABOVE_ELEMENTS = 2**20
_PARAMETERIZATIONS = ("ntk", "standard")


def activation_slopes(
    activation: str, negative_slope: float = 0.01, slopes: tuple[float, float] | None = None
) -> tuple[float, float]:
    """The ``(a, b)`` of ``φ(x) = a·min(x, 0) + b·max(x, 0)`` for the ReLU family
    (``relu`` → (0, 1), ``leaky_relu`` → (negative_slope, 1), ``abs`` → (−1, 1),
    ``ab_relu`` → ``slopes``); ``(0, 0)`` for ``erf`` and ``gelu``, which ignore it."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    if (
        isinstance(negative_slope, bool)
        or not isinstance(negative_slope, int | float)
        or not math.isfinite(negative_slope)
    ):
        raise ValueError(f"negative_slope must be a finite number; got {negative_slope!r}")
    if activation == "ab_relu":
        if slopes is None or len(slopes) != 2:
            raise ValueError(f"activation='ab_relu' needs slopes=(a, b); got {slopes!r}")
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in slopes):
            raise ValueError(f"slopes must be two finite numbers; got {slopes!r}")
        return float(slopes[0]), float(slopes[1])
    if slopes is not None:
        raise ValueError(f"slopes= is only used with activation='ab_relu'; got {activation!r}")
    return {"relu": (0.0, 1.0), "leaky_relu": (float(negative_slope), 1.0), "abs": (-1.0, 1.0)}.get(
        activation, (0.0, 0.0)
    )


def check_architecture(
    depth: int, activation: str, kind: str, parameterization: str, width: int | None
) -> None:
    """Raise ``ValueError`` naming the bad argument of an NNGP / NTK architecture."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer (hidden layers); got {depth!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}; got {kind!r}")
    if parameterization not in _PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {_PARAMETERIZATIONS}; got {parameterization!r}"
        )
    if parameterization == "standard" and kind == "ntk" and depth > 0:
        if width is None or not int(width) > 0:
            raise ValueError(
                "width must be a positive integer (the hidden-layer width N) for "
                f"kind='ntk' with parameterization='standard', whose NTK grows with N; "
                f"got {width!r}"
            )


def nngp_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    depth: int = 1,
    activation: str = "relu",
    kind: str = "nngp",
    parameterization: str = "ntk",
    w_std: Any = 1.0,
    b_std: Any = 0.0,
    w_std_last: Any = 1.0,
    b_std_last: Any = 0.0,
    slopes: tuple[float, float] = (0.0, 1.0),
    width: int | None = None,
    diag: bool = False,
    threads: int | None = 1,
) -> torch.Tensor:
    """NNGP or NTK of a fully connected network, in stax conventions.

    Args:
        x1: ``batch x n x d`` inputs.
        x2: ``batch x m x d`` inputs, or ``None`` for ``x1`` (exact diagonal then).
        depth: number of hidden ``Dense → φ`` blocks (0 gives the linear readout kernel).
        activation: ``relu``, ``leaky_relu``, ``abs``, ``ab_relu``, ``erf`` or ``gelu``.
        kind: ``"nngp"`` or ``"ntk"``.
        parameterization: ``"ntk"`` or ``"standard"`` (the NNGP is the same in both).
        w_std: hidden-layer weight and bias standard deviations (floats or
            tensors broadcastable to ``batch x 1 x 1``, so they may carry gradients).
        b_std: see ``w_std``.
        w_std_last: the readout layer's.
        b_std_last: see ``w_std_last``.
        slopes: ``(a, b)`` of the ReLU family (see :func:`activation_slopes`).
        width: hidden width ``N`` (only for the standard-parameterisation NTK).
        diag: return only ``K(x1_i, x2_i)`` as ``batch x n`` (needs ``n == m``).
        threads: torch intra-op threads while the matrix is built without autograd
            (default 1; ``None`` leaves torch's setting; torch's setting is restored
            afterwards). That path is a dozen elementwise passes per layer over the
            ``n x m`` buffers; split over threads each waits for the slowest one, and on
            a 2-core machine shared with other processes two threads were 1.2 to 9
            times slower than one (see :mod:`bayesfn.bayesnn.nngp._threads`). Pass
            ``None`` to use more cores on a dedicated machine. Autograd evaluations
            and ``diag`` keep torch's setting.

    Returns:
        ``batch x n x m`` kernel matrix, or ``batch x n`` when ``diag``.
    """
    check_threads(threads, "threads")
    tracked = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad
        for t in (x1, x2, w_std, b_std, w_std_last, b_std_last)
    )
    arguments = dict(
        depth=depth,
        activation=activation,
        kind=kind,
        parameterization=parameterization,
        w_std=w_std,
        b_std=b_std,
        w_std_last=w_std_last,
        b_std_last=b_std_last,
        slopes=slopes,
        width=width,
        diag=diag,
    )
    if diag or tracked:
        return _nngp_kernel(x1, x2, **arguments)
    with intra_op_threads(threads):
        return _nngp_kernel(x1, x2, **arguments)


def _nngp_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor | None,
    *,
    depth: int,
    activation: str,
    kind: str,
    parameterization: str,
    w_std: Any,
    b_std: Any,
    w_std_last: Any,
    b_std_last: Any,
    slopes: tuple[float, float],
    width: int | None,
    diag: bool,
) -> torch.Tensor:
    """:func:`nngp_kernel` at the current thread setting (same arguments)."""
    same = x2 is None or x2 is x1 or (x2.shape == x1.shape and torch.equal(x2, x1))
    x2 = x1 if x2 is None else x2
    d = x1.shape[-1]
    if x2.shape[-1] != d:
        raise ValueError(
            f"x1 and x2 must have the same number of features; got {d} and {x2.shape[-1]}"
        )
    want_ntk = kind == "ntk"
    dtype = torch.promote_types(x1.dtype, x2.dtype)

    def as_t(v: Any) -> torch.Tensor:
        return torch.as_tensor(v, dtype=dtype, device=x1.device)

    w2, b2 = as_t(w_std) ** 2, as_t(b_std) ** 2
    w2_last, b2_last = as_t(w_std_last) ** 2, as_t(b_std_last) ** 2
    standard = parameterization == "standard"
    # without autograd the n x m buffers are updated in place (same values, less traffic)
    inplace = not diag and not (
        torch.is_grad_enabled() and any(t.requires_grad for t in (x1, x2, w2, b2, w2_last, b2_last))
    )

    work: dict[str, torch.Tensor] = {}  # n x m scratch buffers reused across layers
    if diag:
        if x1.shape[-2] != x2.shape[-2]:
            raise ValueError("diag=True needs x1 and x2 with the same number of points")
        # treat the n pairs as an n x 1 "matrix" so the same code path serves both
        k1 = (x1 * x1).sum(-1, keepdim=True) / d
        k2 = (x2 * x2).sum(-1, keepdim=True) / d
        c = k1 if same else (x1 * x2).sum(-1, keepdim=True) / d
    else:
        k1 = (x1 * x1).sum(-1).unsqueeze(-1) / d  # batch x n x 1
        k2 = (x2 * x2).sum(-1).unsqueeze(-2) / d  # batch x 1 x m
        c = torch.matmul(x1, x2.mT).div_(d)
        if same and inplace:  # BLAS need not return an exactly symmetric x xᵀ
            transposed = c.mT.contiguous()
            c = c.add_(transposed).mul_(0.5)
            work["prod"] = transposed  # becomes scratch space for the activations
        elif same:
            c = 0.5 * (c + c.mT)
    # on the diagonal of K(x, x) (or the pairs of diag=True with x1 == x2) the
    # covariance must equal the variances exactly, so that the angle is exactly 0
    pin = same and not diag and x1.shape[-2] > 0

    def pin_diagonal(c: torch.Tensor | None, k1: torch.Tensor | None) -> torch.Tensor | None:
        if not pin or c is None:
            return c
        k = k1.squeeze(-1).expand(c.shape[:-1])
        if inplace:
            c.diagonal(dim1=-2, dim2=-1).copy_(k)
            return c
        return torch.diagonal_scatter(c, k, dim1=-2, dim2=-1)

    def dense(c, k1, k2, ntk, w2, b2, n_in):
        k1, k2 = w2 * k1 + b2, w2 * k2 + b2
        if inplace and c.shape == torch.broadcast_shapes(c.shape, w2.shape):
            if ntk is not None and standard:
                ntk = ntk.mul_(w2).add_(c, alpha=n_in).add_(1)
            c = c.mul_(w2).add_(b2)
            if ntk is not None and not standard:
                ntk = ntk.mul_(w2).add_(c)
            return c, k1, k2, ntk
        c_new = w2 * c + b2
        if ntk is not None:
            # the same operation order as the in-place branch, so both agree bit for bit
            ntk = (w2 * ntk).add(c, alpha=n_in).add(1) if standard else (c_new + w2 * ntk)
        return c_new, k1, k2, ntk

    diag_same = diag and same
    ntk = torch.zeros_like(c) if want_ntk else None
    n_in = float(d)
    for _ in range(depth):
        c, k1, k2, ntk = dense(c, k1, k2, ntk, w2, b2, n_in)
        c = pin_diagonal(c, k1)
        if diag_same:
            c, dot = diag_map(activation, c, slopes, want_ntk)
            k1 = k2 = c
        else:
            if (
                inplace
                and activation not in ("erf", "gelu")
                and c.shape == torch.broadcast_shapes(c.shape, k1.shape, k2.shape)
            ):
                c, dot = ab_relu_inplace(c, k1, k2, slopes[0], slopes[1], want_ntk, work)
            else:
                c, dot = layer_map(activation, c, k1, k2, slopes, want_ntk)
            k1, dot1 = diag_map(activation, k1, slopes, want_ntk and pin)
            # the diagonal of K(x, x) takes the exact angle-0 maps, bit for bit
            c, dot = pin_diagonal(c, k1), pin_diagonal(dot, dot1)
            k2 = k1.mT if same and not diag else diag_map(activation, k2, slopes, False)[0]
        if want_ntk:
            ntk = ntk.mul_(dot) if inplace and ntk.shape == dot.shape else ntk * dot
        n_in = float(width) if width is not None else math.nan
    c, k1, k2, ntk = dense(c, k1, k2, ntk, w2_last, b2_last, n_in)
    out = ntk if want_ntk else c
    if diag:
        out = out.squeeze(-1)
    return out


class NNGPKernel(gpytorch.kernels.Kernel):
    """NNGP / NTK of a fully connected network as a GPyTorch kernel (float64 by default).

    The architecture is neural-tangents'
    ``stax.serial(*[Dense(N, w_std, b_std), φ] * depth, Dense(1, w_std_last, b_std_last))``
    and :meth:`forward` returns exactly its ``kernel_fn(x1, x2, kind)``.

    Args:
        depth: number of hidden layers.
        activation: ``"relu"``, ``"leaky_relu"`` (``negative_slope``), ``"abs"``,
            ``"ab_relu"`` (``slopes=(a, b)`` for ``a·min(x, 0) + b·max(x, 0)``), ``"erf"``
            or ``"gelu"`` (exact, ``x Φ(x)``).
        kind: ``"nngp"`` or ``"ntk"``.
        parameterization: ``"ntk"`` (default) or ``"standard"``.
        w_std: hidden-layer weight / bias standard deviations (learnable, ≥ 0).
        b_std: see ``w_std``.
        w_std_last: the readout layer's (default: ``w_std`` and ``b_std``).
        b_std_last: see ``w_std_last``.
        width: hidden width, needed only by the standard-parameterisation NTK.
        image_shape: ``(H, W, C)`` to use the convolutional network instead: ``depth``
            SAME-padded ``filter_size x filter_size`` convolutions with a Flatten readout
            (:func:`~bayesfn.bayesnn.nngp.cnn.cnn_kernel`, NTK parameterisation); inputs are
            then images flattened in NHWC order, ``n x (H·W·C)``, without batch dims.
        filter_size: the convolutions' filter side.
        dtype: parameter dtype (float64).

    Inputs are ``batch x n x d``; outputs ``batch x n x m`` (``batch x n`` with ``diag``).

    Example:
        >>> k = NNGPKernel(depth=3, activation="relu", w_std=1.5, b_std=0.05)
        >>> K = k(x).to_dense()  # (n, n)
    """

    has_lengthscale = False
    is_stationary = False

    def __init__(
        self,
        depth: int = 1,
        activation: str = "relu",
        *,
        kind: str = "nngp",
        parameterization: str = "ntk",
        w_std: float = 1.0,
        b_std: float = 0.0,
        w_std_last: float | None = None,
        b_std_last: float | None = None,
        negative_slope: float = 0.01,
        slopes: tuple[float, float] | None = None,
        width: int | None = None,
        image_shape: tuple[int, int, int] | None = None,
        filter_size: int = 3,
        dtype: torch.dtype = torch.float64,
        **kwargs: Any,
    ) -> None:
        check_architecture(depth, activation, kind, parameterization, width)
        if image_shape is not None:
            if len(image_shape) != 3 or not all(int(s) > 0 for s in image_shape):
                raise ValueError(
                    f"image_shape must be (H, W, C) positive ints; got {image_shape!r}"
                )
            if parameterization != "ntk":
                raise ValueError(
                    "the CNN kernel (image_shape=...) supports parameterization='ntk' only"
                )
            if not isinstance(filter_size, int) or filter_size < 1:
                raise ValueError(f"filter_size must be a positive integer; got {filter_size!r}")
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        self.filter_size = filter_size
        self.slopes = activation_slopes(activation, negative_slope, slopes)
        super().__init__(**kwargs)
        self.depth, self.activation, self.kind = depth, activation, kind
        self.parameterization, self.width = parameterization, width
        values = {
            "w_std": w_std,
            "b_std": b_std,
            "w_std_last": w_std if w_std_last is None else w_std_last,
            "b_std_last": b_std if b_std_last is None else b_std_last,
        }
        for name, value in values.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number; got {value!r}")
            self.register_parameter(
                f"raw_{name}", torch.nn.Parameter(torch.zeros(*self.batch_shape, 1, 1))
            )
            self.register_constraint(f"raw_{name}", gpytorch.constraints.Positive())
        self.to(dtype)
        with torch.no_grad():
            for name, value in values.items():
                raw = getattr(self, f"raw_{name}")
                constraint = getattr(self, f"raw_{name}_constraint")
                # softplus⁻¹(0) = −inf gives exactly 0 (and a zero gradient): a fixed zero
                raw.copy_(constraint.inverse_transform(torch.full_like(raw, float(value))))

    def __call__(self, x1: Any, x2: Any = None, diag: bool = False, **params: Any):
        """GPyTorch's kernel call, with the inputs checked first: tensors ``(..., n, d)``
        and ``(..., m, d)`` with the same ``d``."""
        for name, t in (("x1", x1), ("x2", x2)):
            if t is not None and not isinstance(t, torch.Tensor):
                raise TypeError(
                    f"{name} must be a torch.Tensor (convert arrays with torch.as_tensor); "
                    f"got {type(t).__name__}"
                )
        if x1.ndim < 2:
            raise ValueError(f"x1 must have shape (..., n, d); got {tuple(x1.shape)}")
        if x2 is not None and (x2.ndim < 2 or x2.shape[-1] != x1.shape[-1]):
            raise ValueError(
                f"x2 must have shape (..., m, d) with the d = {x1.shape[-1]} features of x1; "
                f"got {tuple(x2.shape)}"
            )
        return super().__call__(x1, x2, diag=diag, **params)

    def _value(self, name: str) -> torch.Tensor:
        raw = getattr(self, f"raw_{name}")
        return getattr(self, f"raw_{name}_constraint").transform(raw)

    @property
    def w_std(self) -> torch.Tensor:
        return self._value("w_std")

    @property
    def b_std(self) -> torch.Tensor:
        return self._value("b_std")

    @property
    def w_std_last(self) -> torch.Tensor:
        return self._value("w_std_last")

    @property
    def b_std_last(self) -> torch.Tensor:
        return self._value("b_std_last")

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params,
    ) -> torch.Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("NNGPKernel does not support last_dim_is_batch=True")
        # batch x 1 x 1 hyperparameters broadcast against batch x n x m (and the
        # batch x n x 1 pairs of the diag path)
        hyper = {
            n: self._value(n).to(x1.dtype) for n in ("w_std", "b_std", "w_std_last", "b_std_last")
        }
        if self.image_shape is not None:
            if x1.ndim != 2 or x2.ndim != 2:
                raise ValueError(
                    "the CNN kernel takes n x (H·W·C) inputs without batch dims; got "
                    f"{tuple(x1.shape)} and {tuple(x2.shape)}"
                )
            return self._cnn(x1, x2, diag)

        def evaluate(a: torch.Tensor, b: torch.Tensor, hyper=hyper) -> torch.Tensor:
            return nngp_kernel(
                a,
                b,
                depth=self.depth,
                activation=self.activation,
                kind=self.kind,
                parameterization=self.parameterization,
                slopes=self.slopes,
                width=self.width,
                diag=diag,
                **hyper,
            )

        params = [p for p in self.parameters() if p.requires_grad]
        large = x1.shape[-2] * x2.shape[-2] > _TILE_ABOVE_ELEMENTS
        if large and not diag and self._differentiable(params, x1, x2):
            # a differentiable evaluation of a large matrix: in row tiles, so that
            # autograd keeps no n x m temporaries of the recursion (see bayesfn._tiling)
            def tile(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                fresh = {
                    n: self._value(n).to(a.dtype)
                    for n in ("w_std", "b_std", "w_std_last", "b_std_last")
                }
                return evaluate(a, b, fresh)

            return tiled_kernel_matrix(tile, x1, x2, params)
        return evaluate(x1, x2)

    @staticmethod
    def _differentiable(params: list[torch.Tensor], x1: torch.Tensor, x2: torch.Tensor) -> bool:
        """Whether an evaluation builds a graph in the hyperparameters only (the case
        that :func:`~bayesfn._tiling.tiled_kernel_matrix` serves)."""
        return bool(
            params and torch.is_grad_enabled() and not (x1.requires_grad or x2.requires_grad)
        )

    def _cnn(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool) -> torch.Tensor:
        """The CNN kernel of ``n x (H·W·C)`` inputs. A differentiable ``n x m`` matrix
        with more than ``2**20`` pair-pixel states is tiled like the FC kernel's: the
        forward pass is the kernel's own no-grad route (square tiles of image pairs,
        the symmetric half only for ``K(x, x)``), the backward pass recomputes rows of
        the pair grid with autograd, about ``2**18`` pair-pixel states per tile (at
        least one row: ``m · H · W`` states), so that autograd never holds the per-pixel
        states of the whole grid."""

        def evaluate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            hyper = {
                n: self._value(n).to(a.dtype).reshape(())
                for n in ("w_std", "b_std", "w_std_last", "b_std_last")
            }
            return cnn_kernel(
                a.reshape(-1, *self.image_shape),
                b.reshape(-1, *self.image_shape),
                depth=self.depth,
                activation=self.activation,
                kind=self.kind,
                filter_size=self.filter_size,
                slopes=self.slopes,
                diag=diag,
                **hyper,
            )

        pixels = self.image_shape[0] * self.image_shape[1]
        params = [p for p in self.parameters() if p.requires_grad]
        large = x1.shape[-2] * x2.shape[-2] * pixels > _TILE_ABOVE_ELEMENTS
        if large and not diag and self._differentiable(params, x1, x2):
            rows = default_tile_rows(x2.shape[-2], pixels)
            return tiled_kernel_matrix(evaluate, x1, x2, params, tile_rows=rows, full=evaluate)
        return evaluate(x1, x2)
