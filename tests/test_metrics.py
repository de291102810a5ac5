"""Tests of bayesfn.metrics against independent references (SciPy, quadrature, hand sums)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from bayesfn import metrics
from bayesfn.posterior import (
    CategoricalPosterior,
    GaussianPosterior,
    MixturePosterior,
    SamplePosterior,
    StudentTPosterior,
)

D = torch.float64


def _gaussian(mean, std) -> GaussianPosterior:
    mean = torch.as_tensor(mean, dtype=D).reshape(-1, 1)
    std = torch.as_tensor(std, dtype=D).reshape(-1, 1)
    return GaussianPosterior(mean, variance=std**2)


def _crps_by_quadrature(cdf, sf, y: float) -> float:
    """∫ (F(z) − 1{z ≥ y})² dz split at y, with the survival function for the right tail."""
    left, _ = integrate.quad(lambda z: cdf(z) ** 2, -np.inf, y, epsabs=1e-12, epsrel=1e-10)
    right, _ = integrate.quad(lambda z: sf(z) ** 2, y, np.inf, epsabs=1e-12, epsrel=1e-10)
    return left + right


class _DuckPosterior:
    """A minimal posterior that is not a bayesfn class: N(mean, 1) per point, iid."""

    def __init__(self, mean: torch.Tensor):
        self.mean = mean
        self.batch_shape = torch.Size([])
        self.event_shape = mean.shape

    def sample(self, sample_shape=(), *, generator=None):
        shape = torch.Size(sample_shape) + self.mean.shape
        return self.mean + torch.randn(shape, generator=generator, dtype=self.mean.dtype)


# --------------------------------------------------------------------------- rmse / nll


def test_rmse_posterior_and_tensor_match_numpy():
    rng = np.random.default_rng(0)
    mean, y = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    expected = np.sqrt(np.mean((mean - y) ** 2))
    post = GaussianPosterior(torch.tensor(mean), variance=torch.ones(7, 2, dtype=D))
    assert metrics.rmse(post, torch.tensor(y)) == pytest.approx(expected, rel=1e-12)
    assert metrics.rmse(torch.tensor(mean), torch.tensor(y)) == pytest.approx(expected, rel=1e-12)
    assert metrics.rmse(post, y) == pytest.approx(expected, rel=1e-12)  # numpy accepted


def test_nll_equals_scipy_logpdf_mean():
    mu = np.array([0.0, 1.5, -2.0, 0.3])
    sd = np.array([1.0, 0.5, 2.0, 3.0])
    y = np.array([0.2, 1.0, -5.0, 4.0])
    post = _gaussian(mu, sd)
    expected = -stats.norm.logpdf(y, mu, sd).mean()
    assert metrics.nll(post, torch.tensor(y).reshape(-1, 1)) == pytest.approx(expected, rel=1e-12)
    per_point = metrics.nll(post, torch.tensor(y).reshape(-1, 1), reduction="none")
    assert per_point.shape == (4, 1)
    np.testing.assert_allclose(per_point[:, 0].numpy(), -stats.norm.logpdf(y, mu, sd), rtol=1e-12)


def test_nll_categorical_is_cross_entropy():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]], dtype=D)
    labels = torch.tensor([0, 1, 1])
    expected = -np.mean(np.log([0.7, 0.1, 0.5]))
    assert metrics.nll(CategoricalPosterior(probs), labels) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- crps


@pytest.mark.parametrize(
    ("mu", "sd", "y"), [(0.0, 1.0, 0.0), (1.0, 0.3, -0.2), (-2.0, 4.0, 5.0), (0.5, 1e-2, 0.51)]
)
def test_crps_gaussian_closed_form_matches_quadrature(mu, sd, y):
    got = metrics.crps(_gaussian([mu], [sd]), torch.tensor([[y]], dtype=D))
    expected = _crps_by_quadrature(
        lambda z: stats.norm.cdf(z, mu, sd), lambda z: stats.norm.sf(z, mu, sd), y
    )
    assert got == pytest.approx(expected, rel=1e-7, abs=1e-10)


def test_crps_gaussian_point_mass_is_absolute_error():
    post = GaussianPosterior(
        torch.tensor([[1.0], [2.0]], dtype=D), variance=torch.zeros(2, 1, dtype=D)
    )
    y = torch.tensor([[3.0], [1.5]], dtype=D)
    assert metrics.crps(post, y) == pytest.approx((2.0 + 0.5) / 2)


@pytest.mark.parametrize(
    ("df", "loc", "scale", "y"),
    [(3.5, 0.0, 1.0, 0.7), (1.5, 1.0, 2.0, -3.0), (30.0, -1.0, 0.5, -1.2)],
)
def test_crps_student_t_closed_form_matches_quadrature(df, loc, scale, y):
    post = StudentTPosterior(
        df, torch.tensor([[loc]], dtype=D), variance=torch.tensor([[scale**2]], dtype=D)
    )
    got = metrics.crps(post, torch.tensor([[y]], dtype=D), method="closed_form")
    expected = _crps_by_quadrature(
        lambda z: stats.t.cdf(z, df, loc, scale), lambda z: stats.t.sf(z, df, loc, scale), y
    )
    assert got == pytest.approx(expected, rel=1e-7)


def test_crps_sample_estimator_converges_to_gaussian_closed_form():
    gen = torch.Generator().manual_seed(1)
    n = 200
    mu = torch.randn(n, generator=gen, dtype=D)
    sd = 0.5 + torch.rand(n, generator=gen, dtype=D)
    post = _gaussian(mu, sd)
    y = (mu + 1.3 * sd * torch.randn(n, generator=gen, dtype=D)).reshape(-1, 1)
    exact = metrics.crps(post, y)
    errors = []
    for s in (10, 4000):
        estimate = metrics.crps(post, y, method="sample", num_samples=s, generator=gen)
        errors.append(abs(estimate - exact))
    # Mean of n independent per-point estimates: standard error ≈ 0.7 / sqrt(S n).
    assert errors[0] < 5 * 0.7 / math.sqrt(10 * n)
    assert errors[1] < 5 * 0.7 / math.sqrt(4000 * n)


def test_crps_sample_estimator_is_the_fair_pairwise_formula():
    gen = torch.Generator().manual_seed(2)
    draws = torch.randn(7, 3, 2, generator=gen, dtype=D)
    y = torch.randn(3, 2, generator=gen, dtype=D)
    post = SamplePosterior(draws)  # auto uses the stored draws themselves
    got = metrics.crps(post, y, reduction="none")
    x = draws.numpy()
    s = x.shape[0]
    first = np.abs(x - y.numpy()).mean(0)
    pairs = np.abs(x[:, None] - x[None, :]).sum((0, 1)) / (s * (s - 1))
    np.testing.assert_allclose(got.numpy(), first - 0.5 * pairs, rtol=1e-12)


def test_crps_mixture_sample_estimator_matches_quadrature():
    comps = [_gaussian([-1.0], [0.5]), _gaussian([2.0], [1.0])]
    post = MixturePosterior(comps, torch.tensor([0.3, 0.7], dtype=D))
    y = 0.4
    got = metrics.crps(
        post,
        torch.tensor([[y]], dtype=D),
        num_samples=40000,
        generator=torch.Generator().manual_seed(3),
    )

    def cdf(z):
        return 0.3 * stats.norm.cdf(z, -1.0, 0.5) + 0.7 * stats.norm.cdf(z, 2.0, 1.0)

    expected = _crps_by_quadrature(cdf, lambda z: 1 - cdf(z), y)
    assert got == pytest.approx(expected, abs=0.02)


def test_crps_duck_typed_posterior_and_batch_shapes():
    post = _DuckPosterior(torch.zeros(4, 1, dtype=D))
    value = metrics.crps(
        post,
        torch.zeros(4, 1, dtype=D),
        num_samples=20000,
        generator=torch.Generator().manual_seed(4),
    )
    # CRPS of N(0, 1) at its mean: 2 φ(0) − 1/√π = (√2 − 1)/√π.
    assert value == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi), abs=0.01)

    batched = GaussianPosterior(
        torch.zeros(3, 5, 1, dtype=D), variance=torch.ones(3, 5, 1, dtype=D)
    )
    per_point = metrics.crps(batched, torch.zeros(3, 5, 1, dtype=D), reduction="none")
    assert per_point.shape == (3, 5, 1)


# --------------------------------------------------------------------------- coverage


def test_coverage_of_standard_normal_is_nominal_within_binomial_error():
    n = 20000
    post = GaussianPosterior(torch.zeros(n, 1, dtype=D), variance=torch.ones(n, 1, dtype=D))
    y = torch.randn(n, 1, generator=torch.Generator().manual_seed(5), dtype=D)
    for level in (0.5, 0.95):
        tolerance = 4 * math.sqrt(level * (1 - level) / n)
        assert metrics.coverage(post, y, level) == pytest.approx(level, abs=tolerance)
    assert metrics.interval_width(post, 0.95) == pytest.approx(2 * stats.norm.ppf(0.975))

    levels = torch.tensor([0.05, 0.25, 0.5, 0.9])
    observed = metrics.quantile_calibration(post, y, levels)
    assert observed.shape == (4,)
    bound = 4 * np.sqrt(levels.numpy() * (1 - levels.numpy()) / n)
    assert np.all(np.abs(observed.numpy() - levels.numpy()) < bound)


def test_coverage_bounds_are_inclusive():
    post = _gaussian([0.0, 0.0], [1.0, 1.0])
    lower, upper = post.interval(0.9)
    y = torch.stack([lower[:, 0][:1], upper[:, 0][1:]]).reshape(2, 1)
    assert metrics.coverage(post, y, 0.9) == 1.0


# --------------------------------------------------------------------------- classification


def _hand_example():
    probs = torch.tensor(
        [
            [1.0, 0.0],  # conf 1.0, correct  -> last bin
            [0.0, 1.0],  # conf 1.0, wrong    -> last bin
            [0.0, 0.0],  # conf 0.0, predicts class 0 (lowest index on ties), wrong -> first bin
            [0.3, 0.7],  # conf 0.7, correct  -> bin (0.6, 0.8]
            [0.9, 0.1],  # conf 0.9, correct  -> last bin
            [0.4, 0.6],  # conf 0.6 exactly, wrong -> bin (0.4, 0.6] (upper edge inclusive)
            [0.1, 0.15],  # conf 0.15, correct -> first bin
        ],
        dtype=D,
    )
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1])
    return probs, labels


def test_ece_hand_computed_with_confidence_one_and_zero():
    probs, labels = _hand_example()
    curve = metrics.calibration_curve(probs, labels, num_bins=5)
    assert curve.counts.tolist() == [2, 0, 1, 1, 3]
    assert curve.counts.sum() == 7  # nothing dropped, no extra bin
    np.testing.assert_allclose(curve.edges.numpy(), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve.confidence.numpy()[[0, 2, 3, 4]], [0.075, 0.6, 0.7, 2.9 / 3])
    np.testing.assert_allclose(curve.accuracy.numpy()[[0, 2, 3, 4]], [0.5, 0.0, 1.0, 2 / 3])
    assert math.isnan(curve.confidence[1]) and math.isnan(curve.accuracy[1])
    expected = (2 * 0.425 + 1 * 0.6 + 1 * 0.3 + 3 * 0.3) / 7
    assert metrics.ece(probs, labels, num_bins=5) == pytest.approx(expected, rel=1e-12)


def test_ece_zero_for_perfectly_calibrated_bins_and_posterior_input():
    # Four points at confidence 0.75 whose top label is right 3 times out of 4.
    probs = torch.tensor([[0.75, 0.25]] * 4, dtype=D)
    labels = torch.tensor([0, 0, 0, 1])
    assert metrics.ece(probs, labels) == pytest.approx(0.0, abs=1e-15)
    assert metrics.ece(CategoricalPosterior(probs), labels) == pytest.approx(0.0, abs=1e-15)


def test_accuracy_tensor_and_posterior():
    probs = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1]], dtype=D)
    labels = torch.tensor([0, 0, 0])
    assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
    assert metrics.accuracy(CategoricalPosterior(probs), labels) == pytest.approx(2 / 3)


def test_ece_keeps_confidences_at_and_near_one_with_100_bins():
    """The inherited Laplace-Redux binning (np.digitize indices 1..B looped over 0..B-1)
    drops every confidence in the top bin, (0.99, 1] with 100 bins: most MNIST points.
    Reference: each point's bin ceil(c B) - 1 (c = 0 in the first), by a Python loop."""
    g = torch.Generator().manual_seed(0)
    top = torch.cat(
        [torch.tensor([1.0, 1.0, 0.995, 0.9901]), torch.rand(30, generator=g, dtype=D) * 0.5 + 0.5]
    )
    probs = torch.stack([top, 1 - top], 1)
    labels = (torch.rand(34, generator=g) < 0.2).long()  # label 0 (the top class) 80% of the time
    bins: dict[int, list[tuple[float, float]]] = {}
    for c, y in zip(top.tolist(), labels.tolist(), strict=True):
        b = max(math.ceil(c * 100) - 1, 0)
        bins.setdefault(b, []).append((c, float(y == 0)))
    expected = sum(
        len(v) / 34 * abs(sum(a for _, a in v) / len(v) - sum(c for c, _ in v) / len(v))
        for v in bins.values()
    )
    curve = metrics.calibration_curve(probs, labels, num_bins=100)
    assert int(curve.counts.sum()) == 34 and int(curve.counts[99]) == len(bins[99]) >= 4
    assert metrics.ece(probs, labels, num_bins=100) == pytest.approx(expected, rel=1e-12)


def test_ood_auroc_equals_pair_counting_with_ties():
    g = torch.Generator().manual_seed(1)
    inside = torch.randint(0, 6, (37,), generator=g).to(D)  # many ties, across both sets
    outside = torch.randint(2, 9, (23,), generator=g).to(D)
    pairs = sum(
        1.0 if o > i else 0.5 if o == i else 0.0 for i in inside.tolist() for o in outside.tolist()
    )
    assert metrics.ood_auroc(inside, outside) == pytest.approx(pairs / (37 * 23), rel=1e-12)
    assert metrics.ood_auroc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert metrics.ood_auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert metrics.ood_auroc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match=r"out_scores must be a 1-D tensor"):
        metrics.ood_auroc(inside, outside[:, None])
    with pytest.raises(ValueError, match="in_scores contains NaN"):
        metrics.ood_auroc(torch.tensor([math.nan]), outside)
    with pytest.raises(ValueError, match="out_scores is empty"):
        metrics.ood_auroc(inside, torch.zeros(0))


# --------------------------------------------------------------------------- bad inputs


def test_shape_mismatch_names_argument_and_shapes():
    post = _gaussian(torch.zeros(5), torch.ones(5))
    for fn in (metrics.rmse, metrics.nll, metrics.crps, metrics.coverage):
        with pytest.raises(ValueError, match=r"y must have shape \(5, 1\).*got shape \(5,\)"):
            fn(post, torch.zeros(5, dtype=D))
    with pytest.raises(ValueError, match=r"y must have shape \(5, 1\).*got shape \(2, 5, 1\)"):
        metrics.nll(post, torch.zeros(2, 5, 1, dtype=D))  # no silent broadcasting
    with pytest.raises(ValueError, match=r"y must have shape \(3, 1\).*got shape \(3,\)"):
        metrics.rmse(torch.zeros(3, 1), torch.zeros(3))


def test_nan_and_inf_in_targets_are_rejected():
    post = _gaussian(torch.zeros(3), torch.ones(3))
    y = torch.tensor([[0.0], [math.nan], [1.0]], dtype=D)
    for fn in (metrics.rmse, metrics.nll, metrics.crps, metrics.coverage):
        with pytest.raises(ValueError, match="y contains NaN"):
            fn(post, y)
    with pytest.raises(ValueError, match="y contains inf"):
        metrics.crps(post, torch.tensor([[0.0], [math.inf], [1.0]], dtype=D))
    with pytest.raises(ValueError, match="y contains NaN"):
        metrics.quantile_calibration(post, y, [0.5])


def test_bad_classification_inputs():
    probs, labels = _hand_example()
    with pytest.raises(ValueError, match=r"labels must have shape \(7,\).*got shape \(6,\)"):
        metrics.ece(probs, labels[:6])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        metrics.accuracy(probs, torch.full((7,), 2))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        metrics.accuracy(probs, labels.to(D))
    with pytest.raises(ValueError, match=r"posterior_or_probs must hold probabilities in \[0, 1\]"):
        metrics.ece(probs * 3 - 1, labels)
    with pytest.raises(ValueError, match="posterior_or_probs contains NaN"):
        metrics.ece(torch.full((7, 2), math.nan, dtype=D), labels)
    with pytest.raises(ValueError, match="num_bins"):
        metrics.ece(probs, labels, num_bins=0)
    cat = CategoricalPosterior(torch.tensor([[0.5, 0.5], [0.1, 0.9]], dtype=D))
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        metrics.nll(cat, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\).*got shape \(2, 1\)"):
        metrics.nll(cat, torch.tensor([[0], [1]]))
    with pytest.raises(TypeError, match="CategoricalPosterior"):
        metrics.crps(cat, torch.tensor([0, 1]))


def test_bad_options():
    post = _gaussian(torch.zeros(2), torch.ones(2))
    y = torch.zeros(2, 1, dtype=D)
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
        metrics.coverage(post, y, level=1.5)
    with pytest.raises(ValueError, match="level"):
        metrics.interval_width(post, level=0.0)
    with pytest.raises(ValueError, match="levels must lie strictly between 0 and 1"):
        metrics.quantile_calibration(post, y, [0.0, 0.5])
    with pytest.raises(ValueError, match=r"levels must be a non-empty 1-D tensor"):
        metrics.quantile_calibration(post, y, [[0.5]])
    with pytest.raises(ValueError, match="method"):
        metrics.crps(post, y, method="exact")
    with pytest.raises(ValueError, match="num_samples must be at least 2"):
        metrics.crps(post, y, method="sample", num_samples=1)
    with pytest.raises(ValueError, match="closed_form"):
        metrics.crps(SamplePosterior(torch.zeros(4, 2, 1, dtype=D)), y, method="closed_form")
    with pytest.raises(ValueError, match="reduction"):
        metrics.nll(post, y, reduction="sum")
