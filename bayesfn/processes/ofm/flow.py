"""Flow matching between a Gaussian-process reference and data, in function space.

* :class:`GaussianReference` (Cholesky, any points) and :class:`SpectralReference`
  (FFT, regular 1-D / 2-D grids, periodic) are the reference measure ``ν₀``: a
  zero-mean GP with ``c`` independent channels (Matérn-½, ``ℓ = 0.01`` by default, as
  in the paper), with draws, whitening ``a = L z`` and the exact log density.
* :func:`ot_pairing`: minibatch optimal transport, the exact assignment between
  reference and data draws for the squared Euclidean cost on grid values.
* :func:`interpolate`: the linear path ``x_t = t x₁ + (1 − t) x₀ + σ_min ξ`` and its
  target velocity ``x₁ − x₀``.
* :func:`odeint`: an adaptive Dormand–Prince 5(4) solver (or fixed-step RK4) for
  tuples of tensors, forward or backward in time.
* :func:`log_density`: the exact density of function values by the instantaneous
  change of variables, ``log p₁(u) = log ν₀(x₀) − ∫₀¹ tr ∂v/∂x (x_t, t) dt``, where
  ``x_t`` solves the ODE backward from ``x₁ = u``; the trace exactly (one batched
  vector–Jacobian product per coordinate) or by Hutchinson's estimator.

A *field* is a callable ``field(t, x)`` taking a 0-d time tensor and states ``x``
``(B, n, c)`` and returning velocities of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from bayesfn._linalg import safe_cholesky
from bayesfn.covariance import GPSampler, build_kernel

__all__ = [
    "GaussianReference",
    "SpectralReference",
    "interpolate",
    "log_density",
    "odeint",
    "ot_pairing",
]

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------- references
class GaussianReference:
    """A zero-mean GP on ``n`` fixed points with ``c`` independent channels (Cholesky).

    Args:
        x: ``(n, d)`` points.
        channels: ``c``.
        kernel: a single-term kernel formula (:func:`bayesfn.covariance.build_kernel`).
        lengthscale: the kernel's hyperparameters.
        variance: as ``lengthscale`` (described together above).
        jitter: relative diagonal jitter of the Cholesky factor (part of the measure:
            the density is that of ``N(0, K + jitter·mean(diag K)·I)``).

    Attributes:
        chol: ``(n, n)`` float64 lower Cholesky factor ``L``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        channels: int = 1,
        *,
        kernel: str = "matern12",
        lengthscale: float = 0.01,
        variance: float = 1.0,
        jitter: float = 1e-6,
    ) -> None:
        if x.ndim != 2:
            raise ValueError(f"x must have shape (n, d); got {tuple(x.shape)}")
        sampler = GPSampler(kernel, lengthscale=lengthscale, variance=variance, jitter=jitter)
        cov = sampler.covariance(x.detach().cpu().double(), 1)[0]
        eps = jitter * cov.diagonal().mean()
        cov = cov + eps * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.chol = safe_cholesky(cov, name="reference covariance").to(x.device)
        self.n, self.channels = x.shape[0], channels
        self.half_logdet = float(self.chol.diagonal().log().sum())

    def color(self, z: torch.Tensor) -> torch.Tensor:
        """``a = L z`` for white ``z`` ``(..., n, c)``, in ``z``'s dtype."""
        return self.chol.to(z.dtype) @ z

    def whiten(self, a: torch.Tensor) -> torch.Tensor:
        """``z = L⁻¹ a`` for ``a`` ``(..., n, c)``."""
        chol = self.chol.to(a.dtype)
        return torch.linalg.solve_triangular(chol, a, upper=False)

    def sample(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``(num, n, c)`` draws (computed in float64, returned in ``dtype``)."""
        # drawn on the CPU, so that a CPU generator seeds draws for any device
        z = torch.randn(num, self.n, self.channels, generator=generator, dtype=torch.float64)
        return self.color(z.to(self.chol.device)).to(dtype)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """Log density of ``a`` ``(..., n, c)``, float64, shape ``(...)``."""
        z = self.whiten(a.double())
        size = self.n * self.channels
        return (
            -0.5 * z.square().sum((-2, -1))
            - self.channels * self.half_logdet
            - 0.5 * size * _LOG_2PI
        )


class SpectralReference:
    """A zero-mean *periodic* stationary GP on a regular 1-D or 2-D grid, by FFT.

    The covariance between grid points is the kernel evaluated at the displacement
    wrapped around the grid (a torus whose side is the grid length plus one spacing),
    so the covariance matrix is (block-)circulant and diagonalised by the discrete
    Fourier transform: draws, whitening and the log density cost ``O(n log n)``
    instead of a Cholesky factor's ``O(n³)``. Eigenvalues below ``1e-10`` of the largest
    are raised to that floor (the wrapped Matérn kernel is positive definite in
    practice; the floor only guards round-off).

    Args:
        grid: the grid shape, ``(n₁,)`` or ``(n₁, n₂)``; points ordered row-major.
        channels: ``c``.
        kernel: as in :class:`GaussianReference`; positions are
            ``linspace(0, 1, nᵢ)`` along each axis.
        lengthscale: as ``kernel`` (described together above).
        variance: as ``kernel`` (described together above).
    """

    def __init__(
        self,
        grid: tuple[int, ...],
        channels: int = 1,
        *,
        kernel: str = "matern12",
        lengthscale: float = 0.01,
        variance: float = 1.0,
    ) -> None:
        grid = tuple(int(g) for g in grid)
        if len(grid) not in (1, 2) or any(g < 2 for g in grid):
            raise ValueError(f"grid must be (n1,) or (n1, n2) with sizes >= 2; got {grid}")
        self.grid, self.channels = grid, channels
        self.n = math.prod(grid)
        axes = []
        for g in grid:
            idx = torch.arange(g, dtype=torch.float64)
            axes.append(torch.minimum(idx, g - idx) / (g - 1))  # wrapped displacement
        disp = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid))
        k = build_kernel(kernel, len(grid)).to(torch.float64)
        with torch.no_grad():
            k.base_kernel.lengthscale = torch.full_like(k.base_kernel.lengthscale, lengthscale)
            k.outputscale = torch.tensor(float(variance), dtype=torch.float64)
            row = k(torch.zeros(1, len(grid), dtype=torch.float64), disp).to_dense()[0]
        eig = torch.fft.fftn(row.reshape(grid)).real
        self.eig = eig.clamp_min(1e-10 * eig.max())
        self.half_logdet = 0.5 * float(self.eig.log().sum())

    def _apply(self, v: torch.Tensor, power: float) -> torch.Tensor:
        dims = tuple(range(-len(self.grid) - 1, -1))
        shaped = v.reshape(*v.shape[:-2], *self.grid, v.shape[-1])
        spec = torch.fft.fftn(shaped, dim=dims)
        scale = self.eig.to(v.device).pow(power)[..., None]
        out = torch.fft.ifftn(spec * scale, dim=dims).real
        return out.reshape(v.shape).to(v.dtype)

    def color(self, z: torch.Tensor) -> torch.Tensor:
        """``a = C^½ z`` for white ``z`` ``(..., n, c)``."""
        return self._apply(z, 0.5)

    def whiten(self, a: torch.Tensor) -> torch.Tensor:
        """``z = C^-½ a``."""
        return self._apply(a, -0.5)

    def sample(
        self,
        num: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``(num, n, c)`` draws."""
        z = torch.randn(num, self.n, self.channels, generator=generator, dtype=torch.float64)
        return self.color(z).to(dtype)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """Log density of ``a`` ``(..., n, c)``, float64, shape ``(...)``."""
        z = self.whiten(a.double())
        size = self.n * self.channels
        return (
            -0.5 * z.square().sum((-2, -1))
            - self.channels * self.half_logdet
            - 0.5 * size * _LOG_2PI
        )


# ------------------------------------------------------------ coupling, path
def ot_pairing(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Reorder the reference draws ``x0`` so that ``x0[i]`` is paired with ``x1[i]`` by
    the exact optimal assignment for the squared Euclidean cost (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`; a permutation, no duplicated pairs).

    Args:
        x0: ``(B, ...)`` reference draws.
        x1: ``(B, ...)`` data draws.

    Returns:
        ``x0`` permuted along dim 0.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape; got {x0.shape} and {x1.shape}")
    cost = torch.cdist(x0.detach().flatten(1).double(), x1.detach().flatten(1).double())
    rows, cols = linear_sum_assignment(cost.square().cpu().numpy())
    perm = np.empty_like(rows)
    perm[cols] = rows
    return x0[torch.as_tensor(perm, device=x0.device)]


def interpolate(
    x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma_min: float, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear path and its velocity.

    Args:
        x0: ``(B, ...)`` paired reference and data draws.
        x1: as ``x0`` (described together above).
        t: ``(B,)`` times in ``[0, 1]``.
        sigma_min: the path's width (the paper's 1e-4).
        noise: ``(B, ...)`` a reference draw ``ξ``.

    Returns:
        ``(x_t, x₁ − x₀)``.
    """
    tt = t.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return tt * x1 + (1 - tt) * x0 + sigma_min * noise, x1 - x0


# -------------------------------------------------------------------- solver
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (*_A[6], 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_ERR = tuple(a - b for a, b in zip(_B5, _B4, strict=True))

State = tuple[torch.Tensor, ...]


def _combine(y: State, h: float, ks: list[State], coeffs) -> State:
    out = []
    for i, yi in enumerate(y):
        acc = yi
        for c, k in zip(coeffs, ks, strict=False):
            if c != 0.0:
                acc = acc + (h * c) * k[i]
        out.append(acc)
    return tuple(out)


def odeint(
    f: Callable[[torch.Tensor, State], State],
    y0: State,
    t0: float,
    t1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int = 20,
    max_steps: int = 10_000,
) -> tuple[State, int]:
    """Solve ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` (either direction).

    Args:
        f: maps a 0-d time tensor and a tuple of tensors to their derivatives.
        y0: the initial tuple of tensors.
        method: ``"dopri5"`` (adaptive Dormand–Prince 5(4), error per tensor measured
            as the RMS of ``err / (atol + rtol·max(|y|, |y_new|))``, the largest over
            the tuple) or ``"rk4"`` (``steps`` fixed classical Runge–Kutta steps;
            deterministic and differentiable, what the posterior samplers use) or
            ``"euler"``.
        max_steps: the adaptive solver stops with an error after this many attempts.

    Returns:
        ``(y(t1), number of evaluations of f)``.
    """
    dtype = y0[0].dtype
    device = y0[0].device

    def tens(t: float) -> torch.Tensor:
        return torch.tensor(t, dtype=dtype, device=device)

    if method in ("rk4", "euler"):
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive int; got {steps!r}")
        h = (t1 - t0) / steps
        y, t = y0, t0
        for _ in range(steps):
            k1 = f(tens(t), y)
            if method == "euler":
                y = _combine(y, h, [k1], (1.0,))
            else:
                k2 = f(tens(t + h / 2), _combine(y, h / 2, [k1], (1.0,)))
                k3 = f(tens(t + h / 2), _combine(y, h / 2, [k2], (1.0,)))
                k4 = f(tens(t + h), _combine(y, h, [k3], (1.0,)))
                y = _combine(y, h, [k1, k2, k3, k4], (1 / 6, 1 / 3, 1 / 3, 1 / 6))
            t = t0 + (t1 - t0) * (_ + 1) / steps
        return y, steps * (1 if method == "euler" else 4)
    if method != "dopri5":
        raise ValueError(f"method must be 'dopri5', 'rk4' or 'euler'; got {method!r}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive; got {rtol}, {atol}")
    span = t1 - t0
    direction = 1.0 if span >= 0 else -1.0
    t, y = t0, y0
    k_first = f(tens(t), y)
    nfe = 1
    h = direction * min(abs(span), 0.05)
    for _ in range(max_steps):
        if direction * (t1 - t) <= 1e-12 * max(1.0, abs(span)):
            return y, nfe
        if direction * (t + h - t1) > 0:
            h = t1 - t
        ks: list[State] = [k_first]
        for i in range(1, 7):
            ks.append(f(tens(t + _C[i] * h), _combine(y, h, ks, _A[i])))
        nfe += 6
        y_new = _combine(y, h, ks, _B5)
        err = _combine(tuple(torch.zeros_like(v) for v in y), h, ks, _ERR)
        ratio = 0.0
        for e, a, b in zip(err, y, y_new, strict=True):
            scale = atol + rtol * torch.maximum(a.abs(), b.abs())
            ratio = max(ratio, float((e / scale).square().mean().sqrt()))
        if ratio <= 1.0:
            t, y, k_first = t + h, y_new, ks[6]
        factor = 10.0 if ratio == 0 else min(10.0, max(0.2, 0.9 * ratio ** (-0.2)))
        h = h * factor
    raise RuntimeError(
        f"odeint: no convergence in {max_steps} steps (rtol={rtol}, atol={atol}); the "
        "vector field may be stiff or non-finite"
    )


# ------------------------------------------------------------------- density
def _divergence(
    v: torch.Tensor, x: torch.Tensor, probes: torch.Tensor | None, chunk: int
) -> torch.Tensor:
    """``tr ∂v/∂x`` per batch element, ``(B,)``: exact (``probes=None``, one batched
    VJP per coordinate) or Hutchinson's ``mean_p εᵀ(∂v/∂x)ε`` with ``probes``
    ``(P, B, n, c)``."""
    b = x.shape[0]
    if probes is not None:
        (g,) = torch.autograd.grad(v, x, probes, is_grads_batched=True, retain_graph=True)
        return (g * probes).flatten(2).sum(-1).mean(0)
    size = x[0].numel()
    total = torch.zeros(b, dtype=x.dtype, device=x.device)
    for start in range(0, size, chunk):
        idx = torch.arange(start, min(start + chunk, size), device=x.device)
        basis = torch.zeros(len(idx), b, size, dtype=x.dtype, device=x.device)
        basis[torch.arange(len(idx)), :, idx] = 1.0
        (g,) = torch.autograd.grad(
            v, x, basis.reshape(len(idx), *x.shape), is_grads_batched=True, retain_graph=True
        )
        total = total + g.flatten(2)[torch.arange(len(idx)), :, idx].sum(0)
    return total


def log_density(
    field: Field,
    u: torch.Tensor,
    reference: GaussianReference | SpectralReference,
    *,
    trace: str = "exact",
    num_probes: int = 1,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int = 20,
    chunk: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """Exact log density of function values under the flow's push-forward of ``ν₀``.

    Solves the augmented ODE ``d(x, L)/dt = (v(x, t), tr ∂v/∂x)`` backward from
    ``(u, 0)`` at ``t = 1`` to ``t = 0``, so that ``L(0) = −∫₀¹ tr ∂v/∂x dt``, and returns
    ``log ν₀(x(0)) + L(0)`` — the change of variables with the divergence *subtracted*
    (the official code adds it).

    Args:
        field: the velocity field (see the module docstring), evaluated in ``u``'s dtype
            (pass float64 states and a float64 field for float64 bookkeeping).
        u: ``(B, n, c)`` function values.
        reference: the reference measure ``ν₀`` on the same points.
        trace: ``"exact"`` (``n·c`` vector–Jacobian products per evaluation, batched
            ``chunk`` at a time) or ``"hutchinson"`` (``num_probes`` Rademacher probes,
            fixed for the whole solve).
        method: the ODE solver (:func:`odeint`).
        rtol: as ``method`` (described together above).
        atol: as ``method`` (described together above).
        steps: as ``method`` (described together above).
        generator: for the Hutchinson probes.

    Returns:
        ``(log p (B,) float64, {"nfe", "log_reference", "integral"})``.
    """
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'exact' or 'hutchinson'; got {trace!r}")
    probes = None
    if trace == "hutchinson":
        if not (isinstance(num_probes, int) and num_probes >= 1):
            raise ValueError(f"num_probes must be a positive int; got {num_probes!r}")
        bits = torch.randint(0, 2, (num_probes, *u.shape), generator=generator)
        probes = (2.0 * bits - 1.0).to(dtype=u.dtype, device=u.device)

    def augmented(t: torch.Tensor, state: State) -> State:
        x = state[0].detach().requires_grad_(True)
        with torch.enable_grad():
            v = field(t, x)
            div = _divergence(v, x, probes, chunk)
        return v.detach(), div.detach().to(state[1].dtype)

    start = (u.detach(), torch.zeros(u.shape[0], dtype=torch.float64, device=u.device))
    (x0, integral), nfe = odeint(
        augmented, start, 1.0, 0.0, method=method, rtol=rtol, atol=atol, steps=steps
    )
    log_ref = reference.log_prob(x0)
    return log_ref + integral, {"nfe": nfe, "log_reference": log_ref, "integral": -integral}
