"""Numerically careful linear algebra shared by the GP, Student-t, NNGP and data code."""

from __future__ import annotations

import math

import torch

__all__ = ["CholeskyError", "gaussian_log_likelihood", "safe_cholesky"]


class CholeskyError(RuntimeError):
    """Raised when a matrix stays non positive-definite after every jitter level."""


def safe_cholesky(
    matrix: torch.Tensor,
    *,
    jitter: float = 0.0,
    max_tries: int = 6,
    name: str = "matrix",
) -> torch.Tensor:
    """Lower Cholesky factor, adding escalating diagonal jitter only where needed.

    Each batch element is factorised on its own footing: ``jitter`` times its mean
    diagonal is always added (0 by default, so well-conditioned matrices are factorised
    exactly); an element that still fails gets ``1e-10`` (float64) or ``1e-6``
    (float32) relative jitter, growing tenfold per try, while the others keep theirs.

    Args:
        matrix: a ``batch x N x N`` symmetric tensor.
        jitter: relative jitter always added (e.g. for sampling from a kernel matrix).
        max_tries: how many escalating jitter levels to try after the first attempt.
        name: what to call the matrix in the error message.

    Returns:
        A ``batch x N x N`` lower-triangular tensor ``L`` with ``L Lᵀ ≈ matrix``.
    """
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(
            f"{name} must be a square matrix (..., N, N); got shape {tuple(matrix.shape)}"
        )
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or inf; cannot take its Cholesky factor")
    scale = matrix.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-30)
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    eps = jitter * scale
    base = 1e-10 if matrix.dtype == torch.float64 else 1e-6
    for attempt in range(max_tries + 1):
        factor, info = torch.linalg.cholesky_ex(matrix + eps[..., None, None] * eye)
        failed = info != 0
        if not failed.any():
            return factor
        level = max(base * 10**attempt, jitter * 10 ** (attempt + 1))
        eps = torch.where(failed, level * scale, eps)
    raise CholeskyError(
        f"{name} of shape {tuple(matrix.shape)}: {int(failed.sum())} matrix(es) not "
        f"positive-definite even with jitter {level:.1e} x mean diagonal; check for "
        "duplicated inputs with zero noise or a degenerate kernel"
    )


class _GaussianLogLikelihood(torch.autograd.Function):
    """``log N(r; 0, K)`` with the closed-form gradient ``½(ααᵀ − K⁻¹)`` w.r.t. ``K``.

    Autograd through a Cholesky factorisation costs several extra ``O(n³)`` passes; the
    closed form needs one ``cholesky_inverse`` of the factor we already hold.
    """

    @staticmethod
    def forward(ctx, cov: torch.Tensor, resid: torch.Tensor, name: str) -> torch.Tensor:
        chol = safe_cholesky(cov, name=name)
        alpha = torch.cholesky_solve(resid.unsqueeze(-1), chol).squeeze(-1)
        n = resid.shape[-1]
        half_logdet = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        ctx.save_for_backward(chol, alpha)
        return -0.5 * (resid * alpha).sum(-1) - half_logdet - 0.5 * n * math.log(2 * math.pi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        chol, alpha = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        grad_cov = None
        if ctx.needs_input_grad[0]:
            outer = alpha.unsqueeze(-1) * alpha.unsqueeze(-2)
            grad_cov = 0.5 * g.unsqueeze(-1) * (outer - torch.cholesky_inverse(chol))
        grad_resid = -g * alpha if ctx.needs_input_grad[1] else None
        return grad_cov, grad_resid, None


def gaussian_log_likelihood(
    cov: torch.Tensor, resid: torch.Tensor, *, name: str = "covariance"
) -> torch.Tensor:
    """Log density of zero-mean Gaussians at ``resid``, differentiable in both arguments.

    Args:
        cov: ``batch x n x n`` covariance matrices.
        resid: ``batch x n`` residuals ``y − μ``.
        name: what to call the matrix in a Cholesky error.

    Returns:
        ``batch`` log densities ``−½ rᵀK⁻¹r − ½ log|K| − (n/2) log 2π``.
    """
    return _GaussianLogLikelihood.apply(cov, resid, name)
