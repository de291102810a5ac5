"""Classification with scale mixtures of NNGPs (Lee, Yun, Yang & Lee, ICLR 2022).

Two routes, both over the same infinite-width network kernel (:func:`nngp_kernel`):

* :class:`OneHotNNGPClassifier`: classification as regression. Labels become centred
  one-hot targets ``e_y − 1/C`` (the −0.1 / 0.9 coding of Lee et al., 2018, for
  ``C = 10``) and a :class:`~bayesfn.bayesnn.ScaleMixtureNNGP` is fitted to them, so the
  ``C`` outputs share one ``σ²``: under the inverse-gamma prior the per-point predictive
  of the ``C`` outputs is a joint multivariate t. Class probabilities are
  ``P(argmax_c f_c = c)`` estimated by Monte Carlo over that joint predictive.
* :class:`SVTPClassifier`: the sparse variational Student-t process with a softmax
  likelihood. ``σ² ~ IG(a, b)`` scales the whole function prior, ``f | σ² ~ GP(0, σ²K)``;
  ``M`` inducing inputs ``Z`` carry whitened values ``v = L⁻¹u`` (``K_ZZ = LLᵀ``) with
  ``v | σ² ~ N(0, σ²I)`` per class. The variational family is the paper's,

      q(σ²) = IG(α, β),   q(v_c | σ²) = N(m_c, σ² S_c),

  which keeps every KL term closed-form::

      KL = Σ_c ½[tr S_c + (α/β)‖m_c‖² − M − log|S_c|] + KL(IG(α, β) ‖ IG(a, b)),

  with ``E_q[1/σ²] = α/β``. Given ``σ²`` the latent at ``x`` is
  ``N(Aᵀm_c, σ²(k_xx − AᵀA + AᵀS_cA))`` with ``A = L⁻¹K_Zx``, so the marginal predictive
  is a multivariate t with ``2α`` degrees of freedom and scale ``β/α`` times that
  covariance. The expected log-likelihood is a reparameterised Monte Carlo estimate
  (``σ² = 1/g`` with ``g ~ Gamma(α, β)`` drawn by ``rsample``; Gaussian noise for ``f``).
  ``scale_prior=None`` fixes ``σ² ≡ 1`` and drops the inverse-gamma KL: the plain
  sparse variational GP (Hensman et al., 2015, whitened).

Both follow DESIGN §3: ``posterior(x)`` is over the latent outputs (event ``(n, C)``),
``posterior(x, observation_noise=True)`` is a :class:`CategoricalPosterior` over labels.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bayesfn._linalg import safe_cholesky
from bayesfn._random import standard_gamma
from bayesfn.bayesnn.nngp.kernel import activation_slopes, check_architecture, nngp_kernel
from bayesfn.bayesnn.nngp.scale_mixture import ScaleMixtureNNGP, _softplus_inverse
from bayesfn.model import Model, check_inputs, check_labels, resolve_device, resolve_dtype
from bayesfn.posterior import (
    CategoricalPosterior,
    GaussianPosterior,
    MixturePosterior,
    Posterior,
    StudentTPosterior,
)
from bayesfn.training import FitResult, optimize

__all__ = [
    "OneHotNNGPClassifier",
    "SVTPClassifier",
    "inverse_gamma_kl",
    "one_hot_targets",
]


# ------------------------------------------------------------------ helpers
def _check_chunk_size(chunk_size: Any, *, allow_none: bool = False) -> None:
    if chunk_size is None and allow_none:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")


def _check_num_classes(num_classes: Any) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise ValueError(f"num_classes must be an integer >= 2 or None; got {num_classes!r}")


def one_hot_targets(
    labels: torch.Tensor, num_classes: int, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Centred one-hot regression targets ``e_y − 1/C``: ``(n,)`` labels → ``(n, C)``.

    Every row sums to zero, matching a zero-mean prior (−0.1 / 0.9 for ten classes).
    """
    eye = torch.nn.functional.one_hot(labels.to(torch.int64), num_classes).to(dtype)
    return eye - 1.0 / num_classes


def inverse_gamma_kl(alpha: Any, beta: Any, a: Any, b: Any) -> torch.Tensor:
    """``KL(IG(α, β) ‖ IG(a, b))`` in closed form (shape/scale parameterisation).

    ``σ² ↦ 1/σ²`` maps both to gammas with rates ``β``, ``b``, and KL is invariant under
    that map: ``(α − a)ψ(α) − lnΓ(α) + lnΓ(a) + a(ln β − ln b) + α(b − β)/β``.
    """
    alpha, beta, a, b = (
        v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64)
        for v in (alpha, beta, a, b)
    )
    return (
        (alpha - a) * torch.digamma(alpha)
        - torch.lgamma(alpha)
        + torch.lgamma(a)
        + a * (torch.log(beta) - torch.log(b))
        + alpha * (b - beta) / beta
    )


def _block_outputs(cov: torch.Tensor) -> torch.Tensor:
    """``(..., C, n, n)`` per-class covariances → the ``(..., nC, nC)`` covariance of the
    row-major ``(n, C)`` event, classes independent."""
    c, n = cov.shape[-3], cov.shape[-1]
    eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
    full = torch.einsum("...cij,cd->...icjd", cov, eye)
    return full.reshape(cov.shape[:-3] + (n * c, n * c))


def _point_parts(post: Posterior) -> tuple:
    """The per-point pieces of a joint ``(n, C)`` predictive whose outputs are
    independent given ``σ²``: ``("t", df, loc, scale²)``, ``("normal", mean, var)`` or
    ``("mixture", log_weights, [parts...])``, tensors ``(n, C)``."""
    if isinstance(post, StudentTPosterior):
        return ("t", post.df, post.loc, post.marginal_scale.pow(2))
    if isinstance(post, GaussianPosterior):
        return ("normal", post.mean, post.variance)
    if isinstance(post, MixturePosterior):
        return ("mixture", post.log_weights, [_point_parts(c) for c in post.components])
    raise TypeError(f"cannot split a {type(post).__name__} into per-point predictives")


def _merge_parts(parts: list[tuple]) -> Posterior:
    """Concatenate per-chunk :func:`_point_parts` and build the batch ``(n,)``, event
    ``(1, C)`` posterior."""
    kind = parts[0][0]
    if kind == "mixture":
        comps = [_merge_parts([p[2][k] for p in parts]) for k in range(len(parts[0][2]))]
        return MixturePosterior(comps, logits=parts[0][1])
    loc = torch.cat([p[-2] for p in parts], 0).unsqueeze(-2)
    var = torch.cat([p[-1] for p in parts], 0).unsqueeze(-2)
    if kind == "t":
        return StudentTPosterior(parts[0][1], loc, variance=var)
    return GaussianPosterior(loc, variance=var)


# ------------------------------------------------------ one-hot regression
class OneHotNNGPClassifier(Model):
    """Classification by NNGP / Student-t / heavy-tailed process regression on centred
    one-hot targets.

    Args:
        num_classes: number of classes ``C``; ``None`` infers ``max(label) + 1`` at fit.
        nngp: settings of the wrapped :class:`~bayesfn.bayesnn.ScaleMixtureNNGP` (depth,
            activation, prior, prior_params, w_std, ..., dtype); its defaults otherwise.
        num_samples: Monte Carlo draws of the joint ``C``-output predictive per point for
            the class probabilities.
        seed: seed of those draws (the probabilities are reproducible).

    Example:
        >>> clf = OneHotNNGPClassifier(nngp={"depth": 2, "prior": "inverse_gamma"})
        >>> clf.fit(x, labels, max_steps=50)
        >>> probs = clf.posterior(x_test, observation_noise=True).mean  # (n*, C)
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        nngp: dict[str, Any] | None = None,
        num_samples: int = 2000,
        seed: int = 0,
    ) -> None:
        _check_num_classes(num_classes)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
        self.num_classes = num_classes
        self.nngp = dict(nngp or {})
        self.num_samples = num_samples
        self.seed = int(seed)
        self._template = ScaleMixtureNNGP(**self._nngp_settings())  # validates the settings now

    def _nngp_settings(self) -> dict[str, Any]:
        """The wrapped process's settings: one-hot targets are used as given (no
        standardisation) unless ``nngp`` asks otherwise."""
        return {"standardize": False, **self.nngp}

    def fit(self, x: Any, labels: Any, **fit_kwargs: Any) -> OneHotNNGPClassifier:
        """Fit the wrapped process to the centred one-hot targets of ``labels``.

        Args:
            x: ``(n, d)`` inputs.
            labels: ``(n,)`` integer class indices in ``[0, C)``.
            **fit_kwargs: passed to :meth:`ScaleMixtureNNGP.fit` (``max_steps``, ``lr``,
                ``method="grid"`` with ``grid`` and ``validation=(x_val, labels_val)``,
                ``progress_bar``, ...).
        """
        dtype = self._template.dtype
        x = check_inputs(x, "x", dtype=dtype, device=self._template.device)
        labels, num_classes = check_labels(labels, x.shape[0], self.num_classes)
        if "validation" in fit_kwargs and fit_kwargs["validation"] is not None:
            xv, yv = fit_kwargs["validation"]
            xv = check_inputs(xv, "validation x", dtype=dtype, device=self._template.device)
            yv, _ = check_labels(yv, xv.shape[0], num_classes, "validation labels")
            fit_kwargs["validation"] = (xv, one_hot_targets(yv, num_classes, dtype=dtype))
        self.num_classes_ = num_classes
        self.model_ = ScaleMixtureNNGP(**self._nngp_settings()).fit(
            x, one_hot_targets(labels, num_classes, dtype=dtype), **fit_kwargs
        )
        self.fit_result_ = self.model_.fit_result_
        return self

    def point_predictive(
        self, x: Any, *, observation_noise: bool = False, chunk_size: int | None = None
    ) -> Posterior:
        """Each point's joint predictive over its ``C`` outputs: batch ``(n,)``, event
        ``(1, C)``.

        The wrapped model's outputs are independent given ``σ²`` and share one
        covariance over points, so a point's ``C`` outputs have a diagonal scale
        ``Σ_ii · I`` and one shared ``σ²`` (one χ² draw for the Student-t, one mixture
        component for the quadrature priors). The wrapped joint predictive is computed in
        blocks of ``chunk_size`` points (its covariance is ``(chunk·C)²``) and its
        per-point parts are kept: exact, with no cross-point covariance stored.

        Args:
            x: ``(n, d)`` inputs.
            observation_noise: include the observation noise (the predictive of the
                one-hot target rather than of the latent ``f``).
            chunk_size: points per block; default 50, or 20 for the quadrature priors,
                whose mixture components each carry a ``(chunk·C)²`` factor.
        """
        self._check_fitted()
        x = check_inputs(
            x,
            "x",
            dtype=self.model_.dtype,
            device=self.model_.device,
            num_features=self.model_.train_x_.shape[-1],
        )
        _check_chunk_size(chunk_size, allow_none=True)
        if chunk_size is None:
            closed = self.nngp.get("prior", "inverse_gamma") in ("inverse_gamma", "point_mass")
            chunk_size = 50 if closed else 20
        parts = [
            _point_parts(
                self.model_.posterior(x[s : s + chunk_size], observation_noise=observation_noise)
            )
            for s in range(0, x.shape[0], chunk_size)
        ]
        return _merge_parts(parts)

    def posterior(
        self, x: Any, *, observation_noise: bool = False, chunk_size: int = 250
    ) -> Posterior:
        """Latent outputs, or the predictive over labels.

        Args:
            x: ``(n*, d)`` (or ``(b, n*, d)`` for the latent) test inputs.
            observation_noise: ``False``: the joint predictive of the ``C`` regression
                outputs (event ``(n*, C)``; Student-t / Gaussian / mixture as the wrapped
                model gives). ``True``: a :class:`CategoricalPosterior` whose ``mean`` is
                ``P(argmax_c f_c = c)`` under each point's joint latent predictive,
                estimated from ``num_samples`` draws with one pseudo-draw spread evenly
                over the classes, ``(count_c + 1/C)/(S + 1)``, so that no class gets
                probability 0.
            chunk_size: test points per block of argmax counting.
        """
        self._check_fitted()
        if not observation_noise:
            return self.model_.posterior(x)
        x = check_inputs(
            x,
            "x",
            dtype=self.model_.dtype,
            device=self.model_.device,
            num_features=self.model_.train_x_.shape[-1],
        )
        return self.label_predictive(self.point_predictive(x), chunk_size=chunk_size)

    def label_predictive(self, point_post: Posterior, *, chunk_size: int = 250):
        """:class:`CategoricalPosterior` of ``P(argmax_c f_c = c)`` from a
        :meth:`point_predictive` (batch ``(n,)``, event ``(1, C)``), with the smoothing
        and seed described in :meth:`posterior`."""
        _check_chunk_size(chunk_size)
        c = point_post.event_shape[-1]
        gen = torch.Generator(device=point_post.device).manual_seed(self.seed)
        draws = point_post.sample((self.num_samples,), generator=gen)[..., 0, :]  # (S, n, C)
        winners = torch.zeros(draws.shape[1:], dtype=draws.dtype, device=draws.device)
        for start in range(0, draws.shape[1], chunk_size):
            block = draws[:, start : start + chunk_size].argmax(-1)
            winners[start : start + chunk_size] = (
                torch.nn.functional.one_hot(block, c).sum(0).to(draws.dtype)
            )
        return CategoricalPosterior((winners + 1.0 / c) / (self.num_samples + 1))

    def target_nll(self, x: Any, labels: Any, *, chunk_size: int | None = None) -> torch.Tensor:
        """Per-point ``−log p(e_y − 1/C | x)``: the regression predictive density (with
        observation noise) of the centred one-hot target, joint over its ``C`` entries.

        Args:
            x: ``(n*, d)`` inputs.
            labels: ``(n*,)`` integer labels.

        Returns:
            ``(n*,)`` negative log densities (nats; a density, so it may be negative).
        """
        self._check_fitted()
        x = check_inputs(x, "x", dtype=self.model_.dtype, device=self.model_.device)
        labels, _ = check_labels(labels, x.shape[0], self.num_classes_)
        y = one_hot_targets(labels, self.num_classes_, dtype=x.dtype).to(x.device)
        post = self.point_predictive(x, observation_noise=True, chunk_size=chunk_size)
        return -post.log_prob(y.unsqueeze(-2))

    def _get_state(self) -> dict[str, Any]:
        return {"inner": self.model_._get_state(), "num_classes": torch.tensor(self.num_classes_)}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.num_classes_ = int(state["num_classes"])
        self.model_ = ScaleMixtureNNGP(**self._nngp_settings())
        self.model_._set_state(state["inner"])
        self.model_.fit_result_ = FitResult()  # the outer model keeps the recorded fit


# ------------------------------------------------------ sparse variational
class _SVTPModule(torch.nn.Module):
    """Trainable state of :class:`SVTPClassifier` (positive values stored softplus-raw)."""

    def __init__(
        self,
        z: torch.Tensor,
        num_classes: int,
        kernel: dict[str, float],
        learn_kernel: tuple[str, ...],
        learn_inducing: bool,
        scale_prior: tuple[float, float] | None,
    ) -> None:
        super().__init__()
        dtype, device = z.dtype, z.device
        m = z.shape[0]

        def raw(v: float) -> torch.Tensor:
            return torch.tensor(_softplus_inverse(v), dtype=dtype, device=device)

        for name, value in kernel.items():
            if name in learn_kernel:
                self.register_parameter(f"raw_{name}", torch.nn.Parameter(raw(value)))
            else:
                self.register_buffer(f"value_{name}", torch.tensor(value, dtype=dtype))
        self.kernel_names = tuple(kernel)
        if learn_inducing:
            self.z = torch.nn.Parameter(z.clone())
        else:
            self.register_buffer("z", z.clone())
        self.q_mean = torch.nn.Parameter(torch.zeros(num_classes, m, dtype=dtype, device=device))
        self.q_tril_off = torch.nn.Parameter(
            torch.zeros(num_classes, m, m, dtype=dtype, device=device)
        )
        self.q_diag_raw = torch.nn.Parameter(
            torch.full((num_classes, m), _softplus_inverse(1.0), dtype=dtype, device=device)
        )
        self.has_scale = scale_prior is not None
        if self.has_scale:
            a, b = scale_prior
            self.register_buffer("prior_a", torch.tensor(a, dtype=dtype, device=device))
            self.register_buffer("prior_b", torch.tensor(b, dtype=dtype, device=device))
            # q(σ²) starts at the prior
            self.raw_alpha = torch.nn.Parameter(raw(a))
            self.raw_beta = torch.nn.Parameter(raw(b))

    def kernel_value(self, name: str) -> torch.Tensor:
        if hasattr(self, f"raw_{name}"):
            return torch.nn.functional.softplus(getattr(self, f"raw_{name}"))
        return getattr(self, f"value_{name}")

    def q_tril(self) -> torch.Tensor:
        """``(C, M, M)`` lower Cholesky factors of ``S_c``."""
        diag = torch.nn.functional.softplus(self.q_diag_raw)
        return torch.tril(self.q_tril_off, -1) + torch.diag_embed(diag)

    def q_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(α, β)`` of ``q(σ²) = IG(α, β)``."""
        sp = torch.nn.functional.softplus
        return sp(self.raw_alpha), sp(self.raw_beta)


class SVTPClassifier(Model):
    """Sparse variational Student-t process classifier (softmax likelihood); with
    ``scale_prior=None`` the sparse variational GP.

    Args:
        num_inducing: ``M`` inducing inputs (initialised at a random subset of the
            training inputs unless ``fit(inducing=...)`` gives them).
        depth: the
            NNGP kernel (:class:`~bayesfn.bayesnn.NNGPKernel`).
        activation: see ``depth``.
        w_std: see ``depth``.
        b_std: see ``depth``.
        w_std_last: see ``depth``.
        b_std_last: see ``depth``.
        negative_slope: see ``depth``.
        scale_prior: ``(a, b)`` of the inverse-gamma prior on ``σ²``; ``None`` for
            ``σ² ≡ 1`` (SVGP).
        num_classes: ``C``; ``None`` infers ``max(label) + 1`` at fit.
        learn_kernel: learn ``w_std`` and ``b_std`` (and ``w_std_last`` for the SVGP;
            under a scale prior it is redundant with ``σ²`` and stays fixed, as in the
            paper's code).
        learn_inducing: learn ``Z``.
        num_train_samples: Monte Carlo draws per ELBO step.
        num_test_samples: draws averaged by ``posterior(..., observation_noise=True)``.
        seed: seed of those test draws.
        jitter: relative jitter always added to ``K_ZZ``.
        dtype: float64 on CPU by default.
        device: see ``dtype``.
    """

    def __init__(
        self,
        num_inducing: int = 100,
        depth: int = 1,
        activation: str = "relu",
        *,
        scale_prior: tuple[float, float] | list[float] | None = (2.0, 2.0),
        num_classes: int | None = None,
        w_std: float = 1.0,
        b_std: float = 0.1,
        w_std_last: float = 1.0,
        b_std_last: float = 0.0,
        negative_slope: float = 0.01,
        learn_kernel: bool = True,
        learn_inducing: bool = False,
        num_train_samples: int = 16,
        num_test_samples: int = 1000,
        seed: int = 0,
        jitter: float = 1e-6,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        check_architecture(depth, activation, "nngp", "ntk", None)
        activation_slopes(activation, negative_slope, None)
        _check_num_classes(num_classes)
        if isinstance(num_inducing, bool) or not isinstance(num_inducing, int) or num_inducing < 1:
            raise ValueError(f"num_inducing must be a positive integer; got {num_inducing!r}")
        if scale_prior is not None:
            if len(scale_prior) != 2:
                raise ValueError(f"scale_prior must be (a, b) or None; got {scale_prior!r}")
            for name, v in zip(("a", "b"), scale_prior, strict=True):
                if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                    raise ValueError(
                        f"scale_prior {name} of the inverse gamma must be positive and "
                        f"finite; got {v!r}"
                    )
            scale_prior = [float(v) for v in scale_prior]
        for name, value in {
            "w_std": w_std,
            "b_std": b_std,
            "w_std_last": w_std_last,
            "b_std_last": b_std_last,
        }.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite non-negative number; got {value!r}")
        for name, value in {
            "num_train_samples": num_train_samples,
            "num_test_samples": num_test_samples,
        }.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if learn_kernel and (w_std == 0 or b_std == 0):
            raise ValueError("w_std and b_std must be > 0 when learn_kernel=True")
        self.num_inducing = num_inducing
        self.depth = depth
        self.activation = activation
        self.scale_prior = scale_prior
        self.num_classes = num_classes
        self.w_std = float(w_std)
        self.b_std = float(b_std)
        self.w_std_last = float(w_std_last)
        self.b_std_last = float(b_std_last)
        self.negative_slope = float(negative_slope)
        self.learn_kernel = bool(learn_kernel)
        self.learn_inducing = bool(learn_inducing)
        self.num_train_samples = num_train_samples
        self.num_test_samples = num_test_samples
        self.seed = int(seed)
        if isinstance(jitter, bool) or not isinstance(jitter, int | float):
            raise TypeError(f"jitter must be a number; got {type(jitter).__name__}")
        if not (math.isfinite(jitter) and jitter >= 0):
            raise ValueError(f"jitter must be a finite non-negative number; got {jitter!r}")
        self.jitter = float(jitter)
        self.dtype = resolve_dtype(dtype, torch.float64)
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(
                f"dtype must be float32 or float64 (Cholesky factorisations); got {self.dtype}"
            )
        self.device = resolve_device(device)

    # ----------------------------------------------------------- building
    def _build(self, z: torch.Tensor, num_classes: int) -> None:
        learn = ()
        if self.learn_kernel:
            learn = ("w_std", "b_std") + (("w_std_last",) if self.scale_prior is None else ())
        kernel = {
            "w_std": self.w_std,
            "b_std": self.b_std,
            "w_std_last": self.w_std_last,
            "b_std_last": self.b_std_last,
        }
        self.module_ = _SVTPModule(
            z,
            num_classes,
            kernel,
            learn,
            self.learn_inducing,
            None if self.scale_prior is None else tuple(self.scale_prior),
        )
        self.num_classes_ = num_classes

    def _kernel(self, x1: torch.Tensor, x2: torch.Tensor | None = None, *, diag=False):
        h = self.module_
        return nngp_kernel(
            x1,
            x2,
            depth=self.depth,
            activation=self.activation,
            w_std=h.kernel_value("w_std"),
            b_std=h.kernel_value("b_std"),
            w_std_last=h.kernel_value("w_std_last"),
            b_std_last=h.kernel_value("b_std_last"),
            slopes=activation_slopes(self.activation, self.negative_slope, None),
            diag=diag,
        )

    def _projection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``A = L⁻¹K_Zx`` (``... x M x n``) and the ``(C, M)`` whitened means."""
        z = self.module_.z
        chol = safe_cholesky(self._kernel(z), jitter=self.jitter, name="K_ZZ")
        k_xz = self._kernel(x, z)  # (..., n, M)
        a = torch.linalg.solve_triangular(chol, k_xz.mT, upper=False)
        return a, chol

    def _marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point latent mean ``(..., n, C)`` and variance given ``σ² = 1``
        ``(..., n, C)``."""
        a, _ = self._projection(x)
        mean = a.mT @ self.module_.q_mean.T  # (..., n, C)
        tril = self.module_.q_tril()  # (C, M, M)
        # diag(AᵀS_cA) = ‖L_cᵀA‖² column-wise
        la = tril.mT @ a.unsqueeze(-3)  # (..., C, M, n)
        var_q = la.pow(2).sum(-2)  # (..., C, n)
        k_xx = self._kernel(x, diag=True)  # (..., n)
        var = (k_xx - a.pow(2).sum(-2)).clamp_min(0).unsqueeze(-2) + var_q
        return mean, var.mT

    def kl_divergence(self) -> torch.Tensor:
        """``KL(q(σ², v) ‖ p(σ², v))`` summed over classes (closed form, see module)."""
        h = self.module_
        tril = h.q_tril()
        m = tril.shape[-1]
        trace = tril.pow(2).sum((-2, -1))  # (C,)
        logdet = 2 * tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        mahal = h.q_mean.pow(2).sum(-1)
        if h.has_scale:
            alpha, beta = h.q_scale()
            mahal = mahal * (alpha / beta)
            extra = inverse_gamma_kl(alpha, beta, h.prior_a, h.prior_b)
        else:
            extra = torch.zeros((), dtype=trace.dtype, device=trace.device)
        return 0.5 * (trace + mahal - m - logdet).sum() + extra

    def _scale_draws(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num,)`` draws of ``σ²`` from ``q``: ``1/g``, ``g ~ Gamma(α, rate β)``.

        Without a generator the draw is reparameterised (``Gamma.rsample``)."""
        h = self.module_
        if not h.has_scale:
            return torch.ones(num, dtype=self.dtype, device=self.device)
        alpha, beta = h.q_scale()
        if generator is None:
            g = torch.distributions.Gamma(alpha, beta).rsample((num,))
        else:
            g = standard_gamma(alpha.detach().expand(num), generator=generator) / beta.detach()
        return 1.0 / g

    def expected_log_likelihood(
        self, x: torch.Tensor, labels: torch.Tensor, num_samples: int | None = None
    ) -> torch.Tensor:
        """Reparameterised Monte Carlo estimate of ``E_q[log softmax(f(x_i))_{y_i}]``,
        ``(n,)``: ``σ²`` from ``q``, then ``f_i | σ²`` from its Gaussian marginal."""
        s = self.num_train_samples if num_samples is None else num_samples
        mean, var = self._marginals(x)
        s2 = self._scale_draws(s).reshape(s, 1, 1)
        eps = torch.randn((s,) + mean.shape, dtype=mean.dtype, device=mean.device)
        f = mean + (s2 * var).sqrt() * eps  # (S, n, C)
        logp = torch.log_softmax(f, -1).gather(-1, labels.expand(s, -1).unsqueeze(-1))
        return logp.squeeze(-1).mean(0)

    # ---------------------------------------------------------------- fit
    def fit(
        self,
        x: Any,
        labels: Any,
        *,
        max_steps: int = 1000,
        batch_size: int | None = 128,
        lr: float = 0.01,
        inducing: Any = None,
        seed: int | None = 0,
        callbacks=(),
        progress_bar: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 100,
    ) -> SVTPClassifier:
        """Maximise the ELBO by minibatch Adam (:func:`bayesfn.training.optimize`).

        Args:
            x: ``(n, d)`` inputs.
            labels: ``(n,)`` integer labels in ``[0, C)``.
            max_steps: optimisation steps.
            batch_size: minibatch size (``None`` or ``>= n``: full batch).
            lr: Adam learning rate.
            inducing: ``(M, d)`` initial inducing inputs; default a random subset of
                ``x`` (drawn with ``seed``).
            seed: see
                :func:`optimize`.
            callbacks: see ``seed``.
            progress_bar: see ``seed``.
            checkpoint_dir: see ``seed``.
            checkpoint_every: see ``seed``.

        Returns:
            ``self``; ``fit_result_.losses`` are the negative ELBO per training point.
        """
        x = check_inputs(x, "x", dtype=self.dtype, device=self.device)
        labels, num_classes = check_labels(labels, x.shape[0], self.num_classes)
        labels = labels.to(self.device)
        n = x.shape[0]
        if inducing is None:
            if self.num_inducing > n:
                raise ValueError(
                    f"num_inducing={self.num_inducing} exceeds the {n} training points; pass "
                    "inducing= or lower num_inducing"
                )
            g = torch.Generator().manual_seed(0 if seed is None else seed)
            z = x[torch.randperm(n, generator=g)[: self.num_inducing].to(x.device)]
        else:
            z = check_inputs(
                inducing, "inducing", dtype=self.dtype, device=self.device, num_features=x.shape[1]
            )
            if z.shape[0] != self.num_inducing:
                raise ValueError(
                    f"inducing must have shape ({self.num_inducing}, {x.shape[1]}); "
                    f"got {tuple(z.shape)}"
                )
        self._build(z, num_classes)
        self.train_dim_ = x.shape[1]
        if batch_size is not None and batch_size >= n:
            batch_size = None

        def loss_fn(batch):
            xb, yb = batch
            return -self.expected_log_likelihood(xb, yb).mean() + self.kl_divergence() / n

        result = optimize(
            self.module_,
            loss_fn,
            data=(x, labels),
            batch_size=batch_size,
            max_steps=max_steps,
            lr=lr,
            seed=seed,
            callbacks=callbacks,
            progress_bar=progress_bar,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            fingerprint=None if checkpoint_dir is None else self.get_config(),
            desc="SVTP ELBO" if self.scale_prior is not None else "SVGP ELBO",
        )
        result.diagnostics.update(self.hyperparameters())
        self.fit_result_ = result
        return self

    def hyperparameters(self) -> dict[str, float]:
        """Kernel values and, under a scale prior, ``q(σ²)``'s ``α, β``."""
        h = self.module_
        with torch.no_grad():
            out = {n: float(h.kernel_value(n)) for n in h.kernel_names}
            if h.has_scale:
                alpha, beta = h.q_scale()
                out.update(q_alpha=float(alpha), q_beta=float(beta))
        return out

    # ---------------------------------------------------------- prediction
    def posterior(
        self, x: Any, *, observation_noise: bool = False, chunk_size: int = 500
    ) -> Posterior:
        """Latent logits, or the predictive over labels.

        Args:
            x: ``(n*, d)`` or ``(b, n*, d)`` inputs.
            observation_noise: ``False``: the joint latent ``f`` with event ``(n*, C)``:
                a :class:`StudentTPosterior` (df ``2α``, scale ``β/α`` times the
                conditional covariance; classes independent given ``σ²``) or a
                :class:`GaussianPosterior` for the SVGP. Its covariance is
                ``(n*C)²``: query in blocks for large ``n*``. ``True``: a
                :class:`CategoricalPosterior` with the softmax averaged over
                ``num_test_samples`` draws of ``(σ², f)`` (per-point marginals).
            chunk_size: test points per block of draws.
        """
        self._check_fitted()
        _check_chunk_size(chunk_size)
        x = check_inputs(
            x,
            "x",
            dtype=self.dtype,
            device=self.device,
            num_features=self.train_dim_,
            allow_batch=True,
        )
        self.module_.eval()
        with torch.no_grad():
            if observation_noise:
                return self._label_predictive(x, chunk_size)
            a, _ = self._projection(x)
            mean = a.mT @ self.module_.q_mean.T
            tril = self.module_.q_tril()
            la = tril.mT @ a.unsqueeze(-3)  # (..., C, M, n)
            cov = (self._kernel(x) - a.mT @ a).unsqueeze(-3) + la.mT @ la  # (..., C, n, n)
            full = _block_outputs(0.5 * (cov + cov.mT))
            if not self.module_.has_scale:
                return GaussianPosterior(mean, full)
            alpha, beta = self.module_.q_scale()
            return StudentTPosterior(2 * alpha, mean, (beta / alpha) * full)

    def _label_predictive(self, x: torch.Tensor, chunk_size: int) -> CategoricalPosterior:
        batch = x.shape[:-2]
        flat = x.reshape(-1, x.shape[-1])
        gen = torch.Generator(device=flat.device).manual_seed(self.seed)
        s = self.num_test_samples
        probs = []
        for start in range(0, flat.shape[0], chunk_size):
            mean, var = self._marginals(flat[start : start + chunk_size])
            s2 = self._scale_draws(s, generator=gen).reshape(s, 1, 1)
            eps = torch.randn(
                (s,) + mean.shape, generator=gen, dtype=mean.dtype, device=mean.device
            )
            probs.append(torch.softmax(mean + (s2 * var).sqrt() * eps, -1).mean(0))
        return CategoricalPosterior(torch.cat(probs, 0).reshape(batch + (-1, self.num_classes_)))

    # ------------------------------------------------------------ save/load
    def _get_state(self) -> dict[str, Any]:
        return {
            "module": self.module_.state_dict(),
            "num_classes": torch.tensor(self.num_classes_),
            "train_dim": torch.tensor(self.train_dim_),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        z = state["module"]["z"].to(dtype=self.dtype, device=self.device)
        self._build(z, int(state["num_classes"]))
        self.module_.load_state_dict(state["module"])
        self.module_.eval()
        self.train_dim_ = int(state["train_dim"])
