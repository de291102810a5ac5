"""BoTorch bridge: a fitted bayesfn model as a BoTorch ``Model`` for Bayesian optimisation.

:class:`BoTorchModel` wraps any fitted :class:`~bayesfn.model.Model` whose posterior is
over function values (event ``(n, m)``) so that BoTorch's acquisition functions,
samplers and optimisers (``optimize_acqf``, ``MaxPosteriorSampling``) can use it.
Its ``posterior(X)`` takes ``batch_shape x q x d`` inputs and returns a BoTorch
posterior over ``batch_shape x q x m`` values, converted by
:func:`to_botorch_posterior`:

* :class:`~bayesfn.GaussianPosterior` → BoTorch's ``GPyTorchPosterior`` over a
  ``MultivariateNormal`` (one output) or an interleaved ``MultitaskMultivariateNormal``
  (``m`` outputs, event ``q x m``), so that analytic and Monte Carlo acquisition
  functions treat it exactly as a BoTorch GP.
* :class:`~bayesfn.StudentTPosterior`, :class:`~bayesfn.MixturePosterior` and stored
  :class:`~bayesfn.SamplePosterior` draws (MCMC chains pooled) →
  :class:`LocationScaleMixturePosterior`, which draws from fixed N(0, 1) base samples
  (BoTorch's ``base_sample_shape`` / ``rsample_from_base_samples`` mechanism, so that
  quasi-Monte Carlo acquisition values are deterministic functions of ``X``): the
  Gaussian part from the first ``q·m`` base samples, the chi-square mixing of a
  Student-t and the choice of a mixture component (or of a stored draw) from extra
  base samples through exact inverse CDFs, held fixed as well.
* a :class:`~bayesfn.SamplePosterior` with a ``sampler`` (draws generated on demand,
  as by the process learners) → :class:`GeneratedSamplePosterior`, whose fixed base
  samples fix the seed of the generator handed to the sampler.

Analytic acquisition functions (``ExpectedImprovement``, ``UpperConfidenceBound``)
read only ``mean`` and ``variance``: for a non-Gaussian posterior they are Gaussian
approximations; the Monte Carlo ones (``qLogExpectedImprovement``, ...) use the full
posterior.

Example:
    >>> from botorch.acquisition import qLogExpectedImprovement
    >>> from botorch.optim import optimize_acqf
    >>> model = BoTorchModel(GaussianProcess().fit(x, y, progress_bar=False))
    >>> acqf = qLogExpectedImprovement(model, best_f=y.max())
    >>> x_next, _ = optimize_acqf(acqf, bounds, q=1, num_restarts=4, raw_samples=64)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

try:
    import botorch  # noqa: F401 - fail here with the extra's name, not deep inside
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "bayesfn.integrations.botorch needs BoTorch: pip install 'bayesfn[botorch]'"
    ) from err

import torch
from botorch.models.model import Model as _BoTorchModelBase
from botorch.posteriors import GPyTorchPosterior
from botorch.posteriors import Posterior as _BoTorchPosteriorBase
from botorch.sampling.get_sampler import GetSampler
from botorch.sampling.normal import IIDNormalSampler, SobolQMCNormalSampler
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DenseLinearOperator, DiagLinearOperator
from torch.quasirandom import SobolEngine

from bayesfn.model import Model
from bayesfn.posterior import (
    GaussianPosterior,
    MixturePosterior,
    Posterior,
    SamplePosterior,
    StudentTPosterior,
)

__all__ = [
    "BoTorchModel",
    "GeneratedSamplePosterior",
    "LocationScaleMixturePosterior",
    "to_botorch_posterior",
]


# --------------------------------------------------------------------- helpers
def _check_event(posterior: Posterior) -> tuple[int, int]:
    """``(q, m)`` of a function-space posterior; a clear error for anything else."""
    if len(posterior.event_shape) != 2:
        raise TypeError(
            "posterior must be over function values with event (n, m) (a regression "
            f"model's posterior); got {type(posterior).__name__} with event_shape "
            f"{tuple(posterior.event_shape)}"
        )
    q, m = posterior.event_shape
    return q, m


def _output_index(output_indices: Sequence[int] | None, m: int) -> list[int] | None:
    if output_indices is None:
        return None
    idx = [int(i) for i in output_indices]
    if not idx or any(not 0 <= i < m for i in idx):
        raise ValueError(
            f"output_indices must be a non-empty list of outputs in [0, {m}); got {idx}"
        )
    return idx


def _reshape_batch(t: torch.Tensor, batch: torch.Size, nbatch: int) -> torch.Tensor:
    """Replace the ``nbatch`` leading batch dims of ``t`` by ``batch``."""
    return t.reshape(batch + t.shape[nbatch:])


# ------------------------------------------------------------------- Gaussian
def _gaussian_to_botorch(
    post: GaussianPosterior,
    batch: torch.Size,
    output_indices: list[int] | None,
    dtype: torch.dtype,
) -> GPyTorchPosterior:
    q, m = _check_event(post)
    nb = len(post.batch_shape)
    mean = _reshape_batch(post.mean, batch, nb).to(dtype)
    idx = output_indices if output_indices is not None else list(range(m))
    flat = [i * m + j for i in range(q) for j in idx]  # row-major (point, output)
    mean = mean[..., idx]
    if post.is_diagonal:
        var = _reshape_batch(post.variance, batch, nb).to(dtype)[..., idx]
        cov = DiagLinearOperator(var.reshape(batch + (-1,)))
    else:
        cov = _reshape_batch(post.covariance_matrix, batch, nb).to(dtype)
        if len(idx) != m:
            cov = cov[..., flat, :][..., flat]
        # lazy, so that sampling factorises with GPyTorch's escalating jitter (as for
        # BoTorch's own GPs) rather than torch's plain Cholesky at construction
        cov = DenseLinearOperator(cov)
    if len(idx) == 1:
        return GPyTorchPosterior(MultivariateNormal(mean[..., 0], cov))
    return GPyTorchPosterior(MultitaskMultivariateNormal(mean, cov, interleaved=True))


class _QBatchPosterior(_BoTorchPosteriorBase):
    """The shapes shared by the bridge's posteriors: ``batch x q x m`` values, where
    ``_batch``, ``_q``, ``_m`` and the kept outputs ``_idx`` are set by the subclass."""

    @property
    def batch_shape(self) -> torch.Size:
        return self._batch

    @property
    def event_shape(self) -> torch.Size:
        m = self._m if self._idx is None else len(self._idx)
        return torch.Size([self._q, m])

    def _extended_shape(self, sample_shape: torch.Size = torch.Size()) -> torch.Size:  # noqa: B008
        return torch.Size(sample_shape) + self._batch + self.event_shape


# ------------------------------------------------- mixtures of location-scale
class LocationScaleMixturePosterior(_QBatchPosterior):
    """A BoTorch posterior over ``batch_shape x q x m`` values that is a mixture of
    location–scale components with global weights: one Student-t (``K = 1``), a
    mixture of Gaussians / Student-t's, or ``K`` stored draws (point masses).

    A draw chooses component ``k`` with probability ``w_k`` and returns
    ``loc_k + L_k z · sqrt(df_k / c)`` with ``z ~ N(0, I)`` over the flattened
    ``q·m`` event and ``c ~ χ²(df_k)`` (the factor is 1 for a Gaussian or point-mass
    component). All randomness comes from N(0, 1) base samples of shape
    ``base_sample_shape = batch_shape x D``: ``z`` is the first ``q·m`` of them (when
    some component has a scale), then one that picks ``k`` through ``Φ`` and the
    inverse CDF of the weights (when ``K > 1``), then one that gives ``c`` through
    ``Φ`` and the χ² inverse CDF (when some ``df`` is finite). Fixed base samples
    therefore fix every random choice, the mixing included; the draw is
    differentiable in ``loc`` and ``L`` (the weights and ``df`` do not depend on
    the inputs, so the discrete choice carries no gradient to lose).

    Built by :func:`to_botorch_posterior`; the arguments below are its internal form.

    Args:
        loc: ``K x batch_shape x q x m`` component locations.
        scale_tril: ``K x batch_shape x N x N`` lower Cholesky factors over the
            row-major flattened event (``N = q·m``), or None.
        std: instead of ``scale_tril``, ``K x batch_shape x q x m`` scales of
            independent elements; both None means point masses.
        df: ``K x batch_shape`` degrees of freedom (``inf`` for a Gaussian
            component), or None when every component is Gaussian.
        log_weights: ``(K,)`` normalised log weights.
        mean: ``batch_shape x q x m`` moments (from bayesfn).
        variance: as ``mean`` (described together above).
        output_indices: outputs kept (draws are made over all ``m`` and then selected).
    """

    def __init__(
        self,
        loc: torch.Tensor,
        *,
        scale_tril: torch.Tensor | None,
        std: torch.Tensor | None,
        df: torch.Tensor | None,
        log_weights: torch.Tensor,
        mean: torch.Tensor,
        variance: torch.Tensor,
        output_indices: list[int] | None = None,
    ) -> None:
        self._loc = loc
        self._tril = scale_tril
        self._std = std
        self._df = df
        self._log_w = log_weights
        self._k = loc.shape[0]
        self._batch = loc.shape[1:-2]
        self._q, self._m = loc.shape[-2:]
        self._idx = output_indices
        keep = output_indices if output_indices is not None else slice(None)
        self._mean = mean[..., keep]
        self._variance = variance[..., keep]
        self._has_scale = scale_tril is not None or std is not None
        n = self._q * self._m
        self._z_dims = n if self._has_scale else 0
        self._k_dim = self._z_dims if self._k > 1 else None
        self._t_dim = (self._z_dims + (self._k > 1)) if df is not None else None
        self._num_base = max(1, self._z_dims + (self._k > 1) + (df is not None))

    # ------------------------------------------------------------- shapes
    @property
    def device(self) -> torch.device:
        return self._loc.device

    @property
    def dtype(self) -> torch.dtype:
        return self._loc.dtype

    @property
    def base_sample_shape(self) -> torch.Size:
        """``batch_shape x D``: see the class docstring for the ``D`` columns."""
        return self._batch + torch.Size([self._num_base])

    @property
    def batch_range(self) -> tuple[int, int]:
        """All batch dims are t-batches: base samples are shared across them."""
        return (0, -1)

    # ------------------------------------------------------------ moments
    @property
    def mean(self) -> torch.Tensor:
        """``batch_shape x q x m`` mean (bayesfn's)."""
        return self._mean

    @property
    def variance(self) -> torch.Tensor:
        """``batch_shape x q x m`` marginal variance (bayesfn's)."""
        return self._variance

    # ----------------------------------------------------------- sampling
    def rsample(self, sample_shape: torch.Size | None = None) -> torch.Tensor:
        """Fresh draws, ``sample_shape x batch_shape x q x m``, from i.i.d. base samples."""
        sample_shape = torch.Size([1]) if sample_shape is None else torch.Size(sample_shape)
        base = torch.randn(
            sample_shape + self.base_sample_shape, dtype=self.dtype, device=self.device
        )
        return self.rsample_from_base_samples(sample_shape, base)

    def rsample_from_base_samples(
        self, sample_shape: torch.Size, base_samples: torch.Tensor
    ) -> torch.Tensor:
        """Draws ``sample_shape x batch_shape x q x m`` from ``base_samples`` of shape
        ``sample_shape x base_sample_shape`` (collapsed batch dims broadcast)."""
        sample_shape = torch.Size(sample_shape)
        expect = sample_shape + self.base_sample_shape
        if base_samples.shape != expect:
            try:
                base_samples = base_samples.expand(expect)
            except RuntimeError:
                raise ValueError(
                    f"base_samples must have shape sample_shape x base_sample_shape = "
                    f"{tuple(expect)}; got {tuple(base_samples.shape)}"
                ) from None
        base = base_samples.to(self.dtype).reshape((-1,) + expect[len(sample_shape) :])
        n = self._q * self._m
        if self._k_dim is not None:
            u = torch.special.ndtr(base[..., self._k_dim])  # (s, *batch)
            cum = self._log_w.exp().cumsum(0)
            k = torch.searchsorted(cum.contiguous(), u.reshape(-1).contiguous(), right=True)
            k = k.clamp_max(self._k - 1).reshape(u.shape)
        else:
            k = torch.zeros(base.shape[:-1], dtype=torch.long, device=self.device)
        loc = self._loc.reshape((self._k,) + self._batch + (n,))
        draw = torch.take_along_dim(loc, k.unsqueeze(-1), dim=0)  # (s, *batch, n)
        if self._has_scale:
            z = base[..., :n]
            if self._tril is not None:
                tril = torch.take_along_dim(self._tril, k[..., None, None], dim=0)
                noise = (tril @ z.unsqueeze(-1)).squeeze(-1)
            else:
                std = self._std.reshape((self._k,) + self._batch + (n,))
                noise = torch.take_along_dim(std, k.unsqueeze(-1), dim=0) * z
            if self._t_dim is not None:
                df = self._df.expand((self._k,) + self._batch)
                df_k = torch.take_along_dim(df, k, dim=0)  # (s, *batch)
                noise = noise * _student_factor(df_k, base[..., self._t_dim]).unsqueeze(-1)
            draw = draw + noise
        draw = draw.reshape(sample_shape + self._batch + (self._q, self._m))
        return draw if self._idx is None else draw[..., self._idx]


def _student_factor(df: torch.Tensor, u_normal: torch.Tensor) -> torch.Tensor:
    """``sqrt(df / c)`` with ``c = F⁻¹_{χ²(df)}(Φ(u))``; 1 where ``df`` is infinite.

    torch has no inverse incomplete gamma function; SciPy's ``gammaincinv`` is exact
    to double precision. No gradient flows to ``df`` or to the base sample.
    """
    from scipy import special

    finite = torch.isfinite(df)
    p = torch.special.ndtr(u_normal.detach().double()).clamp(1e-300, 1 - 1e-16)
    half = torch.where(finite, df.detach().double() / 2, torch.ones_like(p))
    c = 2 * special.gammaincinv(half.cpu().numpy(), p.cpu().numpy())
    c = torch.as_tensor(c, dtype=df.dtype, device=df.device).clamp_min(1e-300)
    factor = torch.where(finite, (df.detach() / c).sqrt(), torch.ones_like(c))
    return factor.to(u_normal.dtype)


def _components(post: Posterior, batch: torch.Size, nb: int, dtype: torch.dtype) -> dict:
    """loc / tril / std / df of one location-scale component, batch reshaped."""
    student = isinstance(post, StudentTPosterior)
    out = {"loc": _reshape_batch(post.loc, batch, nb).to(dtype), "tril": None, "std": None}
    out["df"] = None
    if post.is_diagonal:
        # the scale's diagonal, not the Student-t's variance
        std = post.marginal_scale if student else post.stddev
        out["std"] = _reshape_batch(std, batch, nb).to(dtype)
    else:
        out["tril"] = _reshape_batch(post.scale_tril, batch, nb).to(dtype)
    if student:
        out["df"] = post.df.to(dtype).expand(post.batch_shape).reshape(batch)
    return out


def _mixture_to_botorch(
    post: Posterior, batch: torch.Size, output_indices: list[int] | None, dtype: torch.dtype
) -> LocationScaleMixturePosterior:
    q, m = _check_event(post)
    nb = len(post.batch_shape)
    mean = _reshape_batch(post.mean, batch, nb).to(dtype)
    variance = _reshape_batch(post.variance, batch, nb).to(dtype)
    if isinstance(post, SamplePosterior):
        draws = _reshape_batch(post.samples.movedim(0, -1), batch, nb).movedim(-1, 0)
        k = draws.shape[0]
        log_w = torch.full((k,), -math.log(k), dtype=dtype, device=draws.device)
        return LocationScaleMixturePosterior(
            draws.to(dtype),
            scale_tril=None,
            std=None,
            df=None,
            log_weights=log_w,
            mean=mean,
            variance=variance,
            output_indices=output_indices,
        )
    comps = post.components if isinstance(post, MixturePosterior) else [post]
    for i, c in enumerate(comps):
        if not isinstance(c, GaussianPosterior | StudentTPosterior):
            raise TypeError(
                "a MixturePosterior goes to BoTorch when its components are "
                f"GaussianPosterior or StudentTPosterior; component {i} is a "
                f"{type(c).__name__}"
            )
    parts = [_components(c, batch, nb, dtype) for c in comps]
    loc = torch.stack([p["loc"] for p in parts])
    tril = std = None
    if any(p["tril"] is not None for p in parts):
        n = q * m
        trils = []
        for p in parts:
            if p["tril"] is not None:
                trils.append(p["tril"])
            else:
                trils.append(torch.diag_embed(p["std"].reshape(batch + (n,))))
        tril = torch.stack(trils)
    else:
        std = torch.stack([p["std"] for p in parts])
    df = None
    if any(p["df"] is not None for p in parts):
        inf = torch.full(batch, math.inf, dtype=dtype, device=loc.device)
        df = torch.stack([p["df"] if p["df"] is not None else inf for p in parts])
    if isinstance(post, MixturePosterior):
        log_w = post.log_weights.to(dtype)
    else:
        log_w = torch.zeros(1, dtype=dtype, device=loc.device)
    return LocationScaleMixturePosterior(
        loc,
        scale_tril=tril,
        std=std,
        df=df,
        log_weights=log_w,
        mean=mean,
        variance=variance,
        output_indices=output_indices,
    )


# -------------------------------------------------------- generated samples
class GeneratedSamplePosterior(_QBatchPosterior):
    """A BoTorch posterior over draws generated on demand by a bayesfn
    :class:`~bayesfn.SamplePosterior` built with ``sampler=`` (as the process
    learners' are).

    Such a sampler takes a ``torch.Generator``, not base samples, so fixed base
    samples (``batch_shape x 1``, shared across t-batches) fix the generator's seed
    instead: the same base samples give the same draws, which makes Monte Carlo
    acquisition values deterministic in ``X`` as BoTorch's sample-average
    optimisation needs. ``rsample`` differentiates only when the sampler is
    reparameterised.

    Args:
        posterior: the bayesfn posterior (event ``q x m``).
        batch: the ``batch_shape`` its flat batch dim is reshaped to.
        output_indices: outputs kept.
        dtype: dtype of the returned draws.
    """

    def __init__(
        self,
        posterior: SamplePosterior,
        batch: torch.Size,
        output_indices: list[int] | None,
        dtype: torch.dtype,
    ) -> None:
        self._post = posterior
        self._nb = len(posterior.batch_shape)
        self._batch = batch
        self._idx = output_indices
        self._dtype = dtype
        self._q, self._m = posterior.event_shape
        keep = output_indices if output_indices is not None else slice(None)
        self._mean = _reshape_batch(posterior.mean, batch, self._nb).to(dtype)[..., keep]
        self._variance = _reshape_batch(posterior.variance, batch, self._nb).to(dtype)[..., keep]

    @property
    def device(self) -> torch.device:
        return self._post.device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def base_sample_shape(self) -> torch.Size:
        return self._batch + torch.Size([1])

    @property
    def batch_range(self) -> tuple[int, int]:
        return (0, -1)

    @property
    def mean(self) -> torch.Tensor:
        """``batch_shape x q x m`` Monte Carlo mean (bayesfn's cached draw)."""
        return self._mean

    @property
    def variance(self) -> torch.Tensor:
        """``batch_shape x q x m`` Monte Carlo variance (bayesfn's cached draw)."""
        return self._variance

    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        if self._post.is_reparameterized:
            draws = self._post.rsample(sample_shape, generator=generator)
        else:
            draws = self._post.sample(sample_shape, generator=generator)
        k = len(sample_shape)
        draws = draws.reshape(sample_shape + self._batch + draws.shape[k + self._nb :])
        draws = draws.to(self._dtype)
        return draws if self._idx is None else draws[..., self._idx]

    def rsample(self, sample_shape: torch.Size | None = None) -> torch.Tensor:
        """Fresh draws, ``sample_shape x batch_shape x q x m``."""
        sample_shape = torch.Size([1]) if sample_shape is None else torch.Size(sample_shape)
        return self._draw(sample_shape, None)

    def rsample_from_base_samples(
        self, sample_shape: torch.Size, base_samples: torch.Tensor
    ) -> torch.Tensor:
        """Draws whose generator is seeded by a hash of ``base_samples``."""
        seed = zlib.crc32(base_samples.detach().double().cpu().numpy().tobytes())
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        return self._draw(torch.Size(sample_shape), gen)


# -------------------------------------------------------------- conversion
def to_botorch_posterior(
    posterior: Posterior,
    *,
    batch_shape: torch.Size | Sequence[int] | None = None,
    output_indices: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> _BoTorchPosteriorBase:
    """Present a bayesfn posterior over function values as a BoTorch posterior.

    Args:
        posterior: a :class:`~bayesfn.GaussianPosterior`,
            :class:`~bayesfn.StudentTPosterior`, :class:`~bayesfn.MixturePosterior`
            (of Gaussians / Student-t's) or :class:`~bayesfn.SamplePosterior` with
            event ``(q, m)`` and batch ``b`` (any shape).
        batch_shape: reshape bayesfn's batch dims to this (same number of elements);
            default: keep them.
        output_indices: keep only these outputs.
        dtype: dtype of the result (default: the posterior's).

    Returns:
        A BoTorch posterior over ``batch_shape x q x m`` values: a ``GPyTorchPosterior``
        for a Gaussian, a :class:`LocationScaleMixturePosterior` for Student-t,
        mixture and stored draws, a :class:`GeneratedSamplePosterior` for draws made
        on demand.
    """
    if not isinstance(posterior, Posterior):
        raise TypeError(f"posterior must be a bayesfn Posterior; got {type(posterior).__name__}")
    _, m = _check_event(posterior)
    batch = posterior.batch_shape if batch_shape is None else torch.Size(batch_shape)
    if batch.numel() != posterior.batch_shape.numel():
        raise ValueError(
            f"batch_shape {tuple(batch)} must hold as many elements as the posterior's "
            f"batch_shape {tuple(posterior.batch_shape)}"
        )
    idx = _output_index(output_indices, m)
    dtype = posterior.dtype if dtype is None else dtype
    if isinstance(posterior, GaussianPosterior):
        return _gaussian_to_botorch(posterior, batch, idx, dtype)
    if isinstance(posterior, SamplePosterior) and posterior._sampler is not None:
        return GeneratedSamplePosterior(posterior, batch, idx, dtype)
    if isinstance(posterior, StudentTPosterior | MixturePosterior | SamplePosterior):
        return _mixture_to_botorch(posterior, batch, idx, dtype)
    raise TypeError(
        "posterior must be a GaussianPosterior, StudentTPosterior, MixturePosterior or "
        f"SamplePosterior; got {type(posterior).__name__}"
    )


def _sampler_for_normal_base(posterior, sample_shape, *, seed=None):
    """Sobol quasi-MC N(0, 1) base samples, or i.i.d. ones beyond Sobol's dimension."""
    sampler = SobolQMCNormalSampler(sample_shape=sample_shape, seed=seed)
    dims = sampler._get_collapsed_shape(posterior=posterior)[len(sample_shape) :].numel()
    if dims > SobolEngine.MAXDIM:
        return IIDNormalSampler(sample_shape=sample_shape, seed=seed)
    return sampler


GetSampler.register(LocationScaleMixturePosterior)(_sampler_for_normal_base)
GetSampler.register(GeneratedSamplePosterior)(_sampler_for_normal_base)


# ------------------------------------------------------------------- model
def _depends_on(tensor: torch.Tensor) -> bool:
    return tensor.requires_grad


def _carries_gradient(post: Posterior) -> bool:
    """Whether the bayesfn posterior's draws are differentiable functions of ``X``."""
    if isinstance(post, GaussianPosterior):
        return _depends_on(post.mean) or _depends_on(post.covariance_matrix)
    if isinstance(post, StudentTPosterior):
        return _depends_on(post.loc)
    if isinstance(post, MixturePosterior):
        return any(_carries_gradient(c) for c in post.components)
    if isinstance(post, SamplePosterior):
        return post.is_reparameterized
    return False


class BoTorchModel(_BoTorchModelBase):
    """A fitted bayesfn model presented as a BoTorch ``Model``.

    Args:
        model: a fitted :class:`~bayesfn.model.Model` whose ``posterior(x)`` takes
            ``(n, d)`` or ``(b, n, d)`` inputs and is over function values (event
            ``(n, m)``): ``GaussianProcess``, ``ScaleMixtureNNGP``, a regression
            ``BNN``, a process learner given ``posterior_kwargs={"context": ...}``.
        posterior_kwargs: extra keywords for every ``model.posterior`` call (e.g.
            ``context=(x_c, y_c)``, ``num_samples=``).
        num_outputs: the model's number of outputs ``m``; read from the fitted model
            (``train_y_`` / ``num_outputs_``) when not given.

    ``posterior(X)`` takes a ``batch_shape x q x d`` tensor (any number of batch
    dims; they are flattened for the bayesfn call and restored) and returns a
    BoTorch posterior over ``batch_shape x q x m`` values (see
    :func:`to_botorch_posterior`), in ``X``'s dtype. Refitting the wrapped model in
    place is seen by the next ``posterior`` call.

    Gradient-based acquisition optimisation needs a posterior that is
    differentiable in ``X`` (``GaussianProcess``'s is). Models that compute their
    predictive without gradients (stored-draw BNNs, ``ScaleMixtureNNGP``) raise a
    ``ValueError`` when asked for a posterior at an ``X`` that requires grad; use
    ``optimize_acqf(..., options={"with_grad": False})`` for them.
    """

    def __init__(
        self,
        model: Model,
        *,
        posterior_kwargs: Mapping[str, Any] | None = None,
        num_outputs: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, Model):
            raise TypeError(f"model must be a bayesfn Model; got {type(model).__name__}")
        if not model.is_fitted:
            raise ValueError(
                f"model must be fitted before it is wrapped; this {type(model).__name__} "
                "is not (call fit() first)"
            )
        if posterior_kwargs is not None and not isinstance(posterior_kwargs, Mapping):
            raise TypeError(
                f"posterior_kwargs must be a dict; got {type(posterior_kwargs).__name__}"
            )
        reserved = {"observation_noise"} & set(posterior_kwargs or {})
        if reserved:
            raise ValueError(
                "posterior_kwargs must not hold observation_noise: BoTorch passes it to "
                "posterior() itself"
            )
        if num_outputs is None:
            num_outputs = _infer_num_outputs(model)
        if not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(f"num_outputs must be a positive int; got {num_outputs!r}")
        self.model = model
        self.posterior_kwargs = dict(posterior_kwargs or {})
        self._num_outputs = num_outputs

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def posterior(
        self,
        X: torch.Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | torch.Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> _BoTorchPosteriorBase:
        """The posterior at ``X``, a ``batch_shape x q x d`` tensor (or ``q x d``).

        Args:
            X: inputs; the last dim must be the model's number of features.
            output_indices: outputs to keep (default: all ``m``).
            observation_noise: ``True`` for the predictive of noisy observations
                (passed to the bayesfn model); tensors of noise levels are not
                supported.
            posterior_transform: a BoTorch ``PosteriorTransform`` applied last.

        Returns:
            A BoTorch posterior over ``batch_shape x q x m`` values.
        """
        if kwargs:
            raise TypeError(
                f"BoTorchModel.posterior got unexpected keyword(s) {sorted(kwargs)}; "
                "pass model-specific ones through posterior_kwargs= at construction"
            )
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"X must be a torch.Tensor; got {type(X).__name__}")
        if X.ndim < 2:
            raise ValueError(
                f"X must have shape batch_shape x q x d (or q x d); got {tuple(X.shape)}"
            )
        if isinstance(observation_noise, torch.Tensor):
            raise NotImplementedError(
                "observation_noise as a tensor of noise levels is not supported: bayesfn "
                "models hold their own noise model; pass True or False"
            )
        batch, (q, d) = X.shape[:-2], X.shape[-2:]
        flat = X.reshape(-1, q, d) if len(batch) else X
        options = dict(self.posterior_kwargs)
        if observation_noise:
            options["observation_noise"] = True
        post = self.model.posterior(flat, **options)
        if X.requires_grad and torch.is_grad_enabled() and not _carries_gradient(post):
            raise ValueError(
                f"X requires grad, but {type(self.model).__name__}.posterior returns a "
                f"{type(post).__name__} without gradients with respect to its inputs; "
                "optimise the acquisition function gradient-free, e.g. "
                "optimize_acqf(..., options={'with_grad': False})"
            )
        expect = (flat.shape[0], q) if len(batch) else (q,)
        got = tuple(post.batch_shape) + tuple(post.event_shape[:1])
        if got != expect:
            raise ValueError(
                f"{type(self.model).__name__}.posterior gave batch + points {got} for "
                f"inputs of shape {tuple(flat.shape)}; expected {expect}"
            )
        result = to_botorch_posterior(
            post, batch_shape=batch, output_indices=output_indices, dtype=X.dtype
        )
        if posterior_transform is not None:
            result = posterior_transform(result)
        return result

    def condition_on_observations(self, X: torch.Tensor, Y: torch.Tensor, **kwargs: Any):
        raise NotImplementedError(
            "BoTorchModel cannot condition on new data in place: refit the bayesfn model "
            "on the extended data (fantasy-based acquisition functions are unsupported)"
        )


def _infer_num_outputs(model: Model) -> int:
    if hasattr(model, "num_outputs_"):
        return int(model.num_outputs_)
    y = getattr(model, "train_y_", None)
    if isinstance(y, torch.Tensor):
        return 1 if y.ndim == 1 else int(y.shape[-1])
    raise ValueError(
        f"cannot read the number of outputs of a {type(model).__name__}; pass num_outputs="
    )
