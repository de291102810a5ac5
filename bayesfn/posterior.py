"""The posterior contract (DESIGN §3) and the shared concrete posteriors.

A :class:`Posterior` is a distribution over what a model predicts at fixed inputs.
Shapes follow ``torch.distributions``: ``sample_shape + batch_shape + event_shape``.
For function-space models the event is ``(n, m)``: ``n`` input points and ``m``
outputs, with ``m`` explicit even when it is one.

Every class here is either abstract (:class:`Posterior`) or final. Capabilities are
explicit (``has_log_prob``, ``is_reparameterized``); what a class cannot compute
raises ``NotImplementedError`` with the reason, never a silent approximation.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import torch

from bayesfn._linalg import safe_cholesky
from bayesfn._random import standard_gamma

__all__ = [
    "CategoricalPosterior",
    "GaussianPosterior",
    "MixturePosterior",
    "Posterior",
    "SamplePosterior",
    "StudentTPosterior",
]

_SampleShape = int | Sequence[int] | torch.Size


def _as_size(sample_shape: _SampleShape) -> torch.Size:
    if isinstance(sample_shape, int):
        return torch.Size([sample_shape])
    return torch.Size(sample_shape)


class Posterior(abc.ABC):
    """Abstract distribution over a model's predictions (or unobserved variables).

    Subclasses implement ``batch_shape``, ``event_shape``, ``mean``, ``variance`` and
    ``_draw``; the rest is optional and raises ``NotImplementedError`` by default.
    """

    has_log_prob: bool = False
    is_reparameterized: bool = False

    # ----------------------------------------------------------------- shapes
    @property
    @abc.abstractmethod
    def batch_shape(self) -> torch.Size: ...

    @property
    @abc.abstractmethod
    def event_shape(self) -> torch.Size: ...

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype: ...

    # ---------------------------------------------------------------- moments
    @property
    @abc.abstractmethod
    def mean(self) -> torch.Tensor:
        """``batch_shape + event_shape`` tensor."""

    @property
    @abc.abstractmethod
    def variance(self) -> torch.Tensor:
        """``batch_shape + event_shape`` tensor of marginal variances."""

    @property
    def stddev(self) -> torch.Tensor:
        """``batch_shape + event_shape`` tensor, the square root of ``variance``."""
        return self.variance.sqrt()

    # --------------------------------------------------------------- sampling
    @abc.abstractmethod
    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        """Return ``sample_shape + batch_shape + event_shape`` draws (grad allowed)."""

    def sample(
        self, sample_shape: _SampleShape = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``sample_shape + batch_shape + event_shape`` samples without gradient."""
        with torch.no_grad():
            return self._draw(_as_size(sample_shape), generator)

    def rsample(
        self, sample_shape: _SampleShape = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterised draws: like :meth:`sample`, but differentiable."""
        if not self.is_reparameterized:
            raise NotImplementedError(
                f"{type(self).__name__} is not reparameterisable: its draws involve a "
                "discrete choice or stored samples, so no pathwise gradient exists; use sample()"
            )
        return self._draw(_as_size(sample_shape), generator)

    # -------------------------------------------------------------- densities
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Joint log density over the event: ``value`` is ``sample + batch + event``,
        the result ``sample + batch``."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable joint density")

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Per-element log density, ``sample + batch + event``: what UCI tables average."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable marginal density")

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """Marginal CDF of each element, ``sample + batch + event``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form marginal CDF")

    def quantile(self, q: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
        """Marginal quantiles: ``q.shape + batch_shape + event_shape``."""
        raise NotImplementedError(f"{type(self).__name__} has no marginal quantile function")

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """Central marginal interval holding ``level`` probability: (lower, upper)."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie in (0, 1); got {level}")
        qs = self.quantile(torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
        return qs[0], qs[1]

    # ---------------------------------------------------------------- helpers
    def _check_value(self, value: torch.Tensor, name: str = "value") -> torch.Tensor:
        """Check that ``value`` is ``sample + batch + event`` and cast it to our dtype."""
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
        tail = self.batch_shape + self.event_shape
        if value.ndim < len(tail) or value.shape[value.ndim - len(tail) :] != tail:
            raise ValueError(
                f"{name} must have shape sample_shape + {tuple(tail)} (batch + event); "
                f"got {tuple(value.shape)}"
            )
        return value.to(device=self.device, dtype=self.dtype)

    def _check_q(self, q: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
        q = torch.as_tensor(q, dtype=self.dtype, device=self.device)
        if ((q <= 0) | (q >= 1) | torch.isnan(q)).any():
            raise ValueError(f"quantile levels q must lie strictly in (0, 1); got {q.tolist()}")
        return q

    def _expand_q(self, q: torch.Tensor) -> torch.Tensor:
        """Reshape levels ``q`` to broadcast against ``batch + event``."""
        return q.reshape(q.shape + (1,) * (len(self.batch_shape) + len(self.event_shape)))

    def _event_dim_names(self) -> list[str]:
        if len(self.event_shape) == 2:
            return ["point", "output"]
        if len(self.event_shape) == 1:
            return ["point"]
        return [f"event_{i}" for i in range(len(self.event_shape))]

    def _arviz_draws(
        self, num_samples: int | None, num_chains: int | None, generator: torch.Generator | None
    ) -> tuple:
        """``(chain, draw) + batch + event`` draws as a NumPy array, and the names of the
        batch and event dims. The default re-draws ``num_chains`` (1) chains of
        ``num_samples`` (1000) independent samples; a posterior that stores a
        sampler's chains exports those instead."""
        num_samples = 1000 if num_samples is None else num_samples
        num_chains = 1 if num_chains is None else num_chains
        if num_samples < 1 or num_chains < 1:
            raise ValueError(
                f"num_samples and num_chains must be positive; got {num_samples}, {num_chains}"
            )
        draws = self.sample((num_chains, num_samples), generator=generator)
        dims = [f"batch_{i}" for i in range(len(self.batch_shape))] + self._event_dim_names()
        return draws.detach().cpu().numpy(), dims

    # --------------------------------------------------------------- ArviZ
    def to_inference_data(
        self,
        num_samples: int | None = None,
        *,
        num_chains: int | None = None,
        var_name: str = "f",
        generator: torch.Generator | None = None,
    ):
        """Draws as ``arviz.InferenceData`` (ArviZ < 1) in its ``posterior_predictive``
        group, dims ``(chain, draw, *batch, *event)``: ``num_chains`` (default 1) chains
        of ``num_samples`` (default 1000) fresh draws, or, for a :class:`SamplePosterior`
        holding a sampler's chains, those chains themselves (so that ``arviz.rhat`` and
        ``arviz.ess`` diagnose the sampler)."""
        import arviz as az

        if int(az.__version__.split(".")[0]) >= 1:
            raise ImportError(
                f"ArviZ {az.__version__} has no InferenceData; use to_datatree() instead"
            )
        draws, dims = self._arviz_draws(num_samples, num_chains, generator)
        return az.from_dict(posterior_predictive={var_name: draws}, dims={var_name: dims})

    def to_datatree(
        self,
        num_samples: int | None = None,
        *,
        num_chains: int | None = None,
        var_name: str = "f",
        generator: torch.Generator | None = None,
    ):
        """Draws as an ``xarray.DataTree`` in ArviZ ≥ 1's layout: a
        ``posterior_predictive`` group with dims ``(chain, draw, *batch, *event)``; the
        draws are chosen as in :meth:`to_inference_data`."""
        import xarray as xr

        if not hasattr(xr, "DataTree"):
            raise ImportError(
                f"xarray {xr.__version__} has no DataTree (needs ≥ 2024.10); "
                "use to_inference_data() with ArviZ < 1"
            )
        draws, dims = self._arviz_draws(num_samples, num_chains, generator)
        data = xr.Dataset({var_name: (("chain", "draw", *dims), draws)})
        return xr.DataTree.from_dict({"posterior_predictive": data})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, dtype={self.dtype})"
        )


def _split_shape(shape: torch.Size, event_ndim: int, name: str) -> tuple[torch.Size, torch.Size]:
    if event_ndim < 1 or len(shape) < event_ndim:
        raise ValueError(
            f"{name} of shape {tuple(shape)} has fewer than event_ndim={event_ndim} dimensions"
        )
    return shape[: len(shape) - event_ndim], shape[len(shape) - event_ndim :]


def _check_finite(t: torch.Tensor, name: str) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")


class _LocationScale(Posterior):
    """Shared storage for posteriors given by a location and a (joint) covariance.

    The event is flattened row-major to ``N = prod(event_shape)`` for the covariance,
    which is ``batch + (N, N)``; ``variance=`` gives a diagonal covariance instead.
    """

    def __init__(
        self,
        loc: torch.Tensor,
        covariance: torch.Tensor | None,
        variance: torch.Tensor | None,
        scale_tril: torch.Tensor | None,
        event_ndim: int,
    ) -> None:
        if not isinstance(loc, torch.Tensor):
            raise TypeError(f"mean must be a torch.Tensor; got {type(loc).__name__}")
        self._batch, self._event = _split_shape(loc.shape, event_ndim, "mean")
        n = math.prod(self._event)
        given = [a is not None for a in (covariance, variance, scale_tril)]
        if sum(given) != 1:
            raise ValueError("give exactly one of covariance=, variance= or scale_tril=")
        _check_finite(loc, "mean")
        self._loc = loc
        self._cov = self._tril = self._var = None
        if variance is not None:
            if variance.shape != loc.shape:
                raise ValueError(
                    f"variance must have the shape of mean {tuple(loc.shape)}; "
                    f"got {tuple(variance.shape)}"
                )
            _check_finite(variance, "variance")
            if (variance < 0).any():
                raise ValueError("variance must be non-negative")
            self._var = variance
        else:
            matrix = covariance if covariance is not None else scale_tril
            label = "covariance" if covariance is not None else "scale_tril"
            expect = self._batch + (n, n)
            if matrix.shape != expect:
                raise ValueError(
                    f"{label} must have shape batch + (N, N) = {tuple(expect)} with "
                    f"N = prod(event_shape) = {n}; got {tuple(matrix.shape)}"
                )
            _check_finite(matrix, label)
            self._cov, self._tril = covariance, scale_tril

    @property
    def batch_shape(self) -> torch.Size:
        return self._batch

    @property
    def event_shape(self) -> torch.Size:
        return self._event

    @property
    def device(self) -> torch.device:
        return self._loc.device

    @property
    def dtype(self) -> torch.dtype:
        return self._loc.dtype

    @property
    def loc(self) -> torch.Tensor:
        return self._loc

    @property
    def is_diagonal(self) -> bool:
        return self._var is not None

    @property
    def covariance_matrix(self) -> torch.Tensor:
        """``batch + (N, N)`` covariance (scale matrix for Student-t) of the flat event."""
        if self._cov is None:
            if self._tril is not None:
                self._cov = self._tril @ self._tril.mT
            else:
                self._cov = torch.diag_embed(self._var.reshape(self._batch + (-1,)))
        return self._cov

    @property
    def scale_tril(self) -> torch.Tensor:
        """``batch + (N, N)`` lower Cholesky factor of :attr:`covariance_matrix`."""
        if self._tril is None:
            if self._var is not None:
                self._tril = torch.diag_embed(self._var.reshape(self._batch + (-1,)).sqrt())
            else:
                self._tril = safe_cholesky(self._cov, name="covariance")
        return self._tril

    def _scale_diag(self) -> torch.Tensor:
        """``batch + event`` diagonal of the scale matrix."""
        if self._var is not None:
            return self._var
        if self._cov is not None:
            diag = self._cov.diagonal(dim1=-2, dim2=-1)
        else:
            diag = self._tril.pow(2).sum(-1)
        return diag.reshape(self._batch + self._event)

    def _flat(self, t: torch.Tensor) -> torch.Tensor:
        k = len(self._event)
        return t.reshape(t.shape[: t.ndim - k] + (-1,))

    def _correlated_noise(
        self, sample_shape: torch.Size, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``sample + batch + event`` draws of ``L z`` with ``z ~ N(0, I)``."""
        shape = sample_shape + self._batch + self._event
        z = torch.randn(shape, generator=generator, dtype=self.dtype, device=self.device)
        if self._var is not None:
            return z * self._var.sqrt()
        flat = (self.scale_tril @ self._flat(z).unsqueeze(-1)).squeeze(-1)
        return flat.reshape(shape)

    def _log_det_and_maha(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log|Σ| (``batch``) and (x − μ)ᵀΣ⁻¹(x − μ) (``sample + batch``)."""
        diff = value - self._loc
        if self._var is not None:
            var = self._flat(self._var)
            return var.log().sum(-1), (self._flat(diff) ** 2 / var).sum(-1)
        tril = self.scale_tril
        white = torch.linalg.solve_triangular(
            tril.expand(diff.shape[: diff.ndim - len(self._event)] + tril.shape[-2:]),
            self._flat(diff).unsqueeze(-1),
            upper=False,
        ).squeeze(-1)
        log_det = 2 * tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return log_det, white.pow(2).sum(-1)


class GaussianPosterior(_LocationScale):
    """Multivariate normal over the whole event.

    Args:
        mean: ``batch_shape + event_shape`` tensor (event ``(n, m)`` for function-space
            models, so ``event_ndim=2`` by default).
        covariance: ``batch_shape + (N, N)`` covariance of the row-major flattened
            event, ``N = prod(event_shape)``; for an ``(n, m)`` event, entry
            ``[i * m + j, k * m + l]`` is ``Cov(f_ij, f_kl)``.
        variance: instead of ``covariance``, ``batch_shape + event_shape`` variances of
            independent elements.
        scale_tril: instead of ``covariance``, its lower Cholesky factor.
        event_ndim: how many trailing dimensions of ``mean`` form the event.
    """

    has_log_prob = True
    is_reparameterized = True

    def __init__(
        self,
        mean: torch.Tensor,
        covariance: torch.Tensor | None = None,
        *,
        variance: torch.Tensor | None = None,
        scale_tril: torch.Tensor | None = None,
        event_ndim: int = 2,
    ) -> None:
        super().__init__(mean, covariance, variance, scale_tril, event_ndim)

    @property
    def mean(self) -> torch.Tensor:
        return self._loc

    @property
    def variance(self) -> torch.Tensor:
        return self._scale_diag().clamp_min(0)

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return self._loc + self._correlated_noise(sample_shape, generator)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        log_det, maha = self._log_det_and_maha(value)
        n = math.prod(self._event)
        return -0.5 * (n * math.log(2 * math.pi) + log_det + maha)

    def _marginal(self) -> torch.distributions.Normal:
        return torch.distributions.Normal(self._loc, self.stddev, validate_args=False)

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self._marginal().log_prob(self._check_value(value))

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        return self._marginal().cdf(self._check_value(value))

    def quantile(self, q) -> torch.Tensor:
        z = torch.special.ndtri(self._expand_q(self._check_q(q)))
        return self._loc + self.stddev * z


class StudentTPosterior(_LocationScale):
    """Multivariate Student-t: one χ² draw shared across the whole event.

    ``x = loc + L z · sqrt(df / w)`` with ``z ~ N(0, I)`` and ``w ~ χ²_df`` drawn once
    per sample (not per element), so elements are dependent even when ``L`` is
    diagonal: this is the predictive of a Student-t process, not independent t's.

    Args:
        df: degrees of freedom, a positive float or a ``batch_shape`` tensor.
        loc: ``batch_shape + event_shape`` location.
        scale: ``batch_shape + (N, N)`` scale matrix (covariance is
            ``df / (df - 2) · scale`` for ``df > 2``).
        variance: instead of ``scale``, its diagonal as ``batch_shape + event_shape``.
        scale_tril: instead of ``scale``, its lower Cholesky factor.
        event_ndim: how many trailing dimensions of ``loc`` form the event.
    """

    has_log_prob = True
    # Pathwise gradients flow to loc and scale; the χ² draw itself carries none.
    is_reparameterized = True

    def __init__(
        self,
        df: float | torch.Tensor,
        loc: torch.Tensor,
        scale: torch.Tensor | None = None,
        *,
        variance: torch.Tensor | None = None,
        scale_tril: torch.Tensor | None = None,
        event_ndim: int = 2,
    ) -> None:
        super().__init__(loc, scale, variance, scale_tril, event_ndim)
        df = torch.as_tensor(df, dtype=loc.dtype, device=loc.device)
        if df.ndim > 0 and df.shape != self._batch:
            raise ValueError(
                f"df must be a scalar or have batch_shape {tuple(self._batch)}; "
                f"got {tuple(df.shape)}"
            )
        if not torch.isfinite(df).all() or (df <= 0).any():
            raise ValueError(f"df must be positive and finite; got {df}")
        self._df = df

    @property
    def df(self) -> torch.Tensor:
        return self._df

    @property
    def marginal_scale(self) -> torch.Tensor:
        """``batch + event`` scale of each element's univariate t marginal."""
        return self._scale_diag().sqrt()

    def _df_event(self) -> torch.Tensor:
        """df broadcastable against ``batch + event``."""
        return self._df.reshape(self._df.shape + (1,) * len(self._event))

    @property
    def mean(self) -> torch.Tensor:
        """``loc``; NaN where ``df ≤ 1`` (the mean does not exist)."""
        df = self._df_event().expand_as(self._loc)
        return torch.where(df > 1, self._loc, torch.full_like(self._loc, math.nan))

    @property
    def variance(self) -> torch.Tensor:
        """``df/(df−2)·diag(scale)``; inf for ``1 < df ≤ 2``, NaN for ``df ≤ 1``."""
        df = self._df_event()
        var = self._scale_diag() * df / (df - 2)
        var = torch.where(df > 2, var, torch.full_like(var, math.inf))
        return torch.where(df > 1, var, torch.full_like(var, math.nan))

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        half_df = (self._df / 2).expand(sample_shape + self._batch)
        chi2 = 2 * standard_gamma(half_df, generator=generator)
        factor = (self._df / chi2).sqrt()
        factor = factor.reshape(factor.shape + (1,) * len(self._event))
        return self._loc + self._correlated_noise(sample_shape, generator) * factor

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        log_det, maha = self._log_det_and_maha(value)
        n = math.prod(self._event)
        df = self._df
        return (
            torch.lgamma((df + n) / 2)
            - torch.lgamma(df / 2)
            - 0.5 * n * torch.log(df * math.pi)
            - 0.5 * log_det
            - 0.5 * (df + n) * torch.log1p(maha / df)
        )

    def _marginal(self) -> torch.distributions.StudentT:
        return torch.distributions.StudentT(
            self._df_event(), self._loc, self._scale_diag().sqrt(), validate_args=False
        )

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self._marginal().log_prob(self._check_value(value))

    def _standard_t(self, fn: str, x: torch.Tensor) -> torch.Tensor:
        # torch has no Student-t CDF or inverse CDF; SciPy's are exact to double precision.
        from scipy import stats

        df = self._df_event().expand(x.shape[x.ndim - len(self._batch) - len(self._event) :])
        out = getattr(stats.t, fn)(x.detach().cpu().numpy(), df.detach().cpu().numpy())
        return torch.as_tensor(out, dtype=self.dtype, device=self.device)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        return self._standard_t("cdf", (value - self._loc) / self._scale_diag().sqrt())

    def quantile(self, q) -> torch.Tensor:
        q = self._expand_q(self._check_q(q))
        z = self._standard_t("ppf", q.expand(q.shape[: q.ndim - self._loc.ndim] + self._loc.shape))
        return self._loc + self._scale_diag().sqrt() * z


class MixturePosterior(Posterior):
    """A finite mixture ``Σ_k w_k p_k`` of posteriors with equal shapes.

    Components may be any posteriors (Gaussians over scale draws, Student-t's, ...);
    weights are global (one vector for the whole batch).

    Args:
        components: ``K`` posteriors with identical batch and event shapes.
        weights: ``(K,)`` non-negative weights (normalised here); or
        logits: ``(K,)`` unnormalised log weights.
    """

    def __init__(
        self,
        components: Sequence[Posterior],
        weights: torch.Tensor | None = None,
        *,
        logits: torch.Tensor | None = None,
    ) -> None:
        components = list(components)
        if not components:
            raise ValueError("components must hold at least one posterior")
        first = components[0]
        for i, c in enumerate(components):
            if not isinstance(c, Posterior):
                raise TypeError(f"components[{i}] is a {type(c).__name__}, not a Posterior")
            if c.batch_shape != first.batch_shape or c.event_shape != first.event_shape:
                raise ValueError(
                    f"components[{i}] has batch/event shape {tuple(c.batch_shape)}/"
                    f"{tuple(c.event_shape)}; components[0] has "
                    f"{tuple(first.batch_shape)}/{tuple(first.event_shape)}"
                )
        if (weights is None) == (logits is None):
            raise ValueError("give exactly one of weights= or logits=")
        k = len(components)
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=first.dtype, device=first.device)
            if weights.shape != (k,):
                raise ValueError(f"weights must have shape ({k},); got {tuple(weights.shape)}")
            if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
                raise ValueError("weights must be finite, non-negative and not all zero")
            log_w = weights.log() - weights.sum().log()
        else:
            logits = torch.as_tensor(logits, dtype=first.dtype, device=first.device)
            if logits.shape != (k,):
                raise ValueError(f"logits must have shape ({k},); got {tuple(logits.shape)}")
            if torch.isnan(logits).any() or not (logits > -math.inf).any():
                raise ValueError("logits must not be NaN and not all -inf")
            log_w = logits - logits.logsumexp(0)
        self.components = components
        self.log_weights = log_w
        self.has_log_prob = all(c.has_log_prob for c in components)

    @property
    def weights(self) -> torch.Tensor:
        return self.log_weights.exp()

    @property
    def batch_shape(self) -> torch.Size:
        return self.components[0].batch_shape

    @property
    def event_shape(self) -> torch.Size:
        return self.components[0].event_shape

    @property
    def device(self) -> torch.device:
        return self.components[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.components[0].dtype

    def _weighted_sum(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return sum(w * t for w, t in zip(self.weights, tensors, strict=True))

    @property
    def mean(self) -> torch.Tensor:
        return self._weighted_sum([c.mean for c in self.components])

    @property
    def variance(self) -> torch.Tensor:
        second = self._weighted_sum([c.variance + c.mean**2 for c in self.components])
        return (second - self.mean**2).clamp_min(0)

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        total = math.prod(sample_shape)
        which = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        out = torch.empty(
            (total,) + self.batch_shape + self.event_shape, dtype=self.dtype, device=self.device
        )
        for k in which.unique().tolist():
            rows = (which == k).nonzero(as_tuple=True)[0]
            out[rows] = self.components[k].sample((rows.numel(),), generator=generator)
        return out.reshape(sample_shape + self.batch_shape + self.event_shape)

    def _mix_log(self, per_component: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(per_component)
        log_w = self.log_weights.reshape((-1,) + (1,) * (stacked.ndim - 1))
        return torch.logsumexp(stacked + log_w, dim=0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        return self._mix_log([c.log_prob(value) for c in self.components])

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        return self._mix_log([c.marginal_log_prob(value) for c in self.components])

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        value = self._check_value(value)
        return self._weighted_sum([c.cdf(value) for c in self.components])

    def quantile(self, q, *, tol: float = 1e-10, max_iter: int = 200) -> torch.Tensor:
        """Marginal quantiles by bisection on the mixture CDF, bracketed by the
        components' own quantiles (the mixture's lies between their min and max)."""
        q = self._check_q(q)
        comp_q = torch.stack([c.quantile(q) for c in self.components])
        lo, hi = comp_q.min(0).values, comp_q.max(0).values
        target = self._expand_q(q).expand_as(lo)
        for _ in range(max_iter):
            mid = (lo + hi) / 2
            below = self.cdf(mid) < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            if ((hi - lo) <= tol * (1 + mid.abs())).all():
                break
        return (lo + hi) / 2


class SamplePosterior(Posterior):
    """A posterior known through draws: stored (SGHMC chains) or generated on demand
    (NDP, OFM, LIVI).

    Moments and quantiles are Monte Carlo estimates from all stored draws (or from one
    cached draw of ``num_samples`` from ``sampler``). ``sample`` resamples the stored
    draws uniformly with replacement, or calls ``sampler`` afresh.

    Draws of an MCMC sampler keep their chains: with ``chains=True`` the samples are
    ``(C, D) + batch + event`` (``C`` chains of ``D`` draws each). Moments, quantiles and
    ``sample`` pool all ``C·D`` draws, while :meth:`to_inference_data` /
    :meth:`to_datatree` export the real ``(chain, draw)`` dims, so that R-hat and ESS
    computed from them are diagnostics of the sampler.

    Args:
        samples: ``(S,) + batch_shape + event_shape`` draws, or with ``chains=True``
            ``(C, D) + batch_shape + event_shape``.
        chains: whether ``samples`` has a leading chain dimension.
        sampler: instead of samples, ``sampler(num, generator) -> (num,) + batch + event``.
        num_samples: size of the cached draw used for moments when ``sampler`` is given.
        event_ndim: how many trailing dimensions form the event.
        reparameterized: whether ``sampler`` returns draws with pathwise gradients.
    """

    def __init__(
        self,
        samples: torch.Tensor | None = None,
        *,
        chains: bool = False,
        sampler: Callable[[int, torch.Generator | None], torch.Tensor] | None = None,
        num_samples: int = 1000,
        event_ndim: int = 2,
        reparameterized: bool = False,
    ) -> None:
        if (samples is None) == (sampler is None):
            raise ValueError("give exactly one of samples= or sampler=")
        if chains and sampler is not None:
            raise ValueError("chains=True describes stored samples; a sampler= has no chains")
        if sampler is not None:
            if num_samples < 2:
                raise ValueError(f"num_samples must be at least 2; got {num_samples}")
            with torch.no_grad():
                samples = sampler(num_samples, None)
        if not isinstance(samples, torch.Tensor):
            raise TypeError(f"samples must be a torch.Tensor; got {type(samples).__name__}")
        lead = 2 if chains else 1
        if chains:
            if (
                samples.ndim < event_ndim + 2
                or min(samples.shape[:2]) < 1
                or (samples.shape[0] * samples.shape[1] < 2)
            ):
                raise ValueError(
                    "with chains=True, samples must have shape (C, D) + batch + event with "
                    f"C * D >= 2 and event_ndim={event_ndim}; got {tuple(samples.shape)}"
                )
        elif samples.ndim < event_ndim + 1 or samples.shape[0] < 2:
            raise ValueError(
                "samples must have shape (S,) + batch + event with S >= 2 and "
                f"event_ndim={event_ndim}; got {tuple(samples.shape)}"
            )
        _check_finite(samples, "samples")
        samples = samples.detach()
        self._chains = samples if chains else None
        self._samples = samples.reshape((-1,) + samples.shape[lead:]) if chains else samples
        self._sampler = sampler
        self._batch, self._event = _split_shape(samples.shape[lead:], event_ndim, "samples[0]")
        self.is_reparameterized = reparameterized and sampler is not None

    @property
    def samples(self) -> torch.Tensor:
        """The stored (or cached) ``(S,) + batch + event`` draws, chains pooled
        (chain-major: chain 0's draws first)."""
        return self._samples

    @property
    def chain_samples(self) -> torch.Tensor | None:
        """The ``(C, D) + batch + event`` draws when built with ``chains=True``, else None."""
        return self._chains

    @property
    def num_chains(self) -> int | None:
        """``C`` when built with ``chains=True``, else None."""
        return None if self._chains is None else self._chains.shape[0]

    @property
    def batch_shape(self) -> torch.Size:
        return self._batch

    @property
    def event_shape(self) -> torch.Size:
        return self._event

    @property
    def device(self) -> torch.device:
        return self._samples.device

    @property
    def dtype(self) -> torch.dtype:
        return self._samples.dtype

    @property
    def mean(self) -> torch.Tensor:
        return self._samples.mean(0)

    @property
    def variance(self) -> torch.Tensor:
        # the variance of the draws' own (empirical) distribution, the one ``sample``
        # resamples from; it also equals a mixture over the same draws with zero noise
        return self._samples.var(0, correction=0)

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        total = math.prod(sample_shape)
        if self._sampler is not None:
            draws = self._sampler(total, generator)
        else:
            idx = torch.randint(
                self._samples.shape[0], (total,), generator=generator, device=self.device
            )
            draws = self._samples[idx]
        return draws.reshape(sample_shape + self._batch + self._event)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "SamplePosterior holds draws only and has no density; a model that can give "
            "one (e.g. a mixture over draws with observation noise) returns MixturePosterior"
        )

    marginal_log_prob = log_prob

    def quantile(self, q) -> torch.Tensor:
        """Empirical marginal quantiles of the draws (linear interpolation)."""
        q = self._check_q(q)
        return torch.quantile(self._samples, q.flatten(), dim=0).reshape(
            q.shape + self._batch + self._event
        )

    def _arviz_draws(
        self, num_samples: int | None, num_chains: int | None, generator: torch.Generator | None
    ) -> tuple:
        """The stored chains as they are: all of them by default, or the first
        ``num_chains`` chains' last ``num_samples`` draws."""
        if self._chains is None:
            return super()._arviz_draws(num_samples, num_chains, generator)
        c, d = self._chains.shape[:2]
        num_chains = c if num_chains is None else num_chains
        num_samples = d if num_samples is None else num_samples
        if not (1 <= num_chains <= c and 1 <= num_samples <= d):
            raise ValueError(
                f"this posterior stores {c} chains of {d} draws; num_chains and num_samples "
                f"must lie in [1, {c}] and [1, {d}]; got {num_chains} and {num_samples}"
            )
        draws = self._chains[:num_chains, d - num_samples :]
        dims = [f"batch_{i}" for i in range(len(self.batch_shape))] + self._event_dim_names()
        return draws.detach().cpu().numpy(), dims


class CategoricalPosterior(Posterior):
    """Predictive distribution over class labels at ``n`` inputs.

    The event is the ``(n,)`` vector of labels; points are independent given the
    predictive class probabilities (the usual predictive for classification tables).
    ``mean`` and ``variance`` are those of the one-hot label vector, so they are
    ``batch + (n, C)``: ``mean`` is the predictive class probabilities.

    Args:
        probs: ``batch_shape + (n, C)`` class probabilities; or
        logits: ``batch_shape + (n, C)`` unnormalised log probabilities.
    """

    has_log_prob = True

    def __init__(self, probs: torch.Tensor | None = None, *, logits: torch.Tensor | None = None):
        if (probs is None) == (logits is None):
            raise ValueError("give exactly one of probs= or logits=")
        given, name = (probs, "probs") if probs is not None else (logits, "logits")
        if not isinstance(given, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(given).__name__}")
        if given.ndim < 2 or given.shape[-1] < 2:
            raise ValueError(
                f"{name} must have shape batch + (n, C) with C >= 2; got {tuple(given.shape)}"
            )
        if torch.isnan(given).any() or (probs is not None and not torch.isfinite(probs).all()):
            raise ValueError(f"{name} contains NaN or inf")
        if probs is not None:
            if (probs < 0).any() or not torch.allclose(
                probs.sum(-1), torch.ones((), dtype=probs.dtype), atol=1e-5
            ):
                raise ValueError("probs must be non-negative and sum to one over the last dim")
            self._logits = probs.clamp_min(0).log()
        else:
            self._logits = logits - logits.logsumexp(-1, keepdim=True)

    @property
    def logits(self) -> torch.Tensor:
        """``batch + (n, C)`` normalised log probabilities."""
        return self._logits

    @property
    def probs(self) -> torch.Tensor:
        return self._logits.exp()

    @property
    def num_classes(self) -> int:
        return self._logits.shape[-1]

    @property
    def batch_shape(self) -> torch.Size:
        return self._logits.shape[:-2]

    @property
    def event_shape(self) -> torch.Size:
        return self._logits.shape[-2:-1]

    @property
    def device(self) -> torch.device:
        return self._logits.device

    @property
    def dtype(self) -> torch.dtype:
        return self._logits.dtype

    @property
    def mean(self) -> torch.Tensor:
        """Predictive class probabilities, ``batch + (n, C)``."""
        return self.probs

    @property
    def variance(self) -> torch.Tensor:
        p = self.probs
        return p * (1 - p)

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        flat = self.probs.reshape(-1, self.num_classes)
        total = math.prod(sample_shape)
        labels = torch.multinomial(flat, total, replacement=True, generator=generator)
        return labels.T.reshape(sample_shape + self.batch_shape + self.event_shape)

    def _check_labels(self, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor; got {type(labels).__name__}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"labels must be an integer tensor; got dtype {labels.dtype}")
        tail = self.batch_shape + self.event_shape
        if labels.ndim < len(tail) or labels.shape[labels.ndim - len(tail) :] != tail:
            raise ValueError(
                f"labels must have shape sample_shape + {tuple(tail)}; got {tuple(labels.shape)}"
            )
        if (labels < 0).any() or (labels >= self.num_classes).any():
            raise ValueError(f"labels must lie in [0, {self.num_classes}); got values outside")
        return labels.to(self.device)

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log predictive probability of each label: ``sample + batch + (n,)``."""
        labels = self._check_labels(value)
        logits = self._logits.expand(labels.shape + (self.num_classes,))
        return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log predictive probability of all ``n`` labels together: ``sample + batch``."""
        return self.marginal_log_prob(value).sum(-1)

    def quantile(self, q) -> torch.Tensor:
        raise NotImplementedError("class labels are unordered, so they have no quantiles")

    def _event_dim_names(self) -> list[str]:
        return ["point"]
