"""The linearised entropy of a neural sampler (Uppal et al., NeurIPS 2023, §3).

For ``θ = g(z) + σε`` with ``J_z = ∂g/∂z (d, d₀)``, linearising ``g`` around the ``z``
that generated ``θ`` makes ``q`` locally ``N(g(z), J_z J_zᵀ + σ²I_d)``; by the matrix
determinant lemma its entropy is

``H ≈ d/2 log(2πe) + (d − d₀)/2 log σ² + E_z[½ log det(J_zᵀ J_z + σ² I_{d₀})]``.

This module computes the last term per noise sample:

* :func:`exact_half_logdet`: the Jacobian by forward mode (``d₀`` JVPs, ``(K, d, d₀)`` in
  memory), the ``d₀ × d₀`` Gram matrix in float64 and its Cholesky factor. For small
  networks.
* :func:`half_logdet_lower_bound`: the paper's bound
  ``½ Σ_i log(s_i² + σ²) ≥ (d₀/2) log(s_min² + σ²)``, with ``s_min`` of ``J_z`` found by
  :func:`smallest_singular_value`, which touches ``J_z`` only through JVPs and VJPs, so
  memory stays linear in ``d``. (The official code writes ``d₀ log(s_min + σ²)``; we use
  the bound as derived.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "entropy_constant",
    "exact_half_logdet",
    "half_logdet_lower_bound",
    "smallest_singular_value",
]


def entropy_constant(num_weights: int, noise_dim: int, sigma: float) -> float:
    """``d/2 log(2πe) + (d − d₀)/2 log σ²``: the part of the linearised entropy that does
    not depend on the generator."""
    return 0.5 * num_weights * math.log(2 * math.pi * math.e) + (
        num_weights - noise_dim
    ) * math.log(sigma)


def exact_half_logdet(
    fn: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    sigma: float,
    metric: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``g(z)`` and ``½ log det(J_zᵀ J_z + σ² I)`` for each row of ``z``.

    Args:
        fn: the generator, mapping ``(d₀,)`` to ``(d,)`` (and rows of a batch alike).
        z: ``(K, d₀)`` noise.
        sigma: the output noise ``σ > 0``.
        metric: as for :func:`half_logdet_lower_bound`: ``fn`` gives features ``t`` of
            a generator ``A t`` with ``A`` linear and ``metric(t) = AᵀA t``; then
            ``JᵀJ = J_tᵀ AᵀA J_t`` with the features' Jacobian ``J_t``.

    Returns:
        ``fn(z)`` (``g(z) (K, d)``, or the features) and ``(K,)`` half
        log-determinants, both differentiable with respect to whatever ``fn`` closes over.
        The Gram matrix and its Cholesky factor are float64; a factorisation failure
        gives NaN (never silently a wrong value).
    """

    def jac_and_value(zk: torch.Tensor):
        out = fn(zk)
        return out, out

    jac, out = torch.func.vmap(torch.func.jacfwd(jac_and_value, has_aux=True))(z)
    if metric is None:
        jac = jac.to(torch.float64)  # (K, d, d0)
        gram = jac.transpose(-1, -2) @ jac
    else:  # (K, n, d0) features' Jacobian; AᵀA applied to each of its d0 columns
        weighted = metric(jac.transpose(-1, -2)).to(torch.float64)  # (K, d0, n)
        gram = weighted @ jac.to(torch.float64)
        gram = 0.5 * (gram + gram.transpose(-1, -2))
    gram = gram + sigma**2 * torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    chol, info = torch.linalg.cholesky_ex(gram)
    half = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    half = torch.where(info == 0, half, torch.full_like(half, math.nan))
    return out, half.to(out.dtype)


def _normalise(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny ** 0.5)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1, dtype=torch.float64)


def _pairwise(vectors: list[torch.Tensor], inner=_dot) -> torch.Tensor:
    """``(K, m, m)`` float64 inner products of ``m`` batches of vectors ``(K, n)``."""
    m = len(vectors)
    out = vectors[0].new_zeros(vectors[0].shape[0], m, m, dtype=torch.float64)
    for i in range(m):
        for j in range(i, m):
            dot = inner(vectors[i], vectors[j])
            out[:, i, j] = dot
            out[:, j, i] = dot
    return out


def _combine(vectors: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """``Σ_i coef[:, i] vectors[i]`` for ``(K, n)`` vectors and ``(K, m)`` coefficients."""
    out = vectors[0] * coef[:, :1]
    for i in range(1, len(vectors)):
        out = out.addcmul_(vectors[i], coef[:, i : i + 1])
    return out


def smallest_singular_value(
    jvp: Callable[[torch.Tensor], torch.Tensor],
    vjp: Callable[[torch.Tensor], torch.Tensor],
    v0: torch.Tensor,
    num_iters: int = 5,
    metric: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest singular value of ``K`` tall matrices ``J_k (d, d₀)``, ``d ≥ d₀``,
    given only their products, by a block-3 LOBPCG on ``JᵀJ``.

    Each iteration takes one VJP (the residual ``r = JᵀJv − μ²v``) and one JVP (``J r``),
    then a Rayleigh–Ritz step on ``span{v, r, p}`` (``p`` the previous search direction),
    solved as a 3 × 3 float64 eigenproblem. Products with ``v`` and ``p`` are kept and
    updated by linearity, never recomputed. A nearly dependent basis is handled by
    dropping its null directions (no SVD that can fail); a row whose update is not
    finite keeps its previous vector.

    Args:
        jvp: ``V (K, d₀) -> (J_k v_k)_k (K, d)``.
        vjp: ``U (K, d) -> (J_kᵀ u_k)_k (K, d₀)``.
        v0: ``(K, d₀)`` starting vectors (random, or a warm start).
        num_iters: iterations.
        metric: when given, ``J = A J'`` is known through ``jvp = J'`` and ``vjp = J'ᵀ``
            (features ``(K, n)``) and ``metric = AᵀA`` on them: products become
            ``⟨t, AᵀA t'⟩`` and ``JᵀJ v = J'ᵀ AᵀA J' v``.

    Returns:
        ``s (K,)``: ``‖J v‖`` at the final unit vectors, always ``≥ s_min`` (a Rayleigh
        quotient), equal to it at convergence; and those vectors ``v (K, d₀)``.
    """
    if metric is None:
        inner, gram_vjp = _dot, vjp
    else:
        # images carry (t, AᵀA t) side by side: AᵀA is applied once per new image, and
        # the linear updates below keep the pair consistent
        feature_jvp = jvp

        def jvp(v: torch.Tensor) -> torch.Tensor:
            t = feature_jvp(v)
            return torch.cat([t, metric(t)], -1)

        def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            n = a.shape[-1] // 2
            return _dot(a[..., :n], b[..., n:])

        def gram_vjp(u: torch.Tensor) -> torch.Tensor:
            return vjp(u[..., u.shape[-1] // 2 :])

    v = _normalise(v0)
    jv = jvp(v)
    p = jp = None
    for _ in range(num_iters):
        mu2 = inner(jv, jv).unsqueeze(-1).to(v.dtype)
        r = _normalise(gram_vjp(jv) - mu2 * v)
        jr = jvp(r)
        basis = [v, r] if p is None else [v, r, p]
        images = [jv, jr] if jp is None else [jv, jr, jp]
        # m x m Gram matrices (float64 sums; no (K, d, m) stack: memory stays ~ d)
        gram, proj = _pairwise(basis), _pairwise(images, inner)
        # rows with non-finite products get a harmless problem and keep their vectors
        finite = (torch.isfinite(gram).all(-1) & torch.isfinite(proj).all(-1)).all(-1)
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        gram = torch.where(finite[:, None, None], gram, eye)
        proj = torch.where(finite[:, None, None], proj, eye)
        # orthonormalise through gram's eigendecomposition, dropping null directions
        g_val, g_vec = torch.linalg.eigh(gram)
        keep = g_val > 1e-10 * g_val[..., -1:]
        scale = torch.where(keep, g_val.clamp_min(1e-300).rsqrt(), torch.zeros_like(g_val))
        w = g_vec * scale.unsqueeze(-2)  # (K, m, m); dropped columns are zero
        reduced = w.transpose(-1, -2) @ proj @ w
        big = (proj.diagonal(dim1=-2, dim2=-1).sum(-1, keepdim=True) + 1.0) * 1e6
        reduced = reduced + torch.diag_embed(torch.where(keep, torch.zeros_like(g_val), big))
        _, e_vec = torch.linalg.eigh(reduced)
        c = w @ e_vec[..., :1]  # (K, m, 1): coefficients of the Ritz vector
        norm = (c.transpose(-1, -2) @ gram @ c).squeeze(-1).clamp_min(1e-300).sqrt()  # ‖V c‖
        c = (c.squeeze(-1) / norm).to(v.dtype)  # (K, m)
        new_v, new_jv = _combine(basis, c), _combine(images, c)
        # the new search direction: the Ritz vector's part outside v, summed from the
        # other basis vectors (not new_v - c_v v, which cancels near convergence)
        new_p, new_jp = _combine(basis[1:], c[:, 1:]), _combine(images[1:], c[:, 1:])
        p_norm = new_p.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny ** 0.5)
        new_p, new_jp = new_p / p_norm, new_jp / p_norm
        ok = (finite & torch.isfinite(new_v).all(-1) & torch.isfinite(new_jv).all(-1)).unsqueeze(-1)
        v = torch.where(ok, new_v, v)
        jv = torch.where(ok, new_jv, jv)
        ok_p = ok & torch.isfinite(new_p).all(-1, keepdim=True)
        p = torch.where(ok_p, new_p, torch.zeros_like(new_p))
        jp = torch.where(ok_p, new_jp, torch.zeros_like(new_jp))
    return inner(jv, jv).sqrt().to(v.dtype), v


def half_logdet_lower_bound(
    fn: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    sigma: float,
    *,
    num_iters: int = 5,
    v0: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    metric: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``g(z)``, ``(d₀/2) log(s_min(J_z)² + σ²)`` and the singular vectors found.

    The solver runs on detached products (:func:`smallest_singular_value`); the value
    and its gradient come from one differentiable JVP, ``s = ‖J_z v*‖`` with ``v*``
    fixed, which at a singular pair has the gradient of ``s_min`` (``∂s = u*ᵀ ∂J v*``).

    Safe fallback: a row whose estimate is not finite gets ``s = 0``, i.e. the bound
    ``(d₀/2) log σ²``, which holds for any ``J`` (with no gradient through it).

    An unconverged solver returns ``‖J v‖ ≥ s_min``, so the value is then an estimate of
    the bound from above; :func:`exact_half_logdet` is the reference on small problems.

    Args:
        fn: the generator, row by row on ``(K, d₀) -> (K, d)``.
        z: ``(K, d₀)`` noise.
        sigma: the output noise.
        num_iters: solver iterations (the official code uses 5, from a random start).
        v0: ``(K, d₀)`` warm start; random normal when ``None``.
        generator: for the random start.
        metric: for a generator ``g = A ∘ fn`` whose last map ``A`` is linear:
            ``fn`` gives the features and ``metric(t) = AᵀA t`` (e.g.
            :meth:`~bayesfn.bayesnn.inference.samplers.MatrixSampler.metric`); every
            product then avoids the ``d``-dimensional output.

    Returns:
        ``fn(z)`` (``g(z) (K, d)``, or the features with ``metric``), the bound
        ``(K,)`` and ``v* (K, d₀)`` (detached).
    """
    zd = z.detach()
    if v0 is None:
        v0 = torch.randn(zd.shape, generator=generator, dtype=zd.dtype, device=zd.device)
    with torch.no_grad():
        _, vjp_fn = torch.func.vjp(fn, zd)

        def jvp(v: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(fn, (zd,), (v,))[1]

        def vjp(u: torch.Tensor) -> torch.Tensor:
            return vjp_fn(u)[0]

        _, v = smallest_singular_value(jvp, vjp, v0, num_iters, metric)
    out, jv = torch.func.jvp(fn, (zd,), (v,))
    s = jv.norm(dim=-1) if metric is None else (jv * metric(jv)).sum(-1).clamp_min(0).sqrt()
    finite = torch.isfinite(s)
    s = torch.where(finite, s, torch.zeros_like(s))
    bound = 0.5 * z.shape[-1] * torch.log(s**2 + sigma**2)
    return out, bound, v
