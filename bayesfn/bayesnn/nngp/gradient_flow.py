"""Infinitely wide networks trained by gradient flow on MSE (Lee et al., NeurIPS 2019).

"Wide neural networks of any depth evolve as linear models under gradient descent"
(arXiv 1902.06720). At infinite width the network stays linear in its parameters during
training, so its outputs at any training time ``t`` are a Gaussian process over the
random initialisation. With ``K`` the NNGP kernel (the prior of the outputs at
initialisation), ``Θ`` the tangent kernel of the trained parameters, ``X`` the training
inputs, ``x*`` the test inputs and ``A_t = Θ(x*, X) Θ⁻¹ (I − e^{−c Θ})``::

    mean_t = A_t Y
    cov_t  = K** + A_t K A_tᵀ − (A_t K*ᵀ + K* A_tᵀ)

with ``K = K(X, X)``, ``K* = K(x*, X)``, ``K** = K(x*, x*)``. At ``t = ∞`` this is
``mean = Θ*Θ⁻¹Y`` and ``cov = K** + Θ*Θ⁻¹KΘ⁻¹Θ*ᵀ − (Θ*Θ⁻¹K*ᵀ + K*Θ⁻¹Θ*ᵀ)``; at ``t = 0``
it is the prior ``N(0, K**)``.

Time convention (neural-tangents' ``predict.gradient_descent_mse``): the loss is
``L(θ) = ½ · mean((f(X) − Y)²)`` over all ``n·m`` entries of the ``(n, m)`` targets, and
the parameters follow ``dθ/ds = −η ∇L(θ)``; ``time`` is ``s``, so ``time = k`` is about
``k`` gradient-descent steps of size ``η = learning_rate`` (exact as ``η → 0``). Then
``f_s(X) − Y = e^{−ηsΘ/(n·m)} (f_0(X) − Y)``, i.e. ``c = η · time / (n·m)`` above (for one
output, the ``e^{−ηΘt/n}`` of the paper with its ``1/n``-averaged loss).

Which parameters train:

* ``training="all"``: every layer; ``Θ`` is the NTK (``kind="ntk"`` of
  :func:`~bayesfn.bayesnn.nngp.kernel.nngp_kernel`).
* ``training="last_layer"``: only the readout weights and bias. Their tangent kernel is
  the NNGP kernel in the NTK parameterisation (``Θ = K``), so at ``t = ∞`` the predictive
  is the noise-free NNGP posterior. In the standard parameterisation it is
  ``N_in · K_post + 1`` with ``K_post`` the kernel of the readout's inputs and ``N_in``
  their number (``width``, or ``d`` for ``depth=0``).

``scale = σ²`` multiplies the covariance: the predictive of a scale mixture of NNGPs given
the last-layer variance ``σ²`` (no degrees-of-freedom update: nothing is conditioned on
``σ²``). In the NTK parameterisation, scaling ``w_std_last`` and ``b_std_last`` by ``σ``
multiplies both ``K`` and ``Θ`` by ``σ²``, so the result is exactly that network trained
with learning rate ``η/σ²`` (at ``t = ∞``: with any learning rate).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bayesfn._linalg import safe_cholesky
from bayesfn.bayesnn.nngp.kernel import activation_slopes, check_architecture, nngp_kernel
from bayesfn.model import check_inputs, check_targets, resolve_dtype
from bayesfn.posterior import GaussianPosterior

__all__ = ["trained_network_predictive"]

_TRAINING = ("all", "last_layer")


def _check_number(
    name: str, value: Any, *, positive: bool = False, allow_inf: bool = False
) -> float:
    """``value`` as a float, raising ``ValueError`` naming ``name`` unless it is a real
    number that is ≥ 0 (> 0 when ``positive``) and finite (or +inf when ``allow_inf``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        else:
            raise ValueError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    ok = value > 0 if positive else value >= 0
    if math.isnan(value) or not ok or (math.isinf(value) and not allow_inf):
        want = "positive" if positive else "non-negative"
        finite = " (or math.inf)" if allow_inf else " and finite"
        raise ValueError(f"{name} must be {want}{finite}; got {value!r}")
    return value


def _kron_eye(cov: torch.Tensor, m: int) -> torch.Tensor:
    """``(n·m, n·m)`` covariance of a row-major ``(n, m)`` event whose ``m`` columns are
    independent, each with covariance ``cov`` (``n x n``)."""
    if m == 1:
        return cov
    n = cov.shape[-1]
    eye = torch.eye(m, dtype=cov.dtype, device=cov.device)
    return (cov[:, None, :, None] * eye[None, :, None, :]).reshape(n * m, n * m)


def trained_network_predictive(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    depth: int,
    activation: str = "relu",
    w_std: float,
    b_std: float,
    w_std_last: float | None = None,
    b_std_last: float | None = None,
    parameterization: str = "ntk",
    width: int | None = None,
    training: str = "all",
    time: float = math.inf,
    learning_rate: float | None = None,
    scale: float = 1.0,
    diag_reg: float = 0.0,
    negative_slope: float = 0.01,
    slopes: tuple[float, float] | None = None,
    dtype: torch.dtype | str | None = None,
) -> GaussianPosterior:
    """Outputs at ``x_test`` of an infinitely wide network trained by gradient flow.

    The network is that of :class:`~bayesfn.bayesnn.nngp.kernel.NNGPKernel`: ``depth`` hidden
    ``Dense(w_std, b_std) → activation`` blocks and a ``Dense(w_std_last, b_std_last)``
    readout, initialised at random and trained on ``(x_train, y_train)`` by gradient
    flow on the mean squared error; see the module docstring for the formulas and the
    time convention.

    Args:
        x_train: ``(n, d)`` training inputs.
        y_train: ``(n,)`` or ``(n, m)`` training targets.
        x_test: ``(n*, d)`` test inputs.
        depth: number of hidden layers (``0``: a linear model).
        activation: as in :func:`~bayesfn.bayesnn.nngp.kernel.nngp_kernel` (``relu``,
            ``leaky_relu``, ``abs``, ``ab_relu``, ``erf``, ``gelu``).
        w_std: hidden-layer weight / bias standard deviations.
        b_std: as ``w_std`` (described together above).
        w_std_last: the readout's (default: ``w_std`` and ``b_std``).
        b_std_last: as ``w_std_last`` (described together above).
        parameterization: ``"ntk"`` (default) or ``"standard"``.
        width: hidden width; needed only by the standard parameterisation with
            ``depth > 0``, whose tangent kernel grows with it.
        training: ``"all"`` (tangent kernel: the NTK) or ``"last_layer"`` (only the
            readout trains; tangent kernel: the NNGP kernel in the NTK parameterisation).
        time: training time ``t ≥ 0`` (``math.inf``: trained to convergence);
            ``time = k`` is about ``k`` gradient-descent steps of size ``learning_rate``.
        learning_rate: ``η > 0`` (``None``: 1); only ``η · time`` matters.
        scale: ``σ² > 0`` multiplying the covariance (last-layer variance of a scale
            mixture of NNGPs); the mean does not depend on it.
        diag_reg: ``λ ≥ 0``; ``Θ(X, X)`` becomes ``Θ + λ · mean(diag Θ) · I`` (as
            neural-tangents' ``diag_reg``), e.g. to stabilise near-duplicate inputs.
        negative_slope: ``leaky_relu``'s slope.
        slopes: ``(a, b)`` of ``ab_relu``.
        dtype: floating dtype of the computation (default float64).

    Returns:
        :class:`~bayesfn.posterior.GaussianPosterior` with event ``(n*, m)``; the ``m``
        outputs are independent with the same covariance (its covariance is over the
        row-major flattened event).
    """
    dtype = resolve_dtype(dtype, torch.float64)
    check_architecture(depth, activation, "ntk", parameterization, width)
    ab = activation_slopes(activation, negative_slope, slopes)
    if training not in _TRAINING:
        raise ValueError(f"training must be one of {_TRAINING}; got {training!r}")
    w_std = _check_number("w_std", w_std)
    b_std = _check_number("b_std", b_std)
    w_std_last = w_std if w_std_last is None else _check_number("w_std_last", w_std_last)
    b_std_last = b_std if b_std_last is None else _check_number("b_std_last", b_std_last)
    time = _check_number("time", time, allow_inf=True)
    eta = (
        1.0
        if learning_rate is None
        else _check_number("learning_rate", learning_rate, positive=True)
    )
    scale = _check_number("scale", scale, positive=True)
    diag_reg = _check_number("diag_reg", diag_reg)

    x = check_inputs(x_train, "x_train", dtype=dtype)
    xs = check_inputs(x_test, "x_test", dtype=dtype, num_features=x.shape[-1])
    y = check_targets(y_train, x.shape[0], "y_train", dtype=dtype, device=x.device)
    n, m = y.shape

    arch = {
        "depth": depth,
        "activation": activation,
        "parameterization": parameterization,
        "slopes": ab,
        "width": width,
    }
    readout = {"w_std": w_std, "b_std": b_std, "w_std_last": w_std_last, "b_std_last": b_std_last}

    def kernel(a: torch.Tensor, b: torch.Tensor | None, kind: str) -> torch.Tensor:
        return nngp_kernel(a, b, kind=kind, **arch, **readout)

    with torch.no_grad():
        k_train = kernel(x, None, "nngp")
        k_cross = kernel(xs, x, "nngp")
        k_test = kernel(xs, None, "nngp")
        if time == 0:  # untrained: the prior (also avoids 0 · inf below)
            mean = torch.zeros(xs.shape[0], m, dtype=dtype, device=x.device)
            cov = 0.5 * (k_test + k_test.mT)
            return GaussianPosterior(mean, scale * _kron_eye(cov, m))
        if training == "all":
            t_train, t_cross = kernel(x, None, "ntk"), kernel(xs, x, "ntk")
        elif parameterization == "ntk":
            t_train, t_cross = k_train, k_cross
        else:  # standard: ∂f/∂W_last = readout inputs, ∂f/∂b_last = 1
            pre = {**readout, "w_std_last": 1.0, "b_std_last": 0.0}
            n_in = float(width) if depth > 0 else float(x.shape[-1])
            t_train = n_in * nngp_kernel(x, None, kind="nngp", **arch, **pre) + 1.0
            t_cross = n_in * nngp_kernel(xs, x, kind="nngp", **arch, **pre) + 1.0
        t_train = 0.5 * (t_train + t_train.mT)
        if diag_reg > 0:
            reg = diag_reg * t_train.diagonal().mean()
            t_train = t_train + reg * torch.eye(n, dtype=dtype, device=x.device)

        # a = A_tᵀ = (I − e^{−cΘ}) Θ⁻¹ Θ*ᵀ  (n x n*)
        if math.isinf(time):
            chol = safe_cholesky(t_train, name="tangent kernel Θ(x_train, x_train)")
            a = torch.cholesky_solve(t_cross.mT, chol)
        else:
            c = eta * time / (n * m)
            evals, evecs = torch.linalg.eigh(t_train)
            evals = evals.clamp_min(0)
            # (1 − e^{−cλ}) / λ, continuous at λ = 0 where it equals c
            safe = evals.clamp_min(1e-300)
            g = torch.where(evals > 0, -torch.expm1(-c * evals) / safe, c)
            a = evecs @ (g[:, None] * (evecs.mT @ t_cross.mT))
        mean = a.mT @ y
        cross = k_cross @ a  # K* A_tᵀ
        cov = k_test + a.mT @ k_train @ a - (cross + cross.mT)
        cov = 0.5 * (cov + cov.mT)
    return GaussianPosterior(mean, scale * _kron_eye(cov, m))
