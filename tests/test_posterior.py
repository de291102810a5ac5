"""Posterior contract (DESIGN §3) against SciPy's densities, quantiles and moments."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from bayesfn import (
    CategoricalPosterior,
    GaussianPosterior,
    MixturePosterior,
    SamplePosterior,
    StudentTPosterior,
)

D = torch.float64


def _spd(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=D)
    return a @ a.T / n + 0.3 * torch.eye(n, dtype=D)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


# ---------------------------------------------------------------- references
# Each case: (posterior, reference) where reference exposes joint_logpdf(flat values),
# marginal_logpdf(values), ppf(q) -> q.shape + batch + event, all computed with SciPy.


class GaussRef:
    def __init__(self, mean, cov):
        self.mean, self.cov = mean.numpy(), cov.numpy()  # mean batch+event, cov batch+(N,N)

    def _each(self, fn, values):
        """Apply ``fn(mean, cov, draws)`` per batch element; values are ``(S,) + batch + event``."""
        batch = self.cov.shape[:-2]
        flat_mean = self.mean.reshape(batch + (-1,))
        flat = values.reshape((values.shape[0],) + batch + (-1,))
        out = np.empty((values.shape[0],) + batch)
        for idx in np.ndindex(*batch):
            sl = (slice(None),) + idx
            out[sl] = fn(flat_mean[idx], self.cov[idx], flat[sl])
        return out

    def joint(self, values):
        return self._each(lambda m, c, v: stats.multivariate_normal(m, c).logpdf(v), values)

    def sd(self):
        d = np.diagonal(self.cov, axis1=-2, axis2=-1)
        return np.sqrt(d).reshape(self.mean.shape)

    def marginal(self, values):
        return stats.norm.logpdf(values, self.mean, self.sd())

    def ppf(self, q):
        q = q.reshape(q.shape + (1,) * self.mean.ndim)
        return stats.norm.ppf(q, self.mean, self.sd())

    def cdf(self, values):
        return stats.norm.cdf(values, self.mean, self.sd())


class TRef(GaussRef):
    def __init__(self, df, mean, cov):
        super().__init__(mean, cov)
        self.df = df

    def joint(self, values):
        return self._each(lambda m, c, v: stats.multivariate_t(m, c, df=self.df).logpdf(v), values)

    def marginal(self, values):
        return stats.t.logpdf(values, self.df, self.mean, self.sd())

    def ppf(self, q):
        q = q.reshape(q.shape + (1,) * self.mean.ndim)
        return stats.t.ppf(q, self.df, self.mean, self.sd())

    def cdf(self, values):
        return stats.t.cdf(values, self.df, self.mean, self.sd())


class MixRef:
    def __init__(self, weights, refs):
        self.w, self.refs = np.asarray(weights), refs

    def joint(self, values):
        parts = np.stack([r.joint(values) for r in self.refs])
        return np.log(np.tensordot(self.w, np.exp(parts), axes=1))

    def marginal(self, values):
        parts = np.stack([r.marginal(values) for r in self.refs])
        return np.log(np.tensordot(self.w, np.exp(parts), axes=1))

    def cdf(self, values):
        return sum(w * r.cdf(values) for w, r in zip(self.w, self.refs, strict=True))

    def ppf(self, q):
        shape = self.refs[0].mean.shape
        out = np.empty(q.shape + shape)
        for qi in np.ndindex(*q.shape):
            for ei in np.ndindex(*shape):

                def f(x, qi=qi, ei=ei):
                    pairs = zip(self.w, self.refs, strict=True)
                    return sum(w * r.cdf(np.full(shape, x))[ei] for w, r in pairs) - q[qi]

                out[qi + ei] = optimize.brentq(f, -50, 50, xtol=1e-12)
        return out


def gaussian_full():
    mean, cov = _randn(4, 2, seed=1), _spd(8, 2)
    return GaussianPosterior(mean, cov), GaussRef(mean, cov)


def gaussian_diag_batched():
    mean, var = _randn(3, 5, 1, seed=3), _randn(3, 5, 1, seed=4).exp()
    cov = torch.diag_embed(var.reshape(3, 5))
    return GaussianPosterior(mean, variance=var), GaussRef(mean, cov)


def gaussian_tril_batched():
    mean = _randn(2, 3, 1, seed=5)
    cov = torch.stack([_spd(3, 6), _spd(3, 7)])
    return GaussianPosterior(mean, scale_tril=torch.linalg.cholesky(cov)), GaussRef(mean, cov)


def student_t_full():
    mean, cov = _randn(3, 2, seed=8), _spd(6, 9)
    return StudentTPosterior(7.0, mean, cov), TRef(7.0, mean, cov)


def student_t_density_event():
    mean, cov = _randn(4, seed=10), _spd(4, 11)
    return StudentTPosterior(9.0, mean, cov, event_ndim=1), TRef(9.0, mean, cov)


def mixture():
    (g, gr), (t, tr) = gaussian_full(), (None, None)
    mean, cov = _randn(4, 2, seed=12), _spd(8, 13) * 2
    t, tr = StudentTPosterior(8.0, mean, cov), TRef(8.0, mean, cov)
    return MixturePosterior([g, t], torch.tensor([0.3, 0.7], dtype=D)), MixRef([0.3, 0.7], [gr, tr])


CLOSED_FORM = [
    gaussian_full,
    gaussian_diag_batched,
    gaussian_tril_batched,
    student_t_full,
    student_t_density_event,
    mixture,
]


@pytest.fixture(params=CLOSED_FORM, ids=lambda f: f.__name__)
def case(request):
    return request.param()


# ------------------------------------------------------------ closed forms
def test_shapes(case):
    post, ref = case
    event_batch = post.batch_shape + post.event_shape
    assert post.mean.shape == event_batch and post.variance.shape == event_batch
    assert post.stddev.shape == event_batch
    assert post.sample().shape == event_batch
    assert post.sample((5, 2)).shape == (5, 2) + event_batch
    assert post.log_prob(post.sample((5,))).shape == (5,) + post.batch_shape
    assert post.marginal_log_prob(post.sample((5,))).shape == (5,) + event_batch
    assert post.quantile(torch.tensor([0.1, 0.5])).shape == (2,) + event_batch
    assert post.dtype == D and post.device.type == "cpu"


def test_log_prob_matches_scipy(case):
    post, ref = case
    values = post.sample((6,), generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(post.log_prob(values).numpy(), ref.joint(values.numpy()), rtol=1e-9)
    np.testing.assert_allclose(
        post.marginal_log_prob(values).numpy(), ref.marginal(values.numpy()), rtol=1e-9
    )
    np.testing.assert_allclose(post.cdf(values).numpy(), ref.cdf(values.numpy()), atol=1e-10)


def test_quantiles_match_scipy_and_are_monotone(case):
    post, ref = case
    q = torch.tensor([0.025, 0.2, 0.5, 0.8, 0.975], dtype=D)
    got = post.quantile(q)
    assert (got.diff(dim=0) > 0).all()
    np.testing.assert_allclose(got.numpy(), ref.ppf(q.numpy()), rtol=1e-7, atol=1e-8)
    lo, hi = post.interval(0.9)
    np.testing.assert_allclose(lo.numpy(), ref.ppf(np.array([0.05]))[0], rtol=1e-7, atol=1e-8)
    assert (lo < hi).all()


def test_sample_moments_agree_with_mean_and_variance(case):
    post, _ = case
    s = post.sample((40000,), generator=torch.Generator().manual_seed(2))
    n = s.shape[0]
    se_mean = (post.variance / n).sqrt()
    assert ((s.mean(0) - post.mean).abs() < 5 * se_mean + 1e-12).all()
    centred = s - s.mean(0)
    se_var = ((centred**4).mean(0) - centred.var(0) ** 2).clamp_min(0).div(n).sqrt()
    assert ((s.var(0) - post.variance).abs() < 6 * se_var + 1e-12).all()


def test_generator_makes_sampling_reproducible(case):
    post, _ = case
    a = post.sample((3,), generator=torch.Generator().manual_seed(7))
    b = post.sample((3,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_arviz_export(case):
    post, _ = case
    idata = post.to_inference_data(num_samples=50, num_chains=2)
    arr = idata.posterior_predictive["f"]
    assert arr.shape == (2, 50) + tuple(post.batch_shape + post.event_shape)
    assert arr.dims[:2] == ("chain", "draw")
    tree = post.to_datatree(num_samples=20)
    assert tree["posterior_predictive"]["f"].shape == (1, 20) + tuple(
        post.batch_shape + post.event_shape
    )


def test_bad_values_are_rejected(case):
    post, _ = case
    with pytest.raises(ValueError, match="value must have shape"):
        post.log_prob(torch.zeros(7, 7, 7, dtype=D))
    with pytest.raises(ValueError, match="strictly in"):
        post.quantile(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="level"):
        post.interval(1.5)


# ----------------------------------------------------------- specific rules
def test_gaussian_rsample_carries_gradient():
    mean = _randn(3, 1, seed=1).requires_grad_()
    post = GaussianPosterior(mean, _spd(3, 2))
    post.rsample((4,)).sum().backward()
    np.testing.assert_allclose(mean.grad.numpy(), 4.0)


def test_student_t_shares_one_chi_square_across_the_event():
    # With identity scale, x_i = z_i sqrt(df/w): the shared w makes x_1^2 and x_2^2
    # positively correlated; Cov = df^2/((df-2)(df-4)) - (df/(df-2))^2 in closed form.
    df = 10.0
    post = StudentTPosterior(df, torch.zeros(2, 1, dtype=D), variance=torch.ones(2, 1, dtype=D))
    s = post.sample((400000,), generator=torch.Generator().manual_seed(3)).reshape(-1, 2) ** 2
    expected = df**2 / ((df - 2) * (df - 4)) - (df / (df - 2)) ** 2
    got = torch.cov(s.T)[0, 1].item()
    assert abs(got - expected) < 0.08, (got, expected)
    # independent t's would give zero, which this rules out
    assert got > 0.3


def test_student_t_moments_for_small_df():
    post = StudentTPosterior(
        torch.tensor([0.8, 1.5, 3.0], dtype=D),
        torch.zeros(3, 2, 1, dtype=D),
        variance=torch.ones(3, 2, 1, dtype=D),
    )
    assert torch.isnan(post.mean[0]).all() and torch.isfinite(post.mean[1:]).all()
    assert torch.isinf(post.variance[1]).all()
    np.testing.assert_allclose(post.variance[2].numpy(), 3.0)


def test_mixture_quantile_inverts_cdf():
    post, _ = mixture()
    q = torch.tensor([0.01, 0.3, 0.99], dtype=D)
    np.testing.assert_allclose(
        post.cdf(post.quantile(q)).numpy(), q.numpy()[:, None, None] * np.ones((1, 4, 2)), atol=1e-9
    )


def test_mixture_density_integrates_to_one():
    post = MixturePosterior(
        [
            GaussianPosterior(torch.zeros(1, 1, dtype=D), variance=torch.ones(1, 1, dtype=D)),
            StudentTPosterior(
                3.0, torch.full((1, 1), 2.0, dtype=D), variance=torch.ones(1, 1, dtype=D)
            ),
        ],
        logits=torch.tensor([0.0, 1.0]),
    )
    f = lambda x: post.log_prob(torch.tensor([[[x]]], dtype=D)).exp().item()  # noqa: E731
    total, _ = integrate.quad(f, -np.inf, np.inf)
    assert abs(total - 1) < 1e-8


def test_mixture_rejects_mismatched_components():
    a = GaussianPosterior(torch.zeros(3, 1, dtype=D), variance=torch.ones(3, 1, dtype=D))
    b = GaussianPosterior(torch.zeros(4, 1, dtype=D), variance=torch.ones(4, 1, dtype=D))
    with pytest.raises(ValueError, match=r"components\[1\]"):
        MixturePosterior([a, b], torch.ones(2))
    with pytest.raises(ValueError, match="weights must have shape"):
        MixturePosterior([a, a], torch.ones(3))
    with pytest.raises(NotImplementedError, match="not reparameterisable"):
        MixturePosterior([a, a], torch.ones(2)).rsample()


def test_constructors_reject_bad_parameters():
    with pytest.raises(ValueError, match="mean contains NaN"):
        GaussianPosterior(torch.tensor([[math.nan]]), variance=torch.ones(1, 1))
    with pytest.raises(ValueError, match="covariance must have shape"):
        GaussianPosterior(torch.zeros(3, 1), torch.eye(2))
    with pytest.raises(ValueError, match="exactly one"):
        GaussianPosterior(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="df must be positive"):
        StudentTPosterior(-1.0, torch.zeros(3, 1), variance=torch.ones(3, 1))


# ------------------------------------------------------------ sample-based
def test_sample_posterior_moments_and_quantiles():
    true = GaussianPosterior(_randn(3, 1, seed=4), _spd(3, 5))
    draws = true.sample((50000,), generator=torch.Generator().manual_seed(6))
    post = SamplePosterior(draws)
    assert post.event_shape == (3, 1) and post.batch_shape == ()
    assert torch.equal(post.mean, draws.mean(0))
    q = torch.tensor([0.1, 0.5, 0.9], dtype=D)
    se = 0.03 * true.stddev  # MC error of a quantile at 50k draws is below this
    assert ((post.quantile(q) - true.quantile(q)).abs() < se).all()
    resampled = post.sample((10,), generator=torch.Generator().manual_seed(0))
    # resampling returns stored draws, not new values
    assert all((draws == r).all(dim=(1, 2)).any() for r in resampled)
    with pytest.raises(NotImplementedError, match="no density"):
        post.log_prob(draws[:2])


def test_sample_posterior_with_sampler_is_lazy_and_reparameterised():
    loc = torch.zeros(2, 1, dtype=D, requires_grad=True)

    def sampler(k, generator):
        return loc + torch.randn((k, 2, 1), generator=generator, dtype=D)

    post = SamplePosterior(sampler=sampler, num_samples=4000, reparameterized=True)
    assert post.samples.shape == (4000, 2, 1)
    post.rsample((5,)).sum().backward()
    np.testing.assert_allclose(loc.grad.numpy(), 5.0)
    assert (post.variance - 1).abs().max() < 0.1


# --------------------------------------------------------- chains of a sampler
def _gelman_rubin(chains: np.ndarray) -> np.ndarray:
    """Classic (non-split) potential scale reduction of ``(C, D, ...)`` draws,
    Gelman & Rubin (1992): sqrt(((D - 1)/D W + B/D) / W)."""
    d = chains.shape[1]
    w = chains.var(axis=1, ddof=1).mean(axis=0)
    b = d * chains.mean(axis=1).var(axis=0, ddof=1)
    return np.sqrt(((d - 1) / d * w + b / d) / w)


def _chained(offsets, draws=400, seed=0):
    """``(C, D, 2, 1)`` draws: chain c is iid N(offsets[c], 1)."""
    noise = _randn(len(offsets), draws, 2, 1, seed=seed)
    return noise + torch.tensor(offsets, dtype=D).reshape(-1, 1, 1, 1)


def test_chained_sample_posterior_pools_draws_for_moments():
    chained = _chained([0.0, 0.5, -0.5, 1.0])
    post = SamplePosterior(chained, chains=True)
    assert post.num_chains == 4 and post.batch_shape == () and post.event_shape == (2, 1)
    flat = chained.reshape(-1, 2, 1)
    assert torch.equal(post.samples, flat) and torch.equal(post.chain_samples, chained)
    torch.testing.assert_close(post.mean, flat.mean(0))
    torch.testing.assert_close(
        post.variance, flat.var(0, correction=0)
    )  # of the pooled draws themselves
    q = torch.tensor([0.2, 0.7], dtype=D)
    torch.testing.assert_close(post.quantile(q), torch.quantile(flat, q, dim=0))
    assert post.sample((5,), generator=torch.Generator().manual_seed(1)).shape == (5, 2, 1)
    # the flat constructor keeps its old behaviour
    flat_post = SamplePosterior(flat)
    assert flat_post.num_chains is None and flat_post.chain_samples is None
    torch.testing.assert_close(flat_post.mean, post.mean)


def test_arviz_export_keeps_real_chains_and_rhat_diagnoses_them():
    import arviz as az

    mixed = SamplePosterior(_chained([0.0] * 4), chains=True)
    stuck = SamplePosterior(_chained([0.0, 3.0, -3.0, 6.0], seed=1), chains=True)
    for post in (mixed, stuck):
        idata = post.to_inference_data()
        arr = idata.posterior_predictive["f"]
        assert arr.dims[:2] == ("chain", "draw") and arr.shape == (4, 400, 2, 1)
        np.testing.assert_array_equal(arr.values, post.chain_samples.numpy())
        ours = _gelman_rubin(post.chain_samples.numpy())
        theirs = az.rhat(idata.posterior_predictive, method="identity")["f"].values
        np.testing.assert_allclose(theirs, ours, rtol=1e-10)
        tree = post.to_datatree()
        assert tree["posterior_predictive"]["f"].shape == (4, 400, 2, 1)
    assert (_gelman_rubin(mixed.chain_samples.numpy()) < 1.01).all()
    assert (_gelman_rubin(stuck.chain_samples.numpy()) > 2).all()
    rank_rhat = az.rhat(stuck.to_inference_data().posterior_predictive)["f"].values
    assert (rank_rhat > 2).all()
    ess = az.ess(mixed.to_inference_data().posterior_predictive)["f"].values
    assert (ess > 1200).all()  # 1600 independent draws


def test_chained_export_subsets_and_rejects_more_than_stored():
    chained = _chained([0.0, 1.0, 2.0])
    post = SamplePosterior(chained, chains=True)
    arr = post.to_inference_data(num_samples=50, num_chains=2).posterior_predictive["f"]
    np.testing.assert_array_equal(arr.values, chained[:2, -50:].numpy())
    with pytest.raises(ValueError, match="stores 3 chains of 400 draws"):
        post.to_inference_data(num_chains=4)
    with pytest.raises(ValueError, match="with chains=True, samples must have shape"):
        SamplePosterior(torch.zeros(2, 1), chains=True)
    with pytest.raises(ValueError, match="with chains=True, samples must have shape"):
        SamplePosterior(torch.zeros(1, 1, 2, 1), chains=True)
    with pytest.raises(ValueError, match="a sampler= has no chains"):
        SamplePosterior(sampler=lambda k, g: torch.zeros(k, 2, 1), chains=True)


# ------------------------------------------------------------- categorical
def test_categorical_posterior():
    logits = _randn(2, 4, 3, seed=9)
    post = CategoricalPosterior(logits=logits)
    probs = torch.softmax(logits, -1)
    assert post.event_shape == (4,) and post.batch_shape == (2,)
    torch.testing.assert_close(post.mean, probs)
    labels = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])
    expected = np.log(np.take_along_axis(probs.numpy(), labels.numpy()[..., None], -1))[..., 0]
    np.testing.assert_allclose(post.marginal_log_prob(labels).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(post.log_prob(labels).numpy(), expected.sum(-1), rtol=1e-12)
    s = post.sample((30000,), generator=torch.Generator().manual_seed(0))
    assert s.shape == (30000, 2, 4) and s.dtype == torch.int64
    freq = torch.nn.functional.one_hot(s, 3).double().mean(0)
    assert (freq - probs).abs().max() < 0.015
    idata = post.to_inference_data(num_samples=10)
    assert idata.posterior_predictive["f"].shape == (1, 10, 2, 4)
    with pytest.raises(TypeError, match="integer"):
        post.log_prob(labels.double())
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        post.log_prob(labels + 5)
    with pytest.raises(NotImplementedError, match="unordered"):
        post.quantile(0.5)
    with pytest.raises(ValueError, match="sum to one"):
        CategoricalPosterior(torch.full((2, 3), 0.5))
