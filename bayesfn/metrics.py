"""Predictive-quality metrics computed from a :class:`~bayesfn.posterior.Posterior`.

Every function takes torch tensors (numpy arrays and nested lists are converted) and
returns a Python ``float`` for a summary over all points, or a tensor where the docstring
says so. Shapes follow the posterior contract of ``DESIGN.md`` §3: a function-space
posterior has ``batch_shape + event_shape == batch + (n, m)`` and the targets ``y`` must
have exactly that shape; a :class:`~bayesfn.posterior.CategoricalPosterior` has
``event_shape == (n,)`` and takes integer labels of shape ``batch + (n,)``.

Nothing is broadcast: a target whose shape differs from the posterior's, a NaN or inf in
the targets, or a label outside ``[0, C)`` raises a ``ValueError`` (``TypeError`` for a
wrong dtype) that names the argument, the expected shape and the shape given.

Summary of the regression metrics (``y`` real-valued):

- :func:`rmse` — root mean squared error of the predictive mean.
- :func:`nll` — mean negative marginal log density per point (what UCI tables report).
- :func:`crps` — continuous ranked probability score; closed form for Gaussian
  posteriors, otherwise the unbiased ("fair") sample estimator.
- :func:`coverage`, :func:`interval_width` — central-interval coverage and width.
- :func:`quantile_calibration` — observed frequency below each predicted quantile.

and the classification metrics (integer ``labels``):

- :func:`accuracy`, :func:`nll` (with a categorical posterior), :func:`ece`,
  :func:`calibration_curve`.

and :func:`ood_auroc`, how well an uncertainty score separates out-of-distribution
inputs from in-distribution ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "CalibrationCurve",
    "accuracy",
    "calibration_curve",
    "coverage",
    "crps",
    "ece",
    "interval_width",
    "nll",
    "ood_auroc",
    "quantile_calibration",
    "rmse",
]


# --------------------------------------------------------------------------- helpers


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    """Convert ``value`` to a tensor without copying tensors; name the argument on failure."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be a torch.Tensor or array-like; got {type(value).__name__}"
        ) from err


def _is_posterior(obj: Any) -> bool:
    """Duck-typed: anything that is not an array and carries ``mean`` and ``event_shape``."""
    if isinstance(obj, (torch.Tensor, np.ndarray, list, tuple)):
        return False
    return hasattr(obj, "event_shape") and hasattr(obj, "mean")


def _is_kind(posterior: Any, class_name: str) -> bool:
    """Whether ``posterior`` is a ``bayesfn.posterior.<class_name>``.

    ``bayesfn.posterior`` is imported lazily so that this module stays on the floor of the
    dependency graph; where it cannot be imported the class hierarchy is matched by name.
    """
    try:
        from bayesfn import posterior as _posterior_module
    except ImportError:
        cls = None
    else:
        cls = getattr(_posterior_module, class_name, None)
    if isinstance(cls, type):
        return isinstance(posterior, cls)
    return any(c.__name__ == class_name for c in type(posterior).__mro__)


def _posterior_shape(posterior: Any) -> tuple[int, ...]:
    return _shape(posterior.batch_shape) + _shape(posterior.event_shape)


def _check_shape(value: torch.Tensor, expected: tuple[int, ...], name: str, what: str) -> None:
    if _shape(value.shape) != expected:
        raise ValueError(
            f"{name} must have shape {expected} ({what}); got shape {_shape(value.shape)}. "
            "Shapes are not broadcast: reshape explicitly, e.g. y.reshape(n, 1) for one "
            "output."
        )


def _check_finite(value: torch.Tensor, name: str) -> None:
    if value.is_floating_point() or value.is_complex():
        bad = ~torch.isfinite(value)
        if bad.any():
            kinds = []
            if torch.isnan(value).any():
                kinds.append("NaN")
            if torch.isinf(value).any():
                kinds.append("inf")
            raise ValueError(
                f"{name} contains {' and '.join(kinds)} at {int(bad.sum())} of "
                f"{value.numel()} entries (shape {_shape(value.shape)}); metrics need "
                "finite values"
            )


def _check_nonempty(value: torch.Tensor, name: str) -> None:
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {_shape(value.shape)}); nothing to score")


def _real_targets(posterior: Any, y: Any, name: str = "y") -> torch.Tensor:
    """Validate real-valued targets against ``posterior`` and cast them to its dtype/device."""
    if _is_kind(posterior, "CategoricalPosterior"):
        raise TypeError(
            "this metric scores real-valued predictions; the posterior is a "
            "CategoricalPosterior over labels (use accuracy, nll or ece instead)"
        )
    y = _to_tensor(y, name)
    _check_shape(y, _posterior_shape(posterior), name, "the posterior's batch_shape + event_shape")
    _check_nonempty(y, name)
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name} must be real-valued; got dtype {y.dtype}")
    _check_finite(y, name)
    dtype, device = getattr(posterior, "dtype", None), getattr(posterior, "device", None)
    if dtype is None or device is None:  # a duck-typed posterior without the properties
        dtype, device = posterior.mean.dtype, posterior.mean.device
    return y.to(dtype=dtype, device=device)


def _check_labels(
    labels: Any, expected: tuple[int, ...], num_classes: int, what: str, name: str = "labels"
) -> torch.Tensor:
    labels = _to_tensor(labels, name)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor of class indices; got dtype {labels.dtype}"
        )
    _check_shape(labels, expected, name, what)
    _check_nonempty(labels, name)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) for {num_classes} classes; got values "
            f"from {low} to {high}"
        )
    return labels


def _check_level(level: float, name: str = "level") -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1; got {level}")
    return level


def _reduce(values: torch.Tensor, reduction: str) -> float | torch.Tensor:
    if reduction == "mean":
        return float(values.mean())
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")


def _probabilities(posterior_or_probs: Any, name: str) -> torch.Tensor:
    """Class probabilities ``(..., C)`` from a posterior (its ``mean``) or a tensor."""
    if _is_posterior(posterior_or_probs):
        probs = posterior_or_probs.mean
        if isinstance(probs, torch.Tensor):
            probs = probs.detach()
    else:
        probs = _to_tensor(posterior_or_probs, name)
    if probs.ndim < 1 or probs.shape[-1] < 1:
        raise ValueError(
            f"{name} must have shape (..., C) with C >= 1 classes; got shape {_shape(probs.shape)}"
        )
    if not probs.is_floating_point():
        raise TypeError(f"{name} must be floating point probabilities; got dtype {probs.dtype}")
    _check_nonempty(probs, name)
    _check_finite(probs, name)
    return probs


# --------------------------------------------------------------------------- regression


def rmse(posterior_or_mean: Any, y: Any) -> float:
    """Root mean squared error of the predictive mean over every point and output.

    Args:
        posterior_or_mean: a posterior (its ``mean`` is used) or a tensor of predictions,
            shape ``batch + (n, m)``.
        y: targets of exactly the same shape.

    Returns:
        ``sqrt(mean((mean - y)**2))`` as a float.
    """
    if _is_posterior(posterior_or_mean):
        y = _real_targets(posterior_or_mean, y)
        mean = posterior_or_mean.mean.detach()
    else:
        mean = _to_tensor(posterior_or_mean, "posterior_or_mean")
        if not mean.is_floating_point():
            mean = mean.to(torch.get_default_dtype())
        _check_finite(mean, "posterior_or_mean")
        y = _to_tensor(y, "y")
        _check_shape(y, _shape(mean.shape), "y", "the shape of posterior_or_mean")
        _check_nonempty(y, "y")
        _check_finite(y, "y")
        y = y.to(dtype=mean.dtype, device=mean.device)
    return math.sqrt(float(((mean - y) ** 2).mean()))


def nll(posterior: Any, y: Any, *, reduction: str = "mean") -> float | torch.Tensor:
    """Negative log predictive density per point: ``-posterior.marginal_log_prob(y)``.

    With ``reduction="mean"`` this is the average over all points (and outputs), the
    number UCI regression tables report. For a ``CategoricalPosterior`` ``y`` holds integer
    labels and the result is the mean negative log predictive probability (cross entropy).

    Args:
        posterior: any posterior with ``marginal_log_prob``.
        y: targets of shape ``batch_shape + event_shape`` (``batch + (n, m)`` for regression,
            ``batch + (n,)`` integer labels for classification).
        reduction: ``"mean"`` (a float) or ``"none"`` (a tensor shaped like ``y``).
    """
    if _is_kind(posterior, "CategoricalPosterior"):
        expected = _posterior_shape(posterior)
        num_classes = int(posterior.mean.shape[-1])
        y = _check_labels(
            y, expected, num_classes, "the posterior's batch_shape + event_shape", name="y"
        )
        y = y.to(device=posterior.mean.device)
    else:
        y = _real_targets(posterior, y)
    with torch.no_grad():
        values = -posterior.marginal_log_prob(y)
    return _reduce(values.detach(), reduction)


def _crps_gaussian(mean: torch.Tensor, std: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CRPS of ``N(mean, std**2)`` at ``y`` (Gneiting & Raftery, 2007, eq. 21)."""
    positive = std > 0
    safe_std = torch.where(positive, std, torch.ones_like(std))
    z = (y - mean) / safe_std
    normal = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    pdf = normal.log_prob(z).exp()
    cdf = normal.cdf(z)
    score = safe_std * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    # A point mass scores the absolute error.
    return torch.where(positive, score, (y - mean).abs())


def _log_beta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _crps_student_t(
    loc: torch.Tensor, scale: torch.Tensor, df: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """CRPS of a location-scale Student-t with ``df > 1`` at ``y``.

    For the standard ``t_ν`` (Jordan, Krüger & Lerch, 2019, scoringRules):
    ``z (2F(z) - 1) + 2 f(z) (ν + z²)/(ν - 1) - 2 √ν B(½, ν - ½) / ((ν - 1) B(½, ν/2)²)``,
    and ``CRPS(loc + scale·T, y) = scale · CRPS(T, (y - loc)/scale)``.
    """
    from scipy import stats

    z = (y - loc) / scale
    cdf = torch.as_tensor(
        stats.t.cdf(z.cpu().numpy(), df.cpu().numpy()), dtype=y.dtype, device=y.device
    )
    half = torch.full_like(df, 0.5)
    log_pdf = (
        torch.lgamma((df + 1) / 2)
        - torch.lgamma(df / 2)
        - 0.5 * torch.log(df * math.pi)
        - (df + 1) / 2 * torch.log1p(z**2 / df)
    )
    constant = (
        2
        * df.sqrt()
        * torch.exp(_log_beta(half, df - 0.5) - 2 * _log_beta(half, df / 2))
        / (df - 1)
    )
    standard = z * (2 * cdf - 1) + 2 * log_pdf.exp() * (df + z**2) / (df - 1) - constant
    return scale * standard


def _crps_from_samples(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased CRPS estimate from ``S`` iid draws ``(S, *shape)`` at ``y`` ``shape``.

    ``E|X - y| - 1/2 E|X - X'|`` with the second term averaged over all ordered pairs of
    *distinct* draws, which are independent; the pair sum is computed in ``O(S log S)``
    from the sorted draws: ``sum_{i<j} |x_i - x_j| = sum_k (2k - S - 1) x_(k)``.
    """
    s = samples.shape[0]
    first = (samples - y).abs().mean(0)
    ordered = samples.sort(dim=0).values
    weights = 2 * torch.arange(1, s + 1, dtype=samples.dtype, device=samples.device) - s - 1
    weights = weights.reshape((s,) + (1,) * (samples.ndim - 1))
    pair_sum = (weights * ordered).sum(0)  # sum over i < j of |x_i - x_j|
    second = pair_sum / (s * (s - 1))  # = 1/2 * mean over i != j of |x_i - x_j|
    return first - second


def _student_t_marginals(posterior: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``loc``, marginal ``scale`` and ``df`` of a StudentTPosterior, all ``batch + event``."""
    loc = posterior.loc.detach()
    df = posterior.df.detach()
    df = df.reshape(df.shape + (1,) * (loc.ndim - df.ndim)).expand_as(loc)
    return loc, posterior.marginal_scale.detach(), df


def crps(
    posterior: Any,
    y: Any,
    *,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
    method: str = "auto",
    reduction: str = "mean",
) -> float | torch.Tensor:
    """Continuous ranked probability score of the marginal predictive (lower is better).

    ``CRPS(F, y) = ∫ (F(z) - 1{z >= y})² dz = E|X - y| - ½ E|X - X'|`` with ``X, X'``
    independent draws from the marginal ``F`` of each point.

    ``method="auto"`` picks, by the posterior's class:

    - ``GaussianPosterior``: the closed form of Gneiting & Raftery (2007) from ``mean``
      and ``stddev``;
    - ``StudentTPosterior`` with every ``df > 1``: the closed form of the marginal
      location-scale t (for ``df <= 1`` the sample estimator is used);
    - ``SamplePosterior``: the estimator below on its stored draws ``posterior.samples``
      (``num_samples`` and ``generator`` are then unused);
    - anything else: the estimator below on ``posterior.sample((num_samples,))``.

    The sample estimator averages ``|x_i - x_j|`` over distinct pairs ``i != j``, which is
    unbiased for independent draws ("fair" CRPS).

    Args:
        posterior: a real-valued posterior, event ``(n, m)``.
        y: targets of shape ``batch_shape + event_shape``.
        num_samples: draws used by the sample estimator (at least 2).
        generator: randomness for the sample estimator.
        method: ``"auto"``, ``"closed_form"`` (raises unless a closed form applies) or
            ``"sample"`` (always ``posterior.sample((num_samples,), generator=generator)``).
        reduction: ``"mean"`` (a float over all points) or ``"none"`` (a tensor shaped
            like ``y``).
    """
    if method not in ("auto", "closed_form", "sample"):
        raise ValueError(f"method must be 'auto', 'closed_form' or 'sample'; got {method!r}")
    y = _real_targets(posterior, y)
    kind = None
    if _is_kind(posterior, "GaussianPosterior"):
        kind = "gaussian"
    elif _is_kind(posterior, "StudentTPosterior") and bool((posterior.df > 1).all()):
        kind = "student_t"
    if method == "closed_form" and kind is None:
        raise ValueError(
            "method='closed_form' needs a GaussianPosterior or a StudentTPosterior with "
            f"df > 1; got {type(posterior).__name__}; use method='sample'"
        )
    with torch.no_grad():
        if kind == "gaussian" and method != "sample":
            values = _crps_gaussian(posterior.mean.detach(), posterior.stddev.detach(), y)
        elif kind == "student_t" and method != "sample":
            loc, scale, df = _student_t_marginals(posterior)
            values = _crps_student_t(loc, scale, df, y)
        else:
            if method == "auto" and _is_kind(posterior, "SamplePosterior"):
                samples = posterior.samples.detach()
                source = "posterior.samples"
            else:
                num_samples = int(num_samples)
                if num_samples < 2:
                    raise ValueError(
                        f"num_samples must be at least 2 for the sample estimator; got "
                        f"{num_samples}"
                    )
                samples = posterior.sample((num_samples,), generator=generator).detach()
                source = "posterior.sample((num_samples,))"
            if _shape(samples.shape[1:]) != _shape(y.shape) or samples.shape[0] < 2:
                raise ValueError(
                    f"{source} has shape {_shape(samples.shape)}; expected (S,) + "
                    f"{_shape(y.shape)} with S >= 2"
                )
            values = _crps_from_samples(samples.to(y.dtype), y)
    return _reduce(values, reduction)


def _interval(posterior: Any, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    lower, upper = posterior.interval(level)
    expected = _posterior_shape(posterior)
    for bound, side in ((lower, "lower"), (upper, "upper")):
        if _shape(bound.shape) != expected:
            raise ValueError(
                f"posterior.interval(level) returned a {side} bound of shape "
                f"{_shape(bound.shape)}; expected {expected}"
            )
    return lower.detach(), upper.detach()


def coverage(posterior: Any, y: Any, level: float = 0.95) -> float:
    """Fraction of targets inside the central ``level`` interval, bounds inclusive.

    Args:
        posterior: a real-valued posterior with ``interval(level)``.
        y: targets of shape ``batch_shape + event_shape``.
        level: nominal coverage in ``(0, 1)``; a calibrated posterior gives about ``level``.
    """
    level = _check_level(level)
    y = _real_targets(posterior, y)
    with torch.no_grad():
        lower, upper = _interval(posterior, level)
    inside = (y >= lower) & (y <= upper)
    return float(inside.to(torch.float64).mean())


def interval_width(posterior: Any, level: float = 0.95) -> float:
    """Mean width ``upper - lower`` of the central ``level`` interval over all points."""
    level = _check_level(level)
    with torch.no_grad():
        lower, upper = _interval(posterior, level)
    _check_nonempty(lower, "posterior.interval(level)")
    return float((upper - lower).mean())


def quantile_calibration(posterior: Any, y: Any, levels: Any) -> torch.Tensor:
    """Observed fraction of targets at or below each predicted marginal quantile.

    For a calibrated posterior ``result ≈ levels``; plot one against the other for a
    regression reliability diagram, or take ``(result - levels).abs().mean()`` as a
    calibration error.

    Args:
        posterior: a real-valued posterior with ``quantile(q)``.
        y: targets of shape ``batch_shape + event_shape``.
        levels: a 1-D tensor (or sequence) of ``L`` levels in ``(0, 1)``.

    Returns:
        A tensor ``(L,)`` (the posterior's dtype) of observed frequencies.
    """
    y = _real_targets(posterior, y)
    levels = _to_tensor(levels, "levels")
    if levels.ndim != 1 or levels.numel() == 0:
        raise ValueError(
            f"levels must be a non-empty 1-D tensor (L,); got shape {_shape(levels.shape)}"
        )
    levels = levels.to(dtype=y.dtype, device=y.device)
    _check_finite(levels, "levels")
    if ((levels <= 0) | (levels >= 1)).any():
        raise ValueError(f"levels must lie strictly between 0 and 1; got {levels.tolist()}")
    with torch.no_grad():
        q = posterior.quantile(levels).detach()
    expected = (levels.shape[0], *_shape(y.shape))
    if _shape(q.shape) != expected:
        raise ValueError(
            f"posterior.quantile(levels) returned shape {_shape(q.shape)}; expected {expected}"
        )
    below = (y.unsqueeze(0) <= q).to(y.dtype)
    return below.reshape(levels.shape[0], -1).mean(-1)


# --------------------------------------------------------------------------- classification


def accuracy(posterior_or_probs: Any, labels: Any) -> float:
    """Fraction of points whose most probable class equals the label.

    Args:
        posterior_or_probs: a ``CategoricalPosterior`` (its ``mean``, the predictive class
            probabilities) or a tensor of probabilities or logits, shape ``(..., C)``.
        labels: integer labels of shape ``(...)``, i.e. ``posterior_or_probs`` shape
            without its last dimension.
    """
    probs = _probabilities(posterior_or_probs, "posterior_or_probs")
    labels = _check_labels(
        labels,
        _shape(probs.shape[:-1]),
        int(probs.shape[-1]),
        "the probabilities' shape without the class dimension",
    )
    predicted = probs.argmax(-1)
    return float((predicted == labels.to(predicted.device)).to(torch.float64).mean())


class CalibrationCurve(NamedTuple):
    """Per-bin statistics of a reliability diagram (all tensors ``(num_bins,)``, float64).

    Attributes:
        confidence: mean top-label confidence of the points in each bin (NaN when empty).
        accuracy: fraction of those points predicted correctly (NaN when empty).
        counts: number of points in each bin (int64).
        edges: the ``num_bins + 1`` bin edges ``k / num_bins``, ``k = 0..num_bins``.
    """

    confidence: torch.Tensor
    accuracy: torch.Tensor
    counts: torch.Tensor
    edges: torch.Tensor


def calibration_curve(
    posterior_or_probs: Any, labels: Any, *, num_bins: int = 15
) -> CalibrationCurve:
    """Bin points by top-label confidence and compare confidence with accuracy per bin.

    Bins are equal-width on ``[0, 1]``: bin ``b`` holds confidences in
    ``(b/B, (b+1)/B]``, except that the first bin is closed at 0 (``[0, 1/B]``). So a
    confidence of exactly 0 falls in the first bin and exactly 1 in the last, and each
    bin's upper edge is inclusive as in Guo et al. (2017). Comparisons are done in
    float64, so a float32 confidence that rounds just above an edge lands in the next bin.

    Args:
        posterior_or_probs: a ``CategoricalPosterior`` (its ``mean``) or class
            probabilities ``(..., C)`` in ``[0, 1]``. Rows need not sum to one (e.g.
            one-vs-rest sigmoids): the confidence is the largest entry and the predicted
            class its index, the lowest index on ties.
        labels: integer labels ``(...)``.
        num_bins: number of equal-width bins ``B`` (at least 1).
    """
    num_bins = int(num_bins)
    if num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer; got {num_bins}")
    probs = _probabilities(posterior_or_probs, "posterior_or_probs").to(torch.float64)
    if (probs < 0).any() or (probs > 1).any():
        raise ValueError(
            "posterior_or_probs must hold probabilities in [0, 1]; got values from "
            f"{float(probs.min())} to {float(probs.max())} (pass softmax(logits))"
        )
    labels = _check_labels(
        labels,
        _shape(probs.shape[:-1]),
        int(probs.shape[-1]),
        "the probabilities' shape without the class dimension",
    )
    confidence, predicted = probs.reshape(-1, probs.shape[-1]).max(-1)
    correct = (predicted == labels.reshape(-1).to(predicted.device)).to(torch.float64)
    # k / B computed by division is the correctly rounded float64 edge (3 / 10 == 0.3).
    edges = torch.arange(num_bins + 1, dtype=torch.float64) / num_bins
    inner = edges[1:-1].to(confidence.device)
    # bucketize(right=False): index i with inner[i-1] < c <= inner[i]; 0 -> first, 1 -> last.
    index = torch.bucketize(confidence, inner, right=False)
    counts = torch.bincount(index, minlength=num_bins)
    conf_sum = torch.bincount(index, weights=confidence, minlength=num_bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=num_bins)
    denom = counts.to(torch.float64)
    empty = counts == 0
    nan = torch.full_like(denom, float("nan"))
    mean_conf = torch.where(empty, nan, conf_sum / denom.clamp_min(1))
    mean_acc = torch.where(empty, nan, acc_sum / denom.clamp_min(1))
    return CalibrationCurve(mean_conf.cpu(), mean_acc.cpu(), counts.cpu(), edges)


def ece(posterior_or_probs: Any, labels: Any, *, num_bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence.

    ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|`` over the equal-width bins of
    :func:`calibration_curve` (confidence 1 in the last bin, 0 in the first; empty bins
    contribute nothing).

    Args:
        posterior_or_probs: a ``CategoricalPosterior`` or probabilities ``(..., C)``.
        labels: integer labels ``(...)``.
        num_bins: number of equal-width bins on ``[0, 1]``.
    """
    curve = calibration_curve(posterior_or_probs, labels, num_bins=num_bins)
    filled = curve.counts > 0
    weights = curve.counts[filled].to(torch.float64) / curve.counts.sum()
    gaps = (curve.accuracy[filled] - curve.confidence[filled]).abs()
    return float((weights * gaps).sum())


# --------------------------------------------------------------------------- out of distribution


def _scores(value: Any, name: str) -> torch.Tensor:
    value = _to_tensor(value, name)
    if value.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of scores (n,); got shape {_shape(value.shape)}"
        )
    if not value.is_floating_point() and value.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be real-valued scores; got dtype {value.dtype}")
    _check_nonempty(value, name)
    _check_finite(value, name)
    return value.to(torch.float64).cpu()


def ood_auroc(in_scores: Any, out_scores: Any) -> float:
    """Area under the ROC curve for telling out-of-distribution inputs from
    in-distribution ones by a score that should be higher out of distribution (e.g. the
    predictive entropy, or one minus the top-class probability).

    It is the probability that a random out-of-distribution point scores higher than a
    random in-distribution one, ties counting one half (the Mann-Whitney statistic,
    computed from mid-ranks in ``O(n log n)``). 0.5 is chance, 1 perfect separation.

    Args:
        in_scores: ``(n_in,)`` scores of in-distribution points.
        out_scores: ``(n_out,)`` scores of out-of-distribution points.
    """
    a, b = _scores(in_scores, "in_scores"), _scores(out_scores, "out_scores")
    values = torch.cat([a, b])
    order = torch.argsort(values, stable=True)
    sorted_values = values[order]
    # mid-ranks (1-based) of tied runs: the average of the run's first and last rank
    _, inverse, counts = torch.unique_consecutive(
        sorted_values, return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).to(torch.float64)
    mid = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = mid[inverse]
    n_in, n_out = a.numel(), b.numel()
    rank_sum_out = ranks[n_in:].sum()
    return float((rank_sum_out - n_out * (n_out + 1) / 2) / (n_in * n_out))
