"""The one covariance-kernel language of the package (GPyTorch kernels).

:func:`build_kernel` turns a formula such as ``"rbf"`` or ``"rbf*periodic + linear"``
into a GPyTorch kernel; :class:`GPSampler` draws function values of a zero-mean GP at
given inputs, with fixed hyperparameters or hyperparameters drawn per function from
priors (a hierarchical GP), batched: one kernel with ``batch_shape=(S,)`` and one
batched Cholesky instead of a Python loop of ``S`` factorisations. Exact GPs,
GP-matched BNN priors, function generators and baselines all build kernels here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gpytorch
import torch

from bayesfn._linalg import safe_cholesky

__all__ = ["GPSampler", "batched_covariance", "build_kernel", "kernel_names"]

_BASE_KERNELS = {
    "rbf": lambda d, b: gpytorch.kernels.RBFKernel(ard_num_dims=d, batch_shape=b),
    "matern12": lambda d, b: gpytorch.kernels.MaternKernel(0.5, ard_num_dims=d, batch_shape=b),
    "matern32": lambda d, b: gpytorch.kernels.MaternKernel(1.5, ard_num_dims=d, batch_shape=b),
    "matern52": lambda d, b: gpytorch.kernels.MaternKernel(2.5, ard_num_dims=d, batch_shape=b),
    "periodic": lambda d, b: gpytorch.kernels.PeriodicKernel(ard_num_dims=d, batch_shape=b),
    "rq": lambda d, b: gpytorch.kernels.RQKernel(ard_num_dims=d, batch_shape=b),
    "linear": lambda d, b: gpytorch.kernels.LinearKernel(ard_num_dims=d, batch_shape=b),
}
_ALIASES = {"se": "rbf", "exponential": "matern12"}


def kernel_names() -> list[str]:
    """The base kernel names a formula may use."""
    return sorted(_BASE_KERNELS) + sorted(_ALIASES)


def build_kernel(spec: str, num_features: int, batch_shape: torch.Size | None = None):
    """Build a GPyTorch kernel from a formula such as ``"rbf"`` or ``"rbf*periodic + linear"``.

    Each product term gets its own output scale; terms are summed. Base names:
    ``rbf`` (``se``), ``matern12`` (``exponential``) / ``matern32`` / ``matern52``,
    ``periodic``, ``rq``, ``linear``. Every base kernel has one lengthscale per input
    dimension (ARD).

    Args:
        spec: the formula.
        num_features: input dimension ``d``.
        batch_shape: a batch of independent kernels (one hyperparameter set each).
    """
    batch_shape = torch.Size() if batch_shape is None else torch.Size(batch_shape)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"kernel must be a non-empty formula string; got {spec!r}")
    terms = []
    for term in spec.replace(" ", "").lower().split("+"):
        factors = []
        for name in term.split("*"):
            name = _ALIASES.get(name, name)
            if name not in _BASE_KERNELS:
                raise ValueError(
                    f"unknown kernel {name!r} in {spec!r}; choose from "
                    f"{kernel_names()} joined by '+' and '*'"
                )
            factors.append(_BASE_KERNELS[name](num_features, batch_shape))
        product = factors[0]
        for f in factors[1:]:
            product = product * f
        terms.append(gpytorch.kernels.ScaleKernel(product, batch_shape=batch_shape))
    kernel = terms[0]
    for t in terms[1:]:
        kernel = kernel + t
    return kernel


def batched_covariance(
    spec: str,
    x: torch.Tensor,
    *,
    variance: torch.Tensor,
    lengthscale: torch.Tensor | Sequence[torch.Tensor],
    period: torch.Tensor | None = None,
) -> torch.Tensor:
    """Covariance matrices of ``b`` GPs, each with its own hyperparameters.

    Args:
        spec: one product term, e.g. ``"rbf"``, ``"matern52"``, ``"periodic"`` or
            ``"periodic*rbf"`` (a weakly periodic kernel).
        x: ``(b, n, d)`` inputs, one set per GP.
        variance: ``(b,)`` output scales.
        lengthscale: ``(b,)`` lengthscales shared by every factor (and every input
            dimension), or one ``(b,)`` tensor per factor in the order of ``spec``; in
            the textbook forms ``exp(-r²/(2ℓ²))`` and ``exp(-2 Σ sin²(π|Δ|/p)/ℓ²)``.
        period: ``(b,)`` periods of the periodic factor.

    Returns:
        ``(b, n, n)`` covariances, in ``x``'s dtype.
    """
    if "+" in spec:
        raise ValueError(f"spec must be a single product term; got {spec!r}")
    b, _, d = x.shape
    kernel = build_kernel(spec, d, torch.Size([b])).to(dtype=x.dtype, device=x.device)
    factors = list(getattr(kernel.base_kernel, "kernels", [kernel.base_kernel]))
    if isinstance(lengthscale, torch.Tensor):
        lengthscale = [lengthscale] * len(factors)
    if len(lengthscale) != len(factors):
        raise ValueError(
            f"{spec!r} has {len(factors)} factor(s); got {len(lengthscale)} lengthscales"
        )
    with torch.no_grad():
        for factor, ls in zip(factors, lengthscale, strict=True):
            if isinstance(factor, gpytorch.kernels.PeriodicKernel):
                ls = ls**2  # GPyTorch's periodic kernel divides by its lengthscale unsquared
            if factor.has_lengthscale:
                factor.lengthscale = ls.reshape(b, 1, 1).expand(b, 1, d)
            if isinstance(factor, gpytorch.kernels.LinearKernel):
                # its own variance starts at softplus(0) = 0.69; the output scale is the variance
                factor.variance = torch.ones_like(factor.variance)
            if hasattr(factor, "period_length"):
                if period is None:
                    raise ValueError(f"{spec!r} has a periodic factor: give period=")
                factor.period_length = period.reshape(b, 1, 1).expand(b, 1, d)
        kernel.outputscale = variance.reshape(b)
        return kernel(x).to_dense()


_Hyper = float | tuple[float, float]


class GPSampler:
    """Draws of a zero-mean GP's function values at given inputs.

    The kernel is a single-term formula (``"rbf"``, ``"matern52"``, ``"rbf*periodic"``,
    ...). Its lengthscale and output scale (variance) are either fixed numbers or, for a
    hierarchical GP, drawn per function from log-normal priors given as
    ``(mean of log, sd of log)`` pairs, e.g. Tran et al.'s UCI target
    ``lengthscale=(log(sqrt(2 d)), 1.0)``, ``variance=(0.1, 1.0)``.

    Args:
        kernel: the kernel formula (one product term).
        lengthscale: a positive number, or a ``(loc, scale)`` log-normal prior.
        variance: the output scale; a positive number or a ``(loc, scale)`` prior.
        period: the period of a periodic factor.
        jitter: relative diagonal jitter for the Cholesky factor (escalated on failure).

    Example:
        >>> gp = GPSampler("rbf", lengthscale=0.6, variance=1.0)
        >>> f = gp.sample(x, 128, generator=torch.Generator().manual_seed(0))  # (128, n)
    """

    def __init__(
        self,
        kernel: str = "rbf",
        *,
        lengthscale: _Hyper = 1.0,
        variance: _Hyper = 1.0,
        period: float = 1.0,
        jitter: float = 1e-6,
    ) -> None:
        if "+" in kernel:
            raise ValueError(f"kernel must be a single product term for GPSampler; got {kernel!r}")
        build_kernel(kernel, 1)
        for name, value in (("lengthscale", lengthscale), ("variance", variance)):
            _check_hyper(value, name)
        _check_hyper(period, "period")
        if isinstance(period, tuple | list):
            raise ValueError(f"period must be a positive number; got {period!r}")
        if not jitter >= 0:
            raise ValueError(f"jitter must be non-negative; got {jitter!r}")
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.variance = variance
        self.period = period
        self.jitter = jitter

    @property
    def is_hierarchical(self) -> bool:
        return isinstance(self.lengthscale, tuple | list) or isinstance(self.variance, tuple | list)

    def get_config(self) -> dict:
        return {
            "kernel": self.kernel,
            "lengthscale": self.lengthscale,
            "variance": self.variance,
            "period": self.period,
            "jitter": self.jitter,
        }

    def covariance(
        self, x: torch.Tensor, num: int = 1, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(num, n, n)`` covariance matrices at ``x (n, d)`` in float64, one per
        hyperparameter draw (all equal when nothing is hierarchical)."""
        if x.ndim != 2:
            raise ValueError(f"x must have shape (n, d); got {tuple(x.shape)}")
        x = x.detach().to(torch.float64)
        b = num if self.is_hierarchical else 1
        cov = batched_covariance(
            self.kernel,
            x.expand(b, *x.shape),
            variance=_draw_hyper(self.variance, b, generator),
            lengthscale=_draw_hyper(self.lengthscale, b, generator),
            period=torch.full((b,), float(self.period), dtype=torch.float64),
        )
        return cov.expand(num, *cov.shape[1:])

    def sample(
        self, x: torch.Tensor, num: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(num, n)`` function values at ``x (n, d)``, float64."""
        if not (isinstance(num, int) and num >= 1):
            raise ValueError(f"num must be a positive integer; got {num!r}")
        cov = self.covariance(x, num, generator=generator)
        chol = safe_cholesky(cov[:1] if not self.is_hierarchical else cov, jitter=self.jitter)
        z = torch.randn(num, x.shape[0], 1, generator=generator, dtype=torch.float64)
        return (chol @ z).squeeze(-1)


def _check_hyper(value, name: str) -> None:
    if isinstance(value, tuple | list):
        if len(value) != 2 or not value[1] > 0 or not math.isfinite(value[0]):
            raise ValueError(
                f"{name} prior must be a (loc, scale) pair of log-normal parameters with "
                f"scale > 0; got {value!r}"
            )
    elif not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number or a (loc, scale) pair; got {value!r}")


def _draw_hyper(value, num: int, generator: torch.Generator | None) -> torch.Tensor:
    if isinstance(value, tuple | list):
        z = torch.randn(num, generator=generator, dtype=torch.float64)
        return torch.exp(value[0] + value[1] * z)
    return torch.full((num,), float(value), dtype=torch.float64)
