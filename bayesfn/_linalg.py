"""Numerically careful linear algebra shared by the GP, Student-t, NNGP and data code."""

from __future__ import annotations

import math

import torch

__all__ = [
    "CholeskyError",
    "available_memory",
    "check_allocation",
    "gaussian_log_likelihood",
    "posterior_covariance_",
    "quad_logdet",
    "safe_cholesky",
]


class CholeskyError(RuntimeError):
    """Raised when a matrix stays non positive-definite after every jitter level."""


def available_memory(device: torch.device | str) -> int | None:
    """Bytes that can still be allocated on ``device`` (``None`` where unknown): free GPU
    memory on CUDA, ``MemAvailable`` of ``/proc/meminfo`` on a Linux CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_allocation(
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    what: str,
    way_out: str,
    copies: int = 1,
) -> None:
    """Raise a ``MemoryError`` naming ``what``, its size and ``way_out`` when ``copies``
    tensors of ``shape`` cannot fit in the memory ``device`` has left.

    A clear message before the allocation replaces the allocator's raw error after it
    (or the swapping that precedes it on a CPU).
    """
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size() * copies
    free = available_memory(device)
    if free is not None and nbytes > free:
        raise MemoryError(
            f"{what} of shape {tuple(shape)} needs {nbytes / 2**30:.1f} GiB "
            f"({copies} cop{'y' if copies == 1 else 'ies'} in {str(dtype).removeprefix('torch.')})"
            f" but {torch.device(device)} has {free / 2**30:.1f} GiB available; {way_out}"
        )


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
    eps = jitter * scale
    base = 1e-10 if matrix.dtype == torch.float64 else 1e-6
    for attempt in range(max_tries + 1):
        if attempt == 0 and not bool((eps != 0).any()):
            shifted = matrix  # no copy of an n x n matrix when no jitter is due
        else:  # one copy, jitter on its diagonal (never an n x n identity)
            shifted = matrix.clone()
            shifted.diagonal(dim1=-2, dim2=-1).add_(eps.unsqueeze(-1))
        factor, info = torch.linalg.cholesky_ex(shifted)
        del shifted
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
            # ½ g (ααᵀ − K⁻¹), built in the one n x n buffer of the inverse
            n = alpha.shape[-1]
            grad_cov = torch.cholesky_inverse(chol).mul_(-0.5 * g.unsqueeze(-1))
            half = (0.5 * g * alpha).reshape(-1, n, 1)
            grad_cov.view(-1, n, n).baddbmm_(half, alpha.reshape(-1, 1, n))
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


class _QuadLogdet(torch.autograd.Function):
    """``q = Σⱼ yⱼᵀC⁻¹yⱼ`` and ``log|C|`` with closed-form gradients ``−ααᵀ`` and
    ``C⁻¹`` w.r.t. ``C`` (``α = C⁻¹Y``), built in one ``n x n`` buffer."""

    @staticmethod
    def forward(ctx, cov: torch.Tensor, y: torch.Tensor, name: str):
        chol = safe_cholesky(cov, name=name)
        alpha = torch.cholesky_solve(y, chol)
        q = (y * alpha).sum()
        logdet = 2 * chol.diagonal().log().sum()
        ctx.save_for_backward(chol, alpha)
        ctx.mark_non_differentiable(chol, alpha)
        return q, logdet, chol, alpha

    @staticmethod
    def backward(ctx, grad_q, grad_logdet, _grad_chol, _grad_alpha):
        chol, alpha = ctx.saved_tensors
        grad_cov = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_cov = torch.cholesky_inverse(chol).mul_(grad_logdet)
            grad_cov.addmm_(alpha, alpha.mT, alpha=-float(grad_q))
        if ctx.needs_input_grad[1]:
            grad_y = 2 * grad_q * alpha
        return grad_cov, grad_y, None


def quad_logdet(
    cov: torch.Tensor, y: torch.Tensor, *, name: str = "covariance"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two ``σ²``-free summaries of Gaussian data ``Y`` under covariance ``C``.

    Args:
        cov: ``n x n`` covariance ``C``.
        y: ``n x m`` data (``m`` columns sharing ``C``).
        name: what to call the matrix in a Cholesky error.

    Returns:
        ``(q, logdet, chol, alpha)``: ``q = Σⱼ yⱼᵀC⁻¹yⱼ`` and ``log|C|`` (scalars,
        differentiable in ``cov`` and ``y`` with closed-form gradients that need one
        ``n x n`` buffer instead of autograd through the factorisation), the Cholesky
        factor and ``α = C⁻¹Y`` (not differentiable).
    """
    return _QuadLogdet.apply(cov, y, name)


def posterior_covariance_(prior: torch.Tensor, v: torch.Tensor, *, tile: int = 512) -> torch.Tensor:
    """``prior − vᵀv``, made exactly symmetric, written into ``prior``'s own memory.

    The predictive covariance of a Gaussian conditional (``v = L⁻¹K(X, X*)``) without an
    ``n* x n*`` temporary: the product is accumulated into ``prior`` by the BLAS call
    itself, and the two triangles are averaged one ``tile x tile`` block pair at a time,
    so that the only extra memory is two such blocks.

    Args:
        prior: ``(..., n*, n*)`` symmetric prior covariance, contiguous; overwritten.
        v: ``(..., n, n*)``, broadcastable to ``prior``'s batch.
        tile: side of the blocks of the symmetrisation.

    Returns:
        ``prior``, now holding the posterior covariance.
    """
    ns = prior.shape[-1]
    flat = prior.view(-1, ns, ns)
    vv = v.expand(prior.shape[:-2] + v.shape[-2:]).reshape(-1, v.shape[-2], ns)
    flat.baddbmm_(vv.mT, vv, alpha=-1)
    for i in range(0, ns, tile):
        for j in range(i, ns, tile):
            upper, lower = flat[:, i : i + tile, j : j + tile], flat[:, j : j + tile, i : i + tile]
            mean = (upper + lower.mT).mul_(0.5)
            upper.copy_(mean)
            lower.copy_(mean.mT)
    return prior
