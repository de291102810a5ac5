"""Classification with scale-mixture NNGPs against independent references: numerical
integration of KL divergences and expected log-likelihoods, torch's Gaussian KL, a direct
(non-whitened) predictive, and SciPy's multivariate t / normal."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from bayesfn import CategoricalPosterior, GaussianPosterior, Model, StudentTPosterior
from bayesfn.bayesnn import nngp_kernel
from bayesfn.bayesnn.nngp.classification import (
    OneHotNNGPClassifier,
    SVTPClassifier,
    inverse_gamma_kl,
    one_hot_targets,
)
from bayesfn.model import NotFittedError

D = torch.float64


def _blobs(n, seed=0, sep=2.5):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g, dtype=D) * 0.7
    x[:, 0] += sep * (y.to(D) - 0.5) * 2
    return x, y


def _random_svtp(scale_prior=(2.5, 1.5), num_classes=2, m=6, seed=0, jitter=1e-6):
    """An SVTP with random variational parameters (no fitting: the tests check algebra)."""
    g = torch.Generator().manual_seed(seed)
    model = SVTPClassifier(
        num_inducing=m, depth=2, scale_prior=scale_prior, w_std=1.3, b_std=0.2, jitter=jitter
    )
    z = torch.randn(m, 2, generator=g, dtype=D)
    model._build(z, num_classes)
    model.train_dim_ = 2
    h = model.module_
    with torch.no_grad():
        h.q_mean.copy_(torch.randn(num_classes, m, generator=g, dtype=D))
        h.q_tril_off.copy_(0.3 * torch.randn(num_classes, m, m, generator=g, dtype=D))
        h.q_diag_raw.copy_(torch.randn(num_classes, m, generator=g, dtype=D) * 0.3)
        if h.has_scale:
            h.raw_alpha.fill_(math.log(math.expm1(3.2)))
            h.raw_beta.fill_(math.log(math.expm1(2.1)))
    model.fit_result_ = {}
    return model


def _q_scale(model):
    with torch.no_grad():
        return tuple(float(v) for v in model.module_.q_scale())


# --------------------------------------------------------------------- KL
@pytest.mark.parametrize("alpha,beta,a,b", [(3.0, 2.0, 2.0, 2.0), (1.3, 0.4, 5.0, 0.7)])
def test_inverse_gamma_kl_matches_numerical_integration(alpha, beta, a, b):
    q = stats.invgamma(alpha, scale=beta)
    p = stats.invgamma(a, scale=b)

    def integrand(t):  # in t = log σ², where the heavy right tail is short
        s = np.exp(t)
        return s * q.pdf(s) * (q.logpdf(s) - p.logpdf(s))

    lo, hi = np.log(q.ppf(1e-15)), np.log(q.isf(1e-15))
    ref = integrate.quad(integrand, lo, hi, limit=400, epsabs=1e-13, points=[np.log(q.median())])[0]
    assert float(inverse_gamma_kl(alpha, beta, a, b)) == pytest.approx(ref, rel=1e-7, abs=1e-10)
    assert float(inverse_gamma_kl(a, b, a, b)) == pytest.approx(0.0, abs=1e-12)


def test_svgp_kl_equals_torch_gaussian_kl():
    model = _random_svtp(scale_prior=None, num_classes=3)
    h = model.module_
    tril = h.q_tril().detach()
    ref = sum(
        torch.distributions.kl_divergence(
            torch.distributions.MultivariateNormal(h.q_mean[c].detach(), scale_tril=tril[c]),
            torch.distributions.MultivariateNormal(torch.zeros(6, dtype=D), torch.eye(6, dtype=D)),
        )
        for c in range(3)
    )
    torch.testing.assert_close(model.kl_divergence().detach(), ref, rtol=1e-10, atol=1e-12)


def test_svtp_kl_equals_scale_averaged_gaussian_kl_plus_inverse_gamma_kl():
    """KL(q(σ²)q(v|σ²) ‖ p(σ²)p(v|σ²)) = E_q(σ²)[KL(N(m, σ²S) ‖ N(0, σ²I))] + KL_IG, with
    the expectation done by quadrature over σ² and the Gaussian KL by torch."""
    model = _random_svtp(scale_prior=(2.0, 1.0), num_classes=2)
    h = model.module_
    tril = h.q_tril().detach()
    alpha, beta = _q_scale(model)
    q = stats.invgamma(alpha, scale=beta)

    def gaussian_kl(s2):
        total = 0.0
        for c in range(2):
            qc = torch.distributions.MultivariateNormal(
                h.q_mean[c].detach(), scale_tril=math.sqrt(s2) * tril[c]
            )
            pc = torch.distributions.MultivariateNormal(
                torch.zeros(6, dtype=D), s2 * torch.eye(6, dtype=D)
            )
            total += float(torch.distributions.kl_divergence(qc, pc))
        return total

    # the Gaussian KL is A + B/σ² (trace and log-det do not depend on σ²): torch's value at
    # two scales fixes A and B, a third confirms the form, quadrature averages it over q
    k1, k2 = gaussian_kl(1.0), gaussian_kl(2.0)
    big_b = 2 * (k1 - k2)
    big_a = k1 - big_b
    assert gaussian_kl(0.37) == pytest.approx(big_a + big_b / 0.37, rel=1e-10)
    expected = integrate.quad(lambda s: q.pdf(s) * (big_a + big_b / s), 0, np.inf)[0]
    p = stats.invgamma(2.0, scale=1.0)
    ig = integrate.quad(
        lambda s: q.pdf(s) * (q.logpdf(s) - p.logpdf(s)), q.ppf(1e-13), q.ppf(1 - 1e-13)
    )[0]
    assert float(model.kl_divergence().detach()) == pytest.approx(expected + ig, rel=1e-6)


# ------------------------------------------------- predictive and ELL
def test_latent_posterior_equals_direct_non_whitened_formula():
    model = _random_svtp(num_classes=2, jitter=0.0)
    h = model.module_
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    post = model.posterior(x)
    assert isinstance(post, StudentTPosterior) and post.event_shape == (4, 2)
    kw = {"depth": 2, "w_std": 1.3, "b_std": 0.2}
    z = h.z.detach()
    kzz = nngp_kernel(z, **kw).numpy()
    kxz = nngp_kernel(x, z, **kw).numpy()
    kxx = nngp_kernel(x, **kw).numpy()
    chol = np.linalg.cholesky(kzz)
    proj = np.linalg.solve(kzz, kxz.T).T  # K_xz K_zz⁻¹
    alpha, beta = _q_scale(model)
    tril = h.q_tril().detach().numpy()
    for c in range(2):
        u_mean = chol @ h.q_mean[c].detach().numpy()
        u_cov = chol @ tril[c] @ tril[c].T @ chol.T
        mean = proj @ u_mean
        cov = kxx - proj @ kxz.T + proj @ u_cov @ proj.T
        np.testing.assert_allclose(post.loc[:, c].numpy(), mean, rtol=1e-8, atol=1e-10)
        block = post.covariance_matrix.numpy()[c::2, c::2]
        np.testing.assert_allclose(block, beta / alpha * cov, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(float(post.df), 2 * alpha)
    # classes are independent given σ²: the cross-class blocks are zero
    assert np.abs(post.covariance_matrix.numpy()[0::2, 1::2]).max() == 0
    svgp = _random_svtp(scale_prior=None, num_classes=2, jitter=0.0).posterior(x)
    assert isinstance(svgp, GaussianPosterior)


def _two_class_reference(mean, var, alpha, beta, fn):
    """E_{σ² ~ IG(α, β)} E_{d ~ N(μ, σ² v)}[fn(d)] by quadrature: σ² adaptive, d by
    Gauss-Hermite."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()
    q = stats.invgamma(alpha, scale=beta)

    def inner(s2):
        return float((weights * fn(mean + np.sqrt(s2 * var) * nodes)).sum())

    lo, hi = np.log(q.ppf(1e-13)), np.log(q.isf(1e-13))
    return integrate.quad(
        lambda t: np.exp(t) * q.pdf(np.exp(t)) * inner(np.exp(t)),
        lo,
        hi,
        limit=200,
        epsabs=1e-11,
        points=[np.log(q.median())],
    )[0]


def test_expected_log_likelihood_and_its_gradient_match_quadrature():
    """For C = 2, log softmax(f)_y depends on d = f_y − f_other ~ N(μ_d, σ²(v_0 + v_1))
    given σ², so the ELL is a 2-D integral; its α-derivative is checked too (the
    reparameterised 1/Gamma draw must carry the right gradient)."""
    model = _random_svtp(num_classes=2, scale_prior=(2.0, 1.0))
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(5), dtype=D)
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        mean, var = model._marginals(x)
    alpha, beta = _q_scale(model)

    def reference(a):
        out = []
        for i, y in enumerate(labels.tolist()):
            mu = float(mean[i, y] - mean[i, 1 - y])
            v = float(var[i].sum())
            out.append(_two_class_reference(mu, v, a, beta, lambda d: -np.logaddexp(0, -d)))
        return np.array(out)

    torch.manual_seed(0)
    ell = model.expected_log_likelihood(x, labels, num_samples=200_000)
    np.testing.assert_allclose(ell.detach().numpy(), reference(alpha), atol=6e-3)
    ell.sum().backward()
    raw_grad = float(model.module_.raw_alpha.grad)
    dalpha_draw = float(torch.sigmoid(model.module_.raw_alpha.detach()))  # softplus′
    eps = 1e-4
    ref_grad = (reference(alpha + eps) - reference(alpha - eps)).sum() / (2 * eps)
    assert raw_grad / dalpha_draw == pytest.approx(ref_grad, rel=0.08)


def test_label_predictive_matches_quadrature():
    model = _random_svtp(num_classes=2, scale_prior=(2.0, 1.0))
    model.num_test_samples = 100_000
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(7), dtype=D)
    post = model.posterior(x, observation_noise=True)
    assert isinstance(post, CategoricalPosterior) and post.event_shape == (3,)
    with torch.no_grad():
        mean, var = model._marginals(x)
    alpha, beta = _q_scale(model)
    for i in range(3):
        mu, v = float(mean[i, 1] - mean[i, 0]), float(var[i].sum())
        p1 = _two_class_reference(mu, v, alpha, beta, special.expit)
        assert float(post.mean[i, 1]) == pytest.approx(p1, abs=4e-3)


# ------------------------------------------------------------ training
def test_svtp_and_svgp_separate_a_toy_problem():
    x, y = _blobs(120)
    xt, yt = _blobs(200, seed=1)
    for prior in [(2.0, 2.0), None]:
        model = SVTPClassifier(num_inducing=10, scale_prior=prior, num_test_samples=200)
        model.fit(x, y, max_steps=80, batch_size=40, lr=0.05, progress_bar=False)
        acc = (model.posterior(xt, observation_noise=True).mean.argmax(-1) == yt).double().mean()
        assert acc >= 0.95
        losses = model.fit_result_.losses
        assert np.mean(losses[-20:]) < np.mean(losses[:20])
    assert set(model.fit_result_.diagnostics) >= {"w_std", "b_std", "w_std_last"}


def test_svtp_save_load_round_trip(tmp_path):
    x, y = _blobs(40)
    model = SVTPClassifier(num_inducing=5, learn_inducing=True, num_test_samples=50)
    model.fit(x, y, max_steps=5, batch_size=20, progress_bar=False)
    model.save(tmp_path / "m")
    loaded = Model.load(tmp_path / "m")
    assert type(loaded) is SVTPClassifier and loaded.get_config() == model.get_config()
    a, b = model.posterior(x[:6]), loaded.posterior(x[:6])
    assert torch.equal(a.mean, b.mean) and torch.equal(a.covariance_matrix, b.covariance_matrix)
    torch.testing.assert_close(
        model.posterior(x[:6], observation_noise=True).mean,
        loaded.posterior(x[:6], observation_noise=True).mean,
    )
    batched = loaded.posterior(x[:6].reshape(2, 3, 2), observation_noise=True)
    assert batched.batch_shape == (2,) and batched.event_shape == (3,)


def test_svtp_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="scale_prior a"):
        SVTPClassifier(scale_prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="scale_prior b"):
        SVTPClassifier(scale_prior=(1.0, -2.0))
    with pytest.raises(ValueError, match="num_inducing"):
        SVTPClassifier(num_inducing=0)
    x, y = _blobs(20)
    model = SVTPClassifier(num_inducing=4, num_classes=2)
    with pytest.raises(NotFittedError):
        model.posterior(x)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        model.fit(x, y + 1, max_steps=1, progress_bar=False)
    with pytest.raises(TypeError, match="integer class indices"):
        model.fit(x, y.to(D), max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="labels has 19 entries but x has 20"):
        model.fit(x, y[:-1], max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        model.fit(x[:, 0], y, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="exceeds the 20 training points"):
        SVTPClassifier(num_inducing=30).fit(x, y, max_steps=1, progress_bar=False)
    model.fit(x, y, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="2 feature"):
        model.posterior(torch.zeros(3, 5, dtype=D))


# ------------------------------------------------------------- one-hot
def test_one_hot_targets_are_centred():
    y = one_hot_targets(torch.tensor([0, 2, 1]), 3)
    torch.testing.assert_close(y.sum(-1), torch.zeros(3, dtype=D))
    assert y[1, 2] == pytest.approx(2 / 3) and y[1, 0] == pytest.approx(-1 / 3)


def _one_hot_reference(x, labels, xs, c, h):
    """Posterior of the conjugate Student-t process on one-hot targets, in numpy."""
    kw = {"depth": 1, "w_std": h["w_std"], "b_std": h["b_std"]}
    k = nngp_kernel(x, **kw).numpy()
    ks = nngp_kernel(xs, x, **kw).numpy()
    kss = np.diag(nngp_kernel(xs, **kw).numpy())
    y = np.eye(c)[labels.numpy()] - 1.0 / c
    cn = k + h["noise"] * np.eye(len(k))
    sol = np.linalg.solve(cn, y)
    q = float((y * sol).sum())
    mean = ks @ sol
    var = kss - np.einsum("ij,ji->i", ks, np.linalg.solve(cn, ks.T))
    return mean, var, q, y.shape[0] * c


def test_one_hot_student_t_equals_scipy_multivariate_t():
    x, labels = torch.randn(25, 2, generator=torch.Generator().manual_seed(0), dtype=D), None
    labels = torch.tensor([i % 3 for i in range(25)])
    xs = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=D)
    ys = torch.tensor([0, 1, 2, 2, 1, 0])
    h = {"w_std": 1.4, "b_std": 0.3, "noise": 0.2}
    a, b = 2.5, 1.5
    clf = OneHotNNGPClassifier(
        3,
        nngp={
            "depth": 1,
            "prior": "inverse_gamma",
            "prior_params": {"a": a, "b": b},
            **h,
            "learn": [],
        },
        num_samples=40_000,
    ).fit(x, labels, max_steps=0, progress_bar=False)
    mean, var, q, num = _one_hot_reference(x, labels, xs, 3, h)
    df = 2 * a + num
    factor = (b + q / 2) / (a + num / 2)
    latent = clf.point_predictive(xs)
    np.testing.assert_allclose(latent.loc[:, 0].numpy(), mean, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        latent.marginal_scale[:, 0].numpy(), np.sqrt(factor * var)[:, None].repeat(3, 1), rtol=1e-8
    )
    yt = np.eye(3)[ys.numpy()] - 1 / 3
    ref = [
        -stats.multivariate_t(mean[i], factor * (var[i] + h["noise"]) * np.eye(3), df=df).logpdf(
            yt[i]
        )
        for i in range(6)
    ]
    np.testing.assert_allclose(clf.target_nll(xs, ys).numpy(), ref, rtol=1e-9)
    # class probabilities: P(argmax f = c) against SciPy draws of the same multivariate t
    probs = clf.posterior(xs, observation_noise=True).mean.numpy()
    rng = np.random.default_rng(0)
    for i in range(6):
        draws = stats.multivariate_t(mean[i], factor * var[i] * np.eye(3), df=df).rvs(
            40_000, random_state=rng
        )
        ref_p = np.bincount(draws.argmax(-1), minlength=3) / 40_000
        np.testing.assert_allclose(probs[i], ref_p, atol=0.015)


def test_one_hot_nngp_equals_scipy_normal_and_round_trips(tmp_path):
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(2), dtype=D)
    labels = torch.tensor([i % 2 for i in range(20)])
    h = {"w_std": 1.1, "b_std": 0.2, "noise": 0.3}
    clf = OneHotNNGPClassifier(
        nngp={"depth": 1, "prior": "point_mass", **h, "learn": []}, num_samples=500
    ).fit(x, labels, max_steps=0, progress_bar=False)
    assert clf.num_classes_ == 2
    xs = x[:4] + 0.1
    mean, var, _, _ = _one_hot_reference(x, labels, xs, 2, h)
    yt = np.eye(2)[labels[:4].numpy()] - 0.5
    ref = [
        -stats.multivariate_normal(mean[i], (var[i] + h["noise"]) * np.eye(2)).logpdf(yt[i])
        for i in range(4)
    ]
    np.testing.assert_allclose(clf.target_nll(xs, labels[:4]).numpy(), ref, rtol=1e-9)
    clf.save(tmp_path / "c")
    loaded = Model.load(tmp_path / "c")
    assert loaded.get_config() == clf.get_config()
    torch.testing.assert_close(
        loaded.posterior(xs, observation_noise=True).mean,
        clf.posterior(xs, observation_noise=True).mean,
    )
    torch.testing.assert_close(loaded.posterior(xs).mean, clf.posterior(xs).mean)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        clf.target_nll(xs, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="num_classes"):
        OneHotNNGPClassifier(1)


# ------------------------------------------------------------------ hardening


@pytest.mark.parametrize(
    ("jitter", "error"), [(-1e-6, ValueError), (float("nan"), ValueError), ("1e-6", TypeError)]
)
def test_svtp_jitter_is_checked_in_init(jitter, error):
    with pytest.raises(error, match="jitter must be"):
        SVTPClassifier(jitter=jitter)


def test_svtp_refuses_half_precision():
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        SVTPClassifier(dtype=torch.float16)


def test_chunk_size_zero_is_a_named_error():
    x, y = _blobs(12)
    svtp = _random_svtp()
    with pytest.raises(ValueError, match="chunk_size must be a positive integer; got 0"):
        svtp.posterior(x, observation_noise=True, chunk_size=0)
    onehot = OneHotNNGPClassifier(num_samples=20).fit(x, y, max_steps=0, progress_bar=False)
    for call in (
        lambda: onehot.point_predictive(x, chunk_size=0),
        lambda: onehot.posterior(x, observation_noise=True, chunk_size=0),
        lambda: onehot.target_nll(x, y, chunk_size=-2),
    ):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            call()
