"""Numerically careful linear algebra shared by the GP, Student-t and NNGP code."""

from __future__ import annotations

import torch

__all__ = ["CholeskyError", "safe_cholesky"]


class CholeskyError(RuntimeError):
    """Raised when a matrix stays non positive-definite after every jitter level."""


def safe_cholesky(
    matrix: torch.Tensor, *, max_tries: int = 6, name: str = "matrix"
) -> torch.Tensor:
    """Lower Cholesky factor, adding escalating diagonal jitter only when needed.

    The jitter starts at ``1e-10`` (float64) or ``1e-6`` (float32) times the mean
    diagonal and grows tenfold per try, so well-conditioned matrices are factorised
    exactly.

    Args:
        matrix: a ``batch x N x N`` symmetric tensor.
        max_tries: how many jitter levels to try after the plain factorisation.
        name: what to call the matrix in the error message.

    Returns:
        A ``batch x N x N`` lower-triangular tensor ``L`` with ``L Lᵀ ≈ matrix``.
    """
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"{name} must be a square matrix (..., N, N); got shape {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or inf; cannot take its Cholesky factor")
    factor, info = torch.linalg.cholesky_ex(matrix)
    if not info.any():
        return factor
    diag_mean = matrix.diagonal(dim1=-2, dim2=-1).abs().mean(-1, keepdim=True).clamp_min(1e-30)
    base = 1e-10 if matrix.dtype == torch.float64 else 1e-6
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    for attempt in range(max_tries):
        jitter = base * 10**attempt * diag_mean
        factor, info = torch.linalg.cholesky_ex(matrix + jitter.unsqueeze(-1) * eye)
        if not info.any():
            return factor
    raise CholeskyError(
        f"{name} of shape {tuple(matrix.shape)} is not positive-definite even with "
        f"jitter {base * 10 ** (max_tries - 1):.1e} x mean diagonal; check for duplicated "
        "inputs with zero noise or a degenerate kernel"
    )
