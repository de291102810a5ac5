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

import gpytorch
import torch

from bayesfn._linalg import safe_cholesky

__all__ = ["GPSampler", "build_kernel", "kernel_names"]

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
        jitter: float = 1e-6,
    ) -> None:
        if "+" in kernel:
            raise ValueError(f"kernel must be a single product term for GPSampler; got {kernel!r}")
        build_kernel(kernel, 1)
        for name, value in (("lengthscale", lengthscale), ("variance", variance)):
            _check_hyper(value, name)
        if not jitter >= 0:
            raise ValueError(f"jitter must be non-negative; got {jitter!r}")
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.variance = variance
        self.jitter = jitter

    @property
    def is_hierarchical(self) -> bool:
        return isinstance(self.lengthscale, tuple | list) or isinstance(self.variance, tuple | list)

    def get_config(self) -> dict:
        return {
            "kernel": self.kernel,
            "lengthscale": self.lengthscale,
            "variance": self.variance,
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
        batch = torch.Size([num]) if self.is_hierarchical else torch.Size()
        k = build_kernel(self.kernel, x.shape[-1], batch).to(torch.float64)
        size = (num, 1) if self.is_hierarchical else ()
        ls = _draw_hyper(self.lengthscale, size + (x.shape[-1],), generator)
        var = _draw_hyper(self.variance, (num,) if self.is_hierarchical else (), generator)
        factors = getattr(k.base_kernel, "kernels", [k.base_kernel])
        with torch.no_grad():
            for factor in factors:
                if factor.has_lengthscale:
                    factor.lengthscale = ls.reshape(factor.lengthscale.shape)
                if isinstance(factor, gpytorch.kernels.LinearKernel):
                    # its own variance defaults to softplus(0) = 0.69: the output
                    # scale alone must be the variance
                    factor.variance = torch.ones_like(factor.variance)
            k.outputscale = var.reshape(k.outputscale.shape)
            cov = k(x).to_dense()
        if not self.is_hierarchical:
            cov = cov.expand(num, *cov.shape)
        return cov

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


def _draw_hyper(value, size: tuple, generator: torch.Generator | None) -> torch.Tensor:
    if isinstance(value, tuple | list):
        z = torch.randn(size, generator=generator, dtype=torch.float64)
        return torch.exp(value[0] + value[1] * z)
    return torch.full(size if size else (1,), float(value), dtype=torch.float64)
