"""Batched stationary kernels and a jittered Cholesky for drawing GP sample functions.

Every kernel takes inputs ``x`` of shape ``(b, n, d)`` and per-function hyperparameters of
shape ``(b,)`` and returns the ``(b, n, n)`` covariance of each function's inputs. These
are private helpers of :mod:`bayesfn.data.functions`; models use their own kernels.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "matern52_kernel",
    "periodic_kernel",
    "se_kernel",
    "squared_distance",
    "weakly_periodic_kernel",
]


def _col(p: torch.Tensor) -> torch.Tensor:
    """``(b,)`` -> ``(b, 1, 1)`` so a per-function value broadcasts over ``(b, n, n)``."""
    return p[:, None, None]


def squared_distance(x: torch.Tensor) -> torch.Tensor:
    """Exact squared Euclidean distances between the rows of each batch element.

    Args:
        x: ``(b, n, d)`` tensor.

    Returns:
        ``(b, n, n)`` tensor of ``||x_i - x_j||^2`` (summed over ``d`` one input
        dimension at a time, so it is never negative and uses ``O(b n^2)`` memory).
    """
    out = x.new_zeros(x.shape[0], x.shape[1], x.shape[1])
    for k in range(x.shape[2]):
        diff = x[:, :, k, None] - x[:, None, :, k]
        out = out + diff * diff
    return out


def se_kernel(x: torch.Tensor, lengthscale: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """Squared-exponential (RBF) kernel ``v exp(-r^2 / (2 l^2))``.

    Args:
        x: ``(b, n, d)`` inputs.
        lengthscale: ``(b,)`` lengthscales ``l``.
        variance: ``(b,)`` variances ``v``.

    Returns:
        ``(b, n, n)`` covariance.
    """
    return _col(variance) * torch.exp(-0.5 * squared_distance(x) / _col(lengthscale) ** 2)


def matern52_kernel(
    x: torch.Tensor, lengthscale: torch.Tensor, variance: torch.Tensor
) -> torch.Tensor:
    """Matérn-5/2 kernel ``v (1 + s + s^2 / 3) exp(-s)`` with ``s = sqrt(5) r / l``.

    Args:
        x: ``(b, n, d)`` inputs.
        lengthscale: ``(b,)`` lengthscales ``l``.
        variance: ``(b,)`` variances ``v``.

    Returns:
        ``(b, n, n)`` covariance.
    """
    s = math.sqrt(5.0) * squared_distance(x).sqrt() / _col(lengthscale)
    return _col(variance) * (1.0 + s + s * s / 3.0) * torch.exp(-s)


def periodic_kernel(
    x: torch.Tensor, lengthscale: torch.Tensor, variance: torch.Tensor, period: torch.Tensor
) -> torch.Tensor:
    """Periodic (exp-sine-squared) kernel ``v exp(-2 sum_k sin^2(pi |x_k - x'_k| / p) / l^2)``.

    In more than one input dimension the sine terms are summed over dimensions, so the
    function is periodic with period ``p`` along every axis.

    Args:
        x: ``(b, n, d)`` inputs.
        lengthscale: ``(b,)`` lengthscales ``l``.
        variance: ``(b,)`` variances ``v``.
        period: ``(b,)`` periods ``p``.

    Returns:
        ``(b, n, n)`` covariance.
    """
    total = x.new_zeros(x.shape[0], x.shape[1], x.shape[1])
    for k in range(x.shape[2]):
        diff = x[:, :, k, None] - x[:, None, :, k]
        total = total + torch.sin(math.pi * diff / _col(period)) ** 2
    return _col(variance) * torch.exp(-2.0 * total / _col(lengthscale) ** 2)


def weakly_periodic_kernel(
    x: torch.Tensor,
    lengthscale: torch.Tensor,
    variance: torch.Tensor,
    period: torch.Tensor,
    decay_lengthscale: torch.Tensor,
) -> torch.Tensor:
    """Weakly periodic kernel: a periodic kernel times a unit-variance SE envelope.

    ``k = periodic(l, v, p) * exp(-r^2 / (2 m^2))`` with ``m`` the decay lengthscale, so
    the periodic pattern drifts over distances of order ``m`` (the NDP / Gaussian NP
    "weakly periodic" benchmark family).

    Args:
        x: ``(b, n, d)`` inputs.
        lengthscale: ``(b,)`` lengthscales ``l`` of the periodic factor.
        variance: ``(b,)`` variances ``v``.
        period: ``(b,)`` periods ``p``.
        decay_lengthscale: ``(b,)`` SE lengthscales ``m`` of the envelope.

    Returns:
        ``(b, n, n)`` covariance.
    """
    envelope = torch.exp(-0.5 * squared_distance(x) / _col(decay_lengthscale) ** 2)
    return periodic_kernel(x, lengthscale, variance, period) * envelope
