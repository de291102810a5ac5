"""Scale mixtures of NNGPs (Lee, Yun, Yang & Lee, ICLR 2022): regression.

Model. A fully connected network of infinite width whose readout layer has its
variance scaled by ``σ²``, with observation noise scaled along with it::

    σ² ~ p(σ²),   f | σ² ~ GP(0, σ² K̄),   y | f, σ² ~ N(f, σ² τ² I)

``K̄`` is the NNGP kernel (:func:`~bayesfn.bayesnn.nngp.kernel.nngp_kernel`) with readout
``(w_std_last, b_std_last)`` and ``τ² = noise``. Noise convention: the observation noise
is scaled by ``σ²`` along with the kernel. The paper's closed form (predictive df
``2a + N``, scale factor ``(b + q/2)/(a + N/2)`` with ``q = yᵀ(K̄ + τ²I)⁻¹y``) is exact
only under this conjugate model, so it is the model we implement; it also keeps the
posterior mean equal to the NNGP's, ``K̄*(K̄ + τ²I)⁻¹y``, for every ``σ²``. (The
official code instead adds an unscaled jitter ``ε I`` to ``(b/a) K̄`` when computing
``q``, i.e. noise ``(a/b) ε`` inside ``q`` but ``ε`` in the mean and covariance; the two
agree only as ``ε → 0``. At the jitters of its grid the mismatch acts as a free factor
on the predictive scale, which changes its regression table: see
:mod:`bayesfn.reproduce.nngp`.) With ``C = K̄ + τ² I``, ``q = Σⱼ yⱼᵀ C⁻¹ yⱼ`` over
the ``m`` outputs (which share ``σ²``) and ``N = n m``:

* ``inverse_gamma(a, b)``: ``σ² | y ~ IG(a + N/2, b + q/2)``, and the predictive is a
  multivariate Student-t with ``df = 2a + N`` and scale
  ``(b + q/2)/(a + N/2) · (K̄** − K̄*C⁻¹K̄*ᵀ)`` (exact; :class:`StudentTPosterior`);
* any other prior: ``p(σ² | y) ∝ p(σ²) (σ²)^(−N/2) exp(−q / 2σ²)`` is one-dimensional
  and computed by Gauss–Legendre quadrature in ``log σ²`` on an interval found around
  the posterior mode (not by prior draws); the predictive is the mixture of the
  Gaussians ``N(mean, σ²ₖ Σ)`` over the nodes (:class:`MixturePosterior`); the
  reported ``quadrature_error`` is the relative change of the evidence integral against
  a rule of half as many nodes (a conservative estimate: the error of the coarser rule);
* ``point_mass(value)``: the plain NNGP with ``σ² = value`` (:class:`GaussianPosterior`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import warnings
from typing import Any

import numpy as np
import torch

from bayesfn._linalg import check_allocation, posterior_covariance_, quad_logdet, safe_cholesky
from bayesfn._tiling import default_tile_rows, tiled_kernel_matrix
from bayesfn.bayesnn.nngp._scale_priors import LEARNABLE, PRIORS, check_prior, prior_log_density
from bayesfn.bayesnn.nngp.kernel import activation_slopes, check_architecture, nngp_kernel
from bayesfn.model import Model, check_inputs, check_targets, resolve_device, resolve_dtype
from bayesfn.posterior import GaussianPosterior, MixturePosterior, Posterior, StudentTPosterior
from bayesfn.training import FitResult, data_fingerprint, optimize

__all__ = ["QuadratureWarning", "ScaleMixtureNNGP"]

logger = logging.getLogger(__name__)

_QUADRATURE_TOLERANCE = 1e-4
# training sets larger than this evaluate K(x, x) in row tiles (bounded memory)
_TILE_ABOVE = 512


class QuadratureWarning(RuntimeWarning):
    """The σ² posterior of a general scale prior was integrated inaccurately, or looks
    improper (its mass piles up at σ² → 0 or ∞, e.g. with all-zero targets)."""


_NETWORK = ("w_std", "b_std", "w_std_last", "b_std_last", "noise")
_DEFAULT_LEARN = {
    "inverse_gamma": ("w_std", "b_std", "noise", "a", "b"),
    "point_mass": ("w_std", "b_std", "w_std_last", "noise"),
}


def _softplus_inverse(value: float) -> float:
    if value == 0:
        return -math.inf
    return value + math.log(-math.expm1(-value)) if value < 30 else value


class _Hyper(torch.nn.Module):
    """Positive hyperparameters stored as softplus-raw values; the learnable ones are
    ``nn.Parameter`` s, the others buffers."""

    def __init__(
        self, values: dict[str, float], learn: tuple[str, ...], dtype: torch.dtype, device
    ):
        super().__init__()
        self.names = tuple(values)
        for name, value in values.items():
            raw = torch.tensor(_softplus_inverse(value), dtype=dtype, device=device)
            if name in learn:
                self.register_parameter(f"raw_{name}", torch.nn.Parameter(raw))
            else:
                self.register_buffer(f"raw_{name}", raw)

    def get(self, name: str) -> torch.Tensor:
        return torch.nn.functional.softplus(getattr(self, f"raw_{name}"))

    def values(self) -> dict[str, float]:
        return {n: float(self.get(n).detach()) for n in self.names}

    def set(self, name: str, value: float) -> None:
        with torch.no_grad():
            getattr(self, f"raw_{name}").fill_(_softplus_inverse(float(value)))


@functools.lru_cache(maxsize=8)
def _legendre_rule(num: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(num)


def _gauss_legendre(
    num: int, lo: float, hi: float, dtype, device
) -> tuple[torch.Tensor, torch.Tensor]:
    nodes, weights = _legendre_rule(num)
    half = (hi - lo) / 2
    t = torch.as_tensor(lo + half * (nodes + 1), dtype=dtype, device=device)
    w = torch.as_tensor(half * weights, dtype=dtype, device=device)
    return t, w


class ScaleMixtureNNGP(Model):
    """NNGP regression with a prior on the last-layer variance: Student-t and
    heavy-tailed processes.

    Args:
        depth: hidden layers of the infinite network.
        activation: ``relu``, ``leaky_relu``, ``abs``, ``ab_relu``, ``erf`` or ``gelu``.
        prior: ``"inverse_gamma"`` (Student-t process, exact), ``"burr12"``,
            ``"half_cauchy"`` (on σ), ``"lognormal"``, ``"point_mass"`` (plain NNGP), or a
            scalar ``torch.distributions.Distribution`` over ``σ² > 0`` (such a model
            cannot be saved, its prior not being JSON).
        prior_params: the prior's parameters (see :mod:`bayesfn.bayesnn.nngp._scale_priors`):
            ``a, b`` / ``c, d`` / ``scale`` / ``loc, scale`` / ``value``.
        w_std: hidden-layer weight and bias standard deviations (stax convention).
        b_std: see ``w_std``.
        w_std_last: readout-layer standard deviations before the ``σ²`` scaling.
        b_std_last: see ``w_std_last``.
        noise: observation-noise variance ``τ²`` relative to ``σ²`` (``y = f + σ τ ε``).
        learn: names fitted by the marginal likelihood, from ``w_std, b_std,
            w_std_last, b_std_last, noise`` and the prior's positive parameters: ``a, b``
            (inverse gamma), ``c, d`` (Burr XII), ``scale`` (half-Cauchy, log-normal).
            Default: ``w_std, b_std, noise, a, b`` for the inverse gamma (``w_std_last``
            is redundant with ``b`` there), ``w_std, b_std, w_std_last, noise`` otherwise.
            The evidence of the quadrature priors is differentiable in their parameters
            (the nodes are placed without gradient; the integrand carries it). Note that
            type-II maximum likelihood of a one-dimensional scale prior is degenerate: its
            supremum is the point mass at the maximum-likelihood ``σ²`` (e.g. Burr XII
            ``c → ∞``), so fitted ``c, d`` drift towards the NNGP as steps grow.
        negative_slope: see :class:`~bayesfn.bayesnn.NNGPKernel`.
        slopes: see ``negative_slope``.
        num_nodes: quadrature nodes in ``log σ²`` for the general priors.
        standardize: fit in standardised units (default): each input feature shifted to
            mean 0 and scaled to standard deviation 1, each output likewise, with the
            training set's statistics. The NNGP kernel depends on the inputs' origin and
            scale (it is built from inner products) and the model's mean is zero, so on
            raw data (inputs around 10⁶, targets around 10⁸) the fit fails without it.
            Predictions, the marginal likelihood and the grid's validation NLL are
            reported in the data's units; the hyperparameters, the σ² prior and
            :meth:`scale_posterior` refer to the standardised targets. ``False`` uses the
            data as given (for data already standardised, as the paper's protocol does).
        dtype: float64 on CPU by default.
        device: see ``dtype``.

    Example:
        >>> model = ScaleMixtureNNGP(depth=2, prior="inverse_gamma").fit(x, y)
        >>> post = model.posterior(x_test, observation_noise=True)  # StudentTPosterior
    """

    def __init__(
        self,
        depth: int = 1,
        activation: str = "relu",
        *,
        prior: Any = "inverse_gamma",
        prior_params: dict[str, float] | None = None,
        w_std: float = 1.0,
        b_std: float = 0.1,
        w_std_last: float = 1.0,
        b_std_last: float = 0.0,
        noise: float = 0.1,
        learn: tuple[str, ...] | list[str] | None = None,
        negative_slope: float = 0.01,
        slopes: tuple[float, float] | None = None,
        num_nodes: int = 96,
        standardize: bool = True,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        check_architecture(depth, activation, "nngp", "ntk", None)
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize must be True or False; got {standardize!r}")
        activation_slopes(activation, negative_slope, slopes)
        full_params = check_prior(prior, prior_params)
        for name, value in {
            "w_std": w_std,
            "b_std": b_std,
            "w_std_last": w_std_last,
            "b_std_last": b_std_last,
        }.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number; got {value!r}")
        if not (isinstance(noise, int | float) and math.isfinite(noise) and noise > 0):
            raise ValueError(f"noise must be a positive finite variance; got {noise!r}")
        if not isinstance(num_nodes, int) or num_nodes < 8:
            raise ValueError(f"num_nodes must be an integer >= 8; got {num_nodes!r}")
        prior_name = prior if isinstance(prior, str) else "distribution"
        if learn is None:
            learn = _DEFAULT_LEARN.get(prior_name, ("w_std", "b_std", "w_std_last", "noise"))
        learn = tuple(learn)
        allowed = _NETWORK + LEARNABLE.get(prior_name, ())
        for name in learn:
            if name not in allowed:
                raise ValueError(
                    f"learn has {name!r}; with prior {prior_name!r} choose from {allowed}"
                )
        self.depth = depth
        self.activation = activation
        self.prior = prior
        self.prior_params = dict(prior_params) if prior_params else None
        self.w_std = float(w_std)
        self.b_std = float(b_std)
        self.w_std_last = float(w_std_last)
        self.b_std_last = float(b_std_last)
        self.noise = float(noise)
        self.learn = list(learn)
        self.negative_slope = float(negative_slope)
        self.slopes = None if slopes is None else [float(s) for s in slopes]
        self.num_nodes = num_nodes
        self.standardize = standardize
        self.dtype = resolve_dtype(dtype, torch.float64)
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"dtype must be float32 or float64 (Cholesky factorisations); got {self.dtype}"
            )
        self.device = resolve_device(device)
        self._prior_name = prior_name
        self._prior_full = full_params

    # ------------------------------------------------------------- building
    def _standardizer(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Shifts and scales ``(d,)`` of ``x`` and ``(m,)`` of ``y`` (identity unless
        ``standardize``); a zero or undefined spread counts as 1."""

        def spread(t: torch.Tensor) -> torch.Tensor:
            if t.shape[0] < 2:
                return torch.ones_like(t[0])
            sd = t.std(0)
            return torch.where(torch.isfinite(sd) & (sd > 0), sd, torch.ones_like(sd))

        if not self.standardize:
            return _identity_standardizer(x, y)
        return {
            "x_shift": x.mean(0),
            "x_scale": spread(x),
            "y_shift": y.mean(0),
            "y_scale": spread(y),
        }

    def _unit_x(self, x: torch.Tensor) -> torch.Tensor:
        s = self.standardizer_
        return (x - s["x_shift"]) / s["x_scale"]

    def _unit_y(self, y: torch.Tensor) -> torch.Tensor:
        s = self.standardizer_
        return (y - s["y_shift"]) / s["y_scale"]

    def _log_y_scale(self) -> torch.Tensor:
        """``Σⱼ log sⱼ`` over outputs: log-densities of ``y`` in the data's units are
        those in standardised units minus ``n`` times this."""
        return self.standardizer_["y_scale"].log().sum()

    def _build(self, x: torch.Tensor, y: torch.Tensor, *, check: bool = True) -> None:
        values = {
            "w_std": self.w_std,
            "b_std": self.b_std,
            "w_std_last": self.w_std_last,
            "b_std_last": self.b_std_last,
            "noise": self.noise,
        }
        if self._prior_name == "inverse_gamma":
            values.update(a=self._prior_full["a"], b=self._prior_full["b"])
        for name in LEARNABLE.get(self._prior_name, ()):
            if name in self.learn:
                values[name] = self._prior_full[name]
        for name in self.learn if check else ():
            if values[name] == 0:
                raise ValueError(
                    f"{name}=0 cannot be learned (softplus⁻¹(0) = −inf); start it above 0"
                )
        self.module_ = _Hyper(values, tuple(self.learn), self.dtype, self.device)
        self.train_x_, self.train_y_ = x, y
        self._cache: dict[str, Any] | None = None

    def _kernel(
        self, a: torch.Tensor, b: torch.Tensor | None = None, *, diag: bool = False
    ) -> torch.Tensor:
        h = self.module_
        return nngp_kernel(
            a,
            b,
            depth=self.depth,
            activation=self.activation,
            w_std=h.get("w_std"),
            b_std=h.get("b_std"),
            w_std_last=h.get("w_std_last"),
            b_std_last=h.get("b_std_last"),
            slopes=activation_slopes(
                self.activation,
                self.negative_slope,
                None if self.slopes is None else tuple(self.slopes),
            ),
            diag=diag,
        )

    def _kernel_blocks(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``K(a, b)`` ``(..., n_a, n_b)`` without autograd, in row tiles of about
        ``2**18`` numbers: the recursion's temporaries stay one tile's, not the
        matrix's."""
        return tiled_kernel_matrix(
            lambda p, q: self._kernel(p, q),
            a.detach(),  # predictions carry no gradient in x (posterior runs under no_grad)
            b.detach(),
            [],
            tile_rows=default_tile_rows(b.shape[-2]),
        )

    def _factor(self) -> dict[str, torch.Tensor]:
        """Cholesky ``L`` of ``C = K̄ + τ²I`` (n, n), ``alpha = C⁻¹y`` (n, m), ``q`` and
        ``log|C|`` (scalars), differentiable in the hyperparameters."""
        x, y = self.train_x_, self.train_y_
        noise = self.module_.get("noise")
        if x.shape[0] > _TILE_ABOVE:
            # row tiles: the kernel's temporaries and autograd graph stay a few tile x n
            # blocks; closed-form gradients of q and log|C| need one n x n buffer
            params = [p for p in self.module_.parameters() if p.requires_grad]
            c = tiled_kernel_matrix(lambda a, b: self._kernel(a, b), x, x, params)
            c.diagonal().add_(noise)
            q, logdet, chol, alpha = quad_logdet(c, y, name="training covariance K + noise")
            return {"chol": chol, "alpha": alpha, "q": q, "logdet": logdet}
        k = self._kernel(x)
        c = k + noise * torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
        chol = safe_cholesky(c, name="training covariance K + noise")
        alpha = torch.cholesky_solve(y, chol)
        q = (y * alpha).sum()
        logdet = 2 * chol.diagonal().log().sum()
        return {"chol": chol, "alpha": alpha, "q": q, "logdet": logdet}

    # -------------------------------------------------------- σ² posterior
    def _log_joint_t(self, t: torch.Tensor, q: torch.Tensor, num: int) -> torch.Tensor:
        """``g(t) = log p(σ² = eᵗ) + t − N t / 2 − q e⁻ᵗ / 2``: the unnormalised log
        density of ``t = log σ²`` given ``y`` (up to the ``σ²``-free Gaussian terms)."""
        log_prior = prior_log_density(self.prior, self._prior_values())
        return log_prior(t.exp()) + t - 0.5 * num * t - 0.5 * q * torch.exp(-t)

    def _prior_values(self) -> dict[str, Any]:
        """The prior's parameters: learnable ones as (differentiable) tensors."""
        values: dict[str, Any] = dict(self._prior_full)
        for name in LEARNABLE.get(self._prior_name, ()):
            if name in self.module_.names:
                values[name] = self.module_.get(name)
        return values

    def _quadrature_nodes(
        self, q: torch.Tensor, num: int
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Gauss–Legendre nodes and weights in ``t = log σ²`` covering the posterior, and
        the relative quadrature error (this rule against one with half the nodes)."""
        with torch.no_grad():
            q0 = float(q.detach())
            dev = q.device
            g = lambda t: self._log_joint_t(t, q.detach(), num)  # noqa: E731
            centre = math.log(max(q0, 1e-300) / max(num, 1))
            radius = 60.0
            edge = True
            for _ in range(12):  # slide a ±60 window in t until the maximum is interior
                grid = torch.linspace(
                    centre - radius, centre + radius, 241, dtype=self.dtype, device=dev
                )
                vals = torch.nan_to_num(g(grid), nan=-math.inf)
                best = int(vals.argmax())
                centre = float(grid[best])
                if 0 < best < grid.numel() - 1:
                    edge = False
                    break
            for _ in range(7):  # zoom in on the mode
                radius /= 8
                grid = torch.linspace(
                    centre - radius, centre + radius, 241, dtype=self.dtype, device=dev
                )
                vals = torch.nan_to_num(g(grid), nan=-math.inf)
                centre = float(grid[vals.argmax()])
            g_max = float(g(torch.tensor(centre, dtype=self.dtype, device=dev)))
            bounds, closed = [], not edge and math.isfinite(g_max)
            for sign in (-1.0, 1.0):
                # walk out geometrically until 80 nats below the mode; the candidate points
                # are scored in one call rather than one scalar evaluation per step
                steps, step, t = [], 1e-3, centre
                for _ in range(120):
                    t = t + sign * step
                    step *= 1.5
                    steps.append(t)
                # beyond |t| = 700, σ² = eᵗ under- or overflows: stop there (the window
                # is then flagged as not closed below)
                finite = [t for t in steps if abs(t) < 700]
                vals = g(torch.tensor(finite, dtype=self.dtype, device=dev))
                below = (~(vals > g_max - 80)).nonzero()
                if below.numel():
                    bounds.append(finite[int(below[0])])
                elif len(finite) < len(steps):
                    bounds.append(steps[len(finite)])
                else:
                    closed = False
                    bounds.append(steps[-1])
            lo, hi = bounds
            # σ² = eᵗ must stay representable: mass at |t| ≳ 700 means σ² → 0 or ∞
            closed = closed and max(abs(lo), abs(hi)) < 700
            t_full, w_full = _gauss_legendre(self.num_nodes, lo, hi, self.dtype, self.device)
            t_half, w_half = _gauss_legendre(self.num_nodes // 2, lo, hi, self.dtype, self.device)
            log_z = torch.logsumexp(g(t_full) + w_full.log(), 0)
            log_z_half = torch.logsumexp(g(t_half) + w_half.log(), 0)
            error = float(torch.expm1(log_z_half - log_z).abs())
            if not closed or not math.isfinite(error):
                error = math.inf  # the integrand never decays: an improper posterior
        return t_full, w_full, error

    def _scale_mixture(
        self, factor: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Nodes ``t_k = log σ²_k``, normalised log weights, ``log ∫ exp g`` and the error."""
        num = self.train_y_.numel()
        t, w, error = self._quadrature_nodes(factor["q"], num)
        log_terms = self._log_joint_t(t, factor["q"], num) + w.log()
        log_z = torch.logsumexp(log_terms, 0)
        return t, log_terms - log_z, log_z, error

    def log_marginal_likelihood(
        self, factor: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Exact ``log p(y | X, θ)`` summed over points and outputs (quadrature for the
        general priors), differentiable in the hyperparameters."""
        factor = self._factor() if factor is None else factor
        y = self.train_y_
        n, m = y.shape
        num = n * m
        gauss = -0.5 * num * math.log(2 * math.pi) - 0.5 * m * factor["logdet"]
        q = factor["q"]
        if self._prior_name == "point_mass":
            v = self._prior_full["value"]
            return gauss - 0.5 * num * math.log(v) - 0.5 * q / v
        if self._prior_name == "inverse_gamma":
            a, b = self.module_.get("a"), self.module_.get("b")
            return (
                gauss
                + torch.lgamma(a + num / 2)
                - torch.lgamma(a)
                + a * b.log()
                - (a + num / 2) * torch.log(b + q / 2)
            )
        _, _, log_z, _ = self._scale_mixture(factor)
        return gauss + log_z

    def scale_posterior(self, sigma2: Any) -> torch.Tensor:
        """Normalised log density ``log p(σ² | y)`` at ``sigma2`` (a tensor of any shape).

        Closed form for the inverse gamma, ``IG(a + N/2, b + q/2)``; for the general
        priors normalised by the same quadrature :meth:`posterior` uses. Not defined for
        the point mass.
        """
        self._check_fitted()
        if self._prior_name == "point_mass":
            raise ValueError(
                "a point-mass prior has no σ² density: σ² is fixed at prior_params['value']"
            )
        s2 = torch.as_tensor(sigma2, dtype=self.dtype, device=self.device)
        if torch.isnan(s2).any():
            raise ValueError(f"sigma2 contains {int(torch.isnan(s2).sum())} NaN value(s)")
        if (s2 <= 0).any():
            raise ValueError("sigma2 must be positive")
        with torch.no_grad():
            cache = self._train_quantities()
            num = self.train_y_.numel()
            if self._prior_name == "inverse_gamma":
                a = self.module_.get("a") + num / 2
                b = self.module_.get("b") + cache["q"] / 2
                return a * b.log() - torch.lgamma(a) - (a + 1) * s2.log() - b / s2
            t = s2.log()
            return self._log_joint_t(t, cache["q"], num) - cache["log_z"] - t

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        x: Any,
        y: Any,
        *,
        max_steps: int = 200,
        lr: float = 0.05,
        method: str = "marginal_likelihood",
        grid: dict[str, list[float]] | None = None,
        validation: tuple[Any, Any] | None = None,
        score_observation_noise: bool = True,
        seed: int | None = 0,
        callbacks=(),
        progress_bar: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 100,
    ) -> ScaleMixtureNNGP:
        """Fit the hyperparameters named in ``learn``.

        Args:
            x: ``(n, d)`` inputs.
            y: ``(n,)`` or ``(n, m)`` targets (the ``m`` outputs share ``σ²``).
            max_steps: Adam steps on ``−log p(y)/N`` (``method="marginal_likelihood"``).
            lr: Adam learning rate (on softplus-raw hyperparameters).
            method: ``"marginal_likelihood"`` (exact evidence through
                :func:`bayesfn.training.optimize`) or ``"grid"``: the paper's search, which
                picks the combination in ``grid`` with the lowest validation NLL.
            grid: for ``method="grid"``: ``{name: [values]}`` over names from
                ``w_std, b_std, w_std_last, b_std_last``, ``noise`` or ``relative_noise``
                (``τ² = value · mean diag K̄(train)``, the convention of neural-tangents'
                ``diag_reg`` that the paper's code uses) and the prior's parameters
                (``value`` of the point mass included). One Cholesky factor is computed per
                kernel and noise setting and shared by all prior settings.
            validation: ``(x_val, y_val)`` scored by the grid search (mean per-point NLL).
            score_observation_noise: score the grid with the predictive of ``y``
                (``True``) or, as the paper's code does, of the latent ``f``.
            seed: see
                :func:`~bayesfn.training.optimize`; a checkpoint resumes only a fit of
                the same data and settings.
            callbacks: see ``seed``.
            progress_bar: see ``seed``.
            checkpoint_dir: see ``seed``.
            checkpoint_every: see ``seed``.

        Returns:
            ``self``; ``fit_result_.diagnostics`` holds the hyperparameters, the log
            marginal likelihood and, for the general priors, ``quadrature_error`` and the
            effective number of mixture components ``ess``.
        """
        x = check_inputs(x, "x", dtype=self.dtype, device=self.device)
        y = check_targets(y, x.shape[0], "y", dtype=self.dtype, device=self.device)
        if method not in ("marginal_likelihood", "grid"):
            raise ValueError(f"method must be 'marginal_likelihood' or 'grid'; got {method!r}")
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative integer; got {max_steps!r}")
        n = x.shape[0]
        check_allocation(
            (n, n),
            dtype=self.dtype,
            device=self.device,
            copies=3,
            what=f"the training covariance of {n} points (with its factor and gradient)",
            way_out="fit to a subsample",
        )
        self.standardizer_ = self._standardizer(x, y)
        self._build(self._unit_x(x), self._unit_y(y))
        result = FitResult()
        if method == "grid":
            result = self._grid_search(grid, validation, score_observation_noise)
        elif max_steps > 0 and self.learn:
            hyper = self.module_

            def loss_fn(_batch):
                return -self.log_marginal_likelihood() / y.numel()

            result = optimize(
                hyper,
                loss_fn,
                max_steps=max_steps,
                lr=lr,
                seed=seed,
                callbacks=callbacks,
                progress_bar=progress_bar,
                checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every,
                fingerprint=None
                if checkpoint_dir is None
                else data_fingerprint(x, y, self.get_config()),
                desc="scale-mixture NNGP marginal likelihood",
            )
        self.module_.eval()
        self._cache = None
        for name in LEARNABLE.get(self._prior_name, ()):
            if name in self.module_.names:  # keep the plain record in step with the fit
                self._prior_full[name] = float(self.module_.get(name).detach())
        self.fit_result_ = result
        result.diagnostics.update(self._diagnostics())
        return self

    def _grid_search(self, grid, validation, score_observation_noise: bool) -> FitResult:
        if not grid:
            raise ValueError("method='grid' needs grid={name: [values, ...]}")
        if validation is None:
            raise ValueError("method='grid' needs validation=(x_val, y_val) to score the grid")
        x_val = check_inputs(
            validation[0],
            "validation x",
            dtype=self.dtype,
            device=self.device,
            num_features=self.train_x_.shape[-1],
        )
        y_val = check_targets(
            validation[1], x_val.shape[0], "validation y", dtype=self.dtype, device=self.device
        )
        if y_val.shape[1] != self.train_y_.shape[1]:
            raise ValueError(
                f"validation y has {y_val.shape[1]} outputs; the training y has "
                f"{self.train_y_.shape[1]}"
            )
        x_val, y_val = self._unit_x(x_val), self._unit_y(y_val)
        # per-point NLL in the data's units: the standardised one plus the mean log scale
        nll_offset = float(self.standardizer_["y_scale"].log().mean())
        prior_names = set(self._prior_full) | set(LEARNABLE.get(self._prior_name, ()))
        allowed = set(self.module_.names) | prior_names | {"relative_noise"}
        for name, values in grid.items():
            if name not in allowed:
                raise ValueError(f"grid has {name!r}; choose from {sorted(allowed)}")
            if not len(values):
                raise ValueError(f"grid[{name!r}] is empty")
        for name, values in grid.items():
            for value in values:
                value = float(value)
                ok = math.isfinite(value) and (
                    value >= 0
                    if name in ("w_std", "b_std", "w_std_last", "b_std_last")
                    else name == "loc" or value > 0
                )
                if not ok:
                    raise ValueError(f"grid[{name!r}] has the invalid value {value!r}")
        if "noise" in grid and "relative_noise" in grid:
            raise ValueError("grid may hold 'noise' or 'relative_noise', not both")
        kernel_names = [n for n in grid if n in ("w_std", "b_std", "w_std_last", "b_std_last")]
        noise_name = next((n for n in grid if n in ("noise", "relative_noise")), None)
        prior_grid = [n for n in grid if n not in kernel_names and n != noise_name]
        best: tuple[float, dict[str, float] | None] = (math.inf, None)
        history = []
        x, y = self.train_x_, self.train_y_
        num = y.numel()
        with torch.no_grad():
            for kernel_combo in itertools.product(*(grid[n] for n in kernel_names)):
                self._apply(dict(zip(kernel_names, kernel_combo, strict=True)))
                k_train = self._kernel(x)
                k_cross = self._kernel(x_val, x)
                k_val = self._kernel(x_val, diag=True)
                mean_diag = float(k_train.diagonal().mean())
                eye = torch.eye(k_train.shape[-1], dtype=self.dtype, device=self.device)
                noises = grid[noise_name] if noise_name else [None]
                for noise_value in noises:
                    setting = dict(zip(kernel_names, map(float, kernel_combo), strict=True))
                    if noise_name:
                        setting[noise_name] = float(noise_value)
                        tau2 = float(noise_value) * (
                            mean_diag if noise_name == "relative_noise" else 1.0
                        )
                    else:
                        tau2 = float(self.module_.get("noise"))
                    try:
                        chol = torch.linalg.cholesky(k_train + tau2 * eye)
                    except RuntimeError as err:  # a degenerate kernel: skip it
                        logger.info("grid point %s failed: %s", setting, err)
                        history.append({**setting, "val_nll": math.inf})
                        continue
                    alpha = torch.cholesky_solve(y, chol)
                    v = torch.linalg.solve_triangular(chol, k_cross.mT, upper=False)
                    mean = k_cross @ alpha  # (n_val, m)
                    var = (k_val - (v * v).sum(0)).clamp_min(0)[:, None]  # (n_val, 1)
                    if score_observation_noise:
                        var = var + tau2
                    q = (y * alpha).sum()
                    for prior_combo in itertools.product(*(grid[n] for n in prior_grid)):
                        prior_setting = dict(zip(prior_grid, map(float, prior_combo), strict=True))
                        self._apply(prior_setting)
                        score = self._grid_score(mean, var, q, num, y_val) + nll_offset
                        history.append({**setting, **prior_setting, "val_nll": score})
                        if score < best[0]:
                            best = (score, {**setting, **prior_setting})
        if best[1] is None:
            raise RuntimeError("every grid point failed; see the log for the errors")
        chosen = dict(best[1])
        if "relative_noise" in chosen:
            self._apply({n: chosen[n] for n in kernel_names})
            with torch.no_grad():
                mean_diag = float(self._kernel(x, diag=True).mean())
            chosen["noise"] = chosen.pop("relative_noise") * mean_diag
        self._apply(chosen)
        result = FitResult()
        result.diagnostics["grid"] = {
            "names": list(grid),
            "history": history,
            "best": best[1],
            "best_val_nll": best[0],
            "score_observation_noise": score_observation_noise,
        }
        return result

    def _grid_score(
        self,
        mean: torch.Tensor,
        var: torch.Tensor,
        q: torch.Tensor,
        num: int,
        y_val: torch.Tensor,
    ) -> float:
        """Mean per-point predictive NLL at the validation points given the ``σ² = 1``
        predictive ``mean (n_val, m)`` and variance ``var (n_val, 1)`` (the same algebra
        as :meth:`posterior`, restricted to the marginals)."""
        if not bool((var > 0).all()):
            return math.inf
        resid2 = (y_val - mean) ** 2
        log_2pi = math.log(2 * math.pi)
        if self._prior_name == "point_mass":
            s2 = self._prior_full["value"] * var
            return float(0.5 * (log_2pi + s2.log() + resid2 / s2).mean())
        if self._prior_name == "inverse_gamma":
            a, b = self.module_.get("a"), self.module_.get("b")
            df = 2 * a + num
            scale2 = (b + q / 2) / (a + num / 2) * var
            z2 = resid2 / scale2
            log_pdf = (
                torch.lgamma((df + 1) / 2)
                - torch.lgamma(df / 2)
                - 0.5 * torch.log(df * math.pi * scale2)
                - (df + 1) / 2 * torch.log1p(z2 / df)
            )
            return float(-log_pdf.mean())
        t, w, error = self._quadrature_nodes(q, num)
        if not math.isfinite(error):
            return math.inf  # an improper σ² posterior cannot be scored
        log_w = self._log_joint_t(t, q, num) + w.log()
        log_w = log_w - torch.logsumexp(log_w, 0)
        s2 = torch.exp(t)[:, None, None] * var  # (k, n_val, 1)
        comp = -0.5 * (log_2pi + s2.log() + resid2 / s2)  # (k, n_val, m)
        return float(-torch.logsumexp(comp + log_w[:, None, None], 0).mean())

    def _apply(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            if name in self.module_.names:
                self.module_.set(name, value)
            else:
                if not (math.isfinite(value) and (name == "loc" or value > 0)):
                    raise ValueError(f"grid value {name}={value!r} is not valid for the prior")
                self._prior_full[name] = float(value)
        self._cache = None

    def _diagnostics(self) -> dict[str, Any]:
        with torch.no_grad():
            cache = self._train_quantities()
            out: dict[str, Any] = {
                "hyperparameters": self.hyperparameters(),
                "log_marginal_likelihood": float(
                    cache["lml"] - self.train_y_.shape[0] * self._log_y_scale()
                ),
            }
            if "log_w" in cache:
                w = cache["log_w"].exp()
                out["quadrature_error"] = cache["error"]
                out["ess"] = float(1 / (w**2).sum())
                out["num_components"] = int(w.numel())
        return out

    def hyperparameters(self) -> dict[str, float]:
        """Current hyperparameters (network, noise and the prior's parameters)."""
        values = dict(self._prior_full) if self._prior_name != "inverse_gamma" else {}
        values.update(self.module_.values())
        return values

    # ----------------------------------------------------------- prediction
    def _train_quantities(self) -> dict[str, Any]:
        if self._cache is None:
            with torch.no_grad():
                factor = self._factor()
                cache = dict(factor)
                cache["lml"] = self.log_marginal_likelihood(factor)
                if self._prior_name not in ("inverse_gamma", "point_mass"):
                    t, log_w, log_z, error = self._scale_mixture(factor)
                    # every node is kept: a predictive density in the tails is carried by
                    # large-σ² nodes whose posterior weight is tiny
                    cache.update(t=t, log_w=log_w, log_z=log_z, error=error)
                    if not error < _QUADRATURE_TOLERANCE:
                        warnings.warn(
                            f"the σ² posterior under the {self._prior_name} prior was integrated "
                            f"with relative error {error:.1e} (> {_QUADRATURE_TOLERANCE:g}); it "
                            "may be improper (e.g. all-zero targets) or need more num_nodes",
                            QuadratureWarning,
                            stacklevel=3,
                        )
            self._cache = cache
        return self._cache

    def posterior(
        self,
        x: Any,
        *,
        observation_noise: bool = False,
        joint: bool = True,
        chunk_size: int | None = None,
    ) -> Posterior:
        """Predictive at ``x``.

        Args:
            x: ``(n*, d)`` or ``(b, n*, d)`` test inputs.
            observation_noise: include the (``σ²``-scaled) noise: the predictive of ``y``.
            joint: ``True`` for the joint predictive over all points and outputs;
                ``False`` for independent marginals, which never forms the test
                covariance (memory ``O(n · chunk_size)``, for large test sets).
            chunk_size: with ``joint=False``, test points per block (default: about
                ``2**24 / n``).

        Returns:
            Event ``(n*, m)``, batch ``()`` or ``(b,)``: :class:`StudentTPosterior`
            (inverse gamma), :class:`GaussianPosterior` (point mass) or
            :class:`MixturePosterior` of Gaussians (other priors); joint over points and
            outputs, or diagonal with ``joint=False``.

        Raises:
            MemoryError: ``joint=True`` and the covariance cannot fit in the memory left.
        """
        self._check_fitted()
        x = check_inputs(
            x,
            "x",
            dtype=self.dtype,
            device=self.device,
            num_features=self.train_x_.shape[-1],
            allow_batch=True,
        )
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive integer or None; got {chunk_size!r}")
        cache = self._train_quantities()
        m = self.train_y_.shape[1]
        ns = x.shape[-2]
        if not joint:
            return self._marginal_posterior(self._unit_x(x), cache, observation_noise, chunk_size)
        # the covariance, two temporaries of its size while the posterior checks its
        # symmetry (plus its factor and one scaled factor per node for a mixture), and
        # (m > 1) the n* x n* block the outputs share; K(X*, X) and L⁻¹K(X, X*) before it
        way_out = (
            "ask for posterior(x, joint=False) (marginals only) or predict at fewer points per call"
        )
        copies = 3 if self._prior_name in ("inverse_gamma", "point_mass") else 4 + len(cache["t"])
        for shape, count, what in [
            (x.shape[:-2] + (ns * m, ns * m), copies + (m > 1), "joint predictive covariance"),
            (x.shape[:-2] + (ns, self.train_x_.shape[0]), 2, "test-train cross-covariance"),
        ]:
            check_allocation(
                shape,
                dtype=self.dtype,
                device=self.device,
                copies=count,
                what=f"the {what}",
                way_out=way_out,
            )
        x = self._unit_x(x)
        with torch.no_grad():
            k_star = self._kernel_blocks(x, self.train_x_)  # (..., n*, n)
            mean = k_star @ cache["alpha"]  # (..., n*, m)
            v = _solve_lower(cache["chol"], k_star.mT)  # (..., n, n*)
            del k_star
            cov = posterior_covariance_(self._kernel_blocks(x, x), v)  # in place
            del v
            if observation_noise:
                cov.diagonal(dim1=-2, dim2=-1).add_(self.module_.get("noise"))
            full = _kron_outputs(cov, m)
            # back to the data's units: row-major (n*, m) event, output j scaled by s_j
            y_shift, y_scale = self.standardizer_["y_shift"], self.standardizer_["y_scale"]
            mean = mean * y_scale + y_shift
            if not bool((y_scale == 1).all()):
                s_flat = y_scale.repeat(ns)
                full.mul_(s_flat.unsqueeze(-1)).mul_(s_flat)  # rows, then columns
            num = self.train_y_.numel()
            if self._prior_name == "point_mass":
                return GaussianPosterior(mean, full.mul_(self._prior_full["value"]))
            if self._prior_name == "inverse_gamma":
                a, b = self.module_.get("a"), self.module_.get("b")
                scale = (b + cache["q"] / 2) / (a + num / 2)
                return StudentTPosterior(2 * a + num, mean, full.mul_(scale))
            tril = safe_cholesky(full, name="posterior covariance")
            comps = [
                GaussianPosterior(mean, scale_tril=torch.exp(0.5 * t) * tril) for t in cache["t"]
            ]
            return MixturePosterior(comps, logits=cache["log_w"])

    def _marginal_posterior(
        self,
        x: torch.Tensor,
        cache: dict[str, Any],
        observation_noise: bool,
        chunk_size: int | None,
    ) -> Posterior:
        """Independent marginals of :meth:`posterior` at standardised ``x`` (..., n*, d),
        block by block over test points."""
        n = self.train_y_.shape[0]
        chunk_size = chunk_size or max(1, 2**24 // n)
        means, variances = [], []
        with torch.no_grad():
            for start in range(0, x.shape[-2], chunk_size):
                xc = x[..., start : start + chunk_size, :]
                k_star = self._kernel_blocks(xc, self.train_x_)
                means.append(k_star @ cache["alpha"])
                v = _solve_lower(cache["chol"], k_star.mT)
                variances.append((self._kernel(xc, diag=True) - v.pow(2).sum(-2)).clamp_min(0))
            mean = torch.cat(means, -2)  # (..., n*, m)
            var = torch.cat(variances, -1).unsqueeze(-1)  # (..., n*, 1)
            if observation_noise:
                var = var + self.module_.get("noise")
            y_shift, y_scale = self.standardizer_["y_shift"], self.standardizer_["y_scale"]
            mean = mean * y_scale + y_shift
            var = (var * y_scale**2).expand(mean.shape).contiguous()
            num = self.train_y_.numel()
            if self._prior_name == "point_mass":
                return GaussianPosterior(mean, variance=self._prior_full["value"] * var)
            if self._prior_name == "inverse_gamma":
                a, b = self.module_.get("a"), self.module_.get("b")
                scale = (b + cache["q"] / 2) / (a + num / 2)
                return StudentTPosterior(2 * a + num, mean, variance=scale * var)
            comps = [GaussianPosterior(mean, variance=torch.exp(t) * var) for t in cache["t"]]
            return MixturePosterior(comps, logits=cache["log_w"])

    # ------------------------------------------------------------ save/load
    def _get_state(self) -> dict[str, Any]:
        state = {
            "x": self.train_x_,
            "y": self.train_y_,
            "hyper": self.module_.state_dict(),
            "standardizer": self.standardizer_,
        }
        state["prior_full"] = torch.tensor(
            [self._prior_full.get(k, math.nan) for k in sorted(PRIORS.get(self._prior_name, {}))],
            dtype=torch.float64,
        )
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        x = state["x"].to(device=self.device, dtype=self.dtype)
        y = state["y"].to(device=self.device, dtype=self.dtype)
        keys = sorted(PRIORS.get(self._prior_name, {}))
        for k, v in zip(keys, state["prior_full"].tolist(), strict=True):
            self._prior_full[k] = v
        # x and y are saved in the model's (standardised) units; a folder saved before
        # standardisation existed holds raw data and no statistics: the identity
        saved = state.get("standardizer", _identity_standardizer(x, y))
        self.standardizer_ = {
            k: v.to(device=self.device, dtype=self.dtype) for k, v in saved.items()
        }
        self._build(x, y, check=False)  # the saved raw values replace the initial ones
        self.module_.load_state_dict(state["hyper"])
        self.module_.eval()


def _identity_standardizer(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "x_shift": torch.zeros_like(x[0]),
        "x_scale": torch.ones_like(x[0]),
        "y_shift": torch.zeros_like(y[0]),
        "y_scale": torch.ones_like(y[0]),
    }


def _solve_lower(chol: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``L⁻¹ rhs`` for one ``(n, n)`` factor and ``(..., n, k)`` right-hand sides.

    Batched right-hand sides are folded into columns: broadcasting ``L`` over the batch
    would make the solver materialise ``b`` copies of the ``n × n`` factor.
    """
    if rhs.dim() == 2:
        return torch.linalg.solve_triangular(chol, rhs, upper=False)
    batch, (n, k) = rhs.shape[:-2], rhs.shape[-2:]
    flat = rhs.movedim(-2, 0).reshape(n, -1)
    out = torch.linalg.solve_triangular(chol, flat, upper=False)
    return out.reshape(n, *batch, k).movedim(0, -2)


def _kron_outputs(cov: torch.Tensor, m: int) -> torch.Tensor:
    """``(..., n·m, n·m)`` covariance of the row-major ``(n, m)`` event when the ``m``
    outputs are independent with the same ``(..., n, n)`` covariance ``cov``."""
    if m == 1:
        return cov
    n = cov.shape[-1]
    eye = torch.eye(m, dtype=cov.dtype, device=cov.device)
    return torch.einsum("...ik,jl->...ijkl", cov, eye).reshape(cov.shape[:-2] + (n * m, n * m))
