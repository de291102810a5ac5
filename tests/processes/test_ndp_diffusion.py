"""The NDP diffusion against exact Gaussian references, with the exact (oracle) noise
model of GP data and no network: ancestral sampling gives the GP prior, RePaint the exact
GP posterior, and the probability-flow ODE the analytic Gaussian density."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesfn.processes.ndp.diffusion import (
    Schedule,
    ancestral_sample,
    diffusion_loss,
    moment_matched_log_prob,
    ode_log_prob,
    repaint_sample,
    smc_sample,
    stratified_times,
)

from ._ndp_oracle import GaussianOracle, se_covariance

D = torch.float64


def gaussian_kl(cov_hat, mean_hat, cov, mean):
    """KL(N(mean_hat, cov_hat) || N(mean, cov)) in NumPy."""
    k = len(mean)
    inv = np.linalg.inv(cov)
    diff = mean - mean_hat
    return 0.5 * (
        np.trace(inv @ cov_hat)
        + diff @ inv @ diff
        - k
        + np.linalg.slogdet(cov)[1]
        - np.linalg.slogdet(cov_hat)[1]
    )


def test_schedule_is_the_rescaled_cosine():
    sched = Schedule(500)
    betas = sched.betas.numpy()
    # the formula written out independently in NumPy
    s = np.arange(501) / 500
    f = np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
    raw = np.clip(1 - f[1:] / f[:-1], 1e-4, 0.9999)
    ref = 3e-4 + (0.5 - 3e-4) * (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(betas, ref, rtol=1e-12)
    assert betas[0] == pytest.approx(3e-4) and betas[-1] == pytest.approx(0.5)
    assert np.all(np.diff(betas) >= 0)
    np.testing.assert_allclose(sched.alpha_bars.numpy(), np.cumprod(1 - ref), rtol=1e-12)
    assert 0 < sched.alpha_bars[-1] < 0.003  # not N&D's cosine: abar_{T-1} ~ 0.002
    t = torch.tensor([0.0, 0.3, 1.0, 17.5, 498.9, 499.0], dtype=D)
    torch.testing.assert_close(sched.time_at(sched.log_snr_at(t)), t)
    torch.testing.assert_close(
        torch.sigmoid(sched.log_snr_at(torch.arange(500.0, dtype=D))), sched.alpha_bars
    )
    with pytest.raises(ValueError, match="num_steps"):
        Schedule(1)
    with pytest.raises(ValueError, match="beta_start"):
        Schedule(10, beta_start=0.6)


def test_stratified_times_cover_every_stratum():
    t = stratified_times(10, 500, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long
    assert torch.equal(t // 50, torch.arange(10))


def test_loss_of_the_oracle_is_the_bayes_error_and_zero_net_gives_the_noise_norm():
    sched = Schedule(100)
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-2, 2, 8, dtype=D)[:, None]
    cov = se_covariance(x.numpy())
    chol = torch.linalg.cholesky(torch.as_tensor(cov))
    y = chol @ torch.randn(4096, 8, 1, generator=g, dtype=D)
    xb = x.expand(4096, 8, 1)
    zero = diffusion_loss(
        lambda *a: torch.zeros_like(a[1]), sched, xb, y, loss_type="l2", generator=g
    )
    # E|e|^2 = 1 per point
    assert zero.item() == pytest.approx(1.0, abs=0.03)
    zero_l1 = diffusion_loss(lambda *a: torch.zeros_like(a[1]), sched, xb, y, generator=g)
    assert zero_l1.item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.02)
    oracle = diffusion_loss(GaussianOracle(cov, sched), sched, xb, y, loss_type="l2", generator=g)
    assert oracle.item() < 0.8 * zero.item()
    # masked points do not count
    mask = torch.ones(4096, 8, dtype=torch.bool)
    mask[:, 5:] = False
    bad = y.clone()
    bad[:, 5:] = 1e6
    huge = diffusion_loss(
        lambda *a: a[1] * 0 + (a[1] > 1e3).to(D) * 1e6,
        sched,
        xb,
        bad,
        mask,
        loss_type="l2",
        generator=g,
    )
    assert huge.item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="loss_type"):
        diffusion_loss(lambda *a: a[1], sched, xb, y, loss_type="huber")


def test_ancestral_sampling_with_the_oracle_reproduces_the_gp_prior():
    sched = Schedule(500)
    x = torch.linspace(-2, 2, 8, dtype=D)[:, None]
    cov = se_covariance(x.numpy())
    num = 4000
    draws = ancestral_sample(
        GaussianOracle(cov, sched),
        sched,
        x.expand(num, 8, 1),
        generator=torch.Generator().manual_seed(1),
    )[..., 0].numpy()
    emp_cov = np.cov(draws.T)
    # sampling error alone: E[KL] ~ k (k + 1) / (4 S) = 0.0045
    kl = gaussian_kl(emp_cov, draws.mean(0), cov, np.zeros(8))
    assert kl < 0.02
    se = np.sqrt((np.diag(cov)[:, None] * np.diag(cov)[None, :] + cov**2) / num)
    assert np.max(np.abs(emp_cov - cov) / se) < 4.5


def _gp_conditional_case():
    """Three observed and five target inputs of an SE GP, and the exact posterior of the
    targets: ``x_c (3, 1), y_c (3, 1), x_t (5, 1)``, the joint covariance ``(8, 8)``, the
    posterior mean ``(5,)`` and covariance ``(5, 5)``."""
    x_c = torch.tensor([[-1.0], [0.1], [0.5]], dtype=D)
    x_t = torch.tensor([[-1.2], [-0.3], [0.3], [0.8], [1.5]], dtype=D)
    cov = se_covariance(torch.cat([x_c, x_t]).numpy())
    y_c = torch.tensor([[0.8], [-0.5], [0.3]], dtype=D)
    c, ct, tt = cov[:3, :3], cov[:3, 3:], cov[3:, 3:]
    mean = ct.T @ np.linalg.solve(c, y_c.numpy()[:, 0])
    post = tt - ct.T @ np.linalg.solve(c, ct)
    return x_c, y_c, x_t, cov, mean, post


@pytest.mark.parametrize("inner", [0, 5])
def test_repaint_with_the_oracle_reproduces_the_exact_gp_posterior(inner):
    sched = Schedule(200)
    g = torch.Generator().manual_seed(2)
    x_c, y_c, x_t, cov, mean, post = _gp_conditional_case()
    num = 3000
    draws = repaint_sample(
        GaussianOracle(cov, sched),
        sched,
        x_c.expand(num, 3, 1),
        y_c.expand(num, 3, 1),
        x_t.expand(num, 5, 1),
        num_inner_steps=inner,
        generator=g,
    )[..., 0].numpy()
    kl = gaussian_kl(np.cov(draws.T), draws.mean(0), post, mean)
    if inner == 0:
        # replacement conditioning without resampling is visibly off (KL 0.20 here)
        assert kl > 0.1
    else:
        # E[KL] from sampling error alone ~ k (k + 3) / (4 S) = 0.003; U = 5 gives 0.0075
        assert kl < 0.02, kl


def test_smc_with_the_oracle_reproduces_the_exact_gp_posterior():
    sched = Schedule(100)
    g = torch.Generator().manual_seed(2)
    x_c, y_c, x_t, cov, mean, post = _gp_conditional_case()
    oracle = GaussianOracle(cov, sched)
    # 30 independent runs (one task each) of 100 particles: 3000 draws
    draws = smc_sample(
        oracle,
        sched,
        x_c.expand(30, 3, 1),
        y_c.expand(30, 3, 1),
        x_t.expand(30, 5, 1),
        num_particles=100,
        generator=g,
    )
    assert draws.shape == (100, 30, 5, 1)
    assert oracle.calls == 100  # one noise-model call per level
    d = draws[..., 0].reshape(-1, 5).numpy()
    kl = gaussian_kl(np.cov(d.T), d.mean(0), post, mean)
    # sampling error of 3000 independent draws ~ 0.003 (RePaint U = 5: 0.0075); measured 0.004
    assert kl < 0.02, kl
    with pytest.raises(ValueError, match="num_particles"):
        smc_sample(oracle, sched, x_c[None], y_c[None], x_t[None], num_particles=0)
    with pytest.raises(TypeError, match="num_particles"):
        smc_sample(oracle, sched, x_c[None], y_c[None], x_t[None], num_particles=2.0)
    with pytest.raises(ValueError, match="ess_threshold"):
        smc_sample(oracle, sched, x_c[None], y_c[None], x_t[None], ess_threshold=1.5)


def test_smc_ignores_padded_context_points():
    # a padded context point (independent of the rest under the oracle) does not enter the
    # weights: under the mask even an overflowing value changes nothing
    sched = Schedule(20)
    x = torch.tensor([[-1.0], [0.2], [1.4], [0.9]], dtype=D)  # context 3 (last padded), target 1
    full = np.eye(4)
    idx = [0, 1, 3]
    full[np.ix_(idx, idx)] = se_covariance(x.numpy()[idx])
    oracle = GaussianOracle(full, sched)
    mask = torch.tensor([[True, True, False]])

    def draw(pad_value, context_mask):
        y_c = torch.tensor([[[0.5], [-0.3], [pad_value]]], dtype=D)
        return smc_sample(
            oracle,
            sched,
            x[None, :3],
            y_c,
            x[None, 3:],
            num_particles=16,
            context_mask=context_mask,
            generator=torch.Generator().manual_seed(0),
        )

    masked = draw(1e300, mask)
    torch.testing.assert_close(masked, draw(0.0, mask))
    assert masked.unique().numel() > 8
    # unmasked, its overflowing residual makes every weight vanish: the particles collapse
    assert draw(1e300, None).unique().numel() == 1


def test_repaint_counts_its_network_calls():
    sched = Schedule(10)
    x = torch.linspace(-1, 1, 4, dtype=D)[:, None]
    oracle = GaussianOracle(se_covariance(x.numpy()), sched)
    repaint_sample(
        oracle, sched, x[None, :2], torch.zeros(1, 2, 1, dtype=D), x[None, 2:], num_inner_steps=3
    )
    assert oracle.calls == 10 * 4
    with pytest.raises(ValueError, match="num_inner_steps"):
        repaint_sample(
            oracle,
            sched,
            x[None, :2],
            torch.zeros(1, 2, 1, dtype=D),
            x[None, 2:],
            num_inner_steps=-1,
        )


def _analytic_level0(cov, sched, y):
    """log density of y as the level-0 variable rescaled: N(0, cov + (1-a0)/a0 I)."""
    a0 = float(sched.alpha_bars[0])
    k = cov.shape[-1]
    return stats.multivariate_normal(np.zeros(k), cov + (1 - a0) / a0 * np.eye(k)).logpdf(y)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_ode_likelihood_with_the_oracle_equals_the_gaussian_density(divergence):
    sched = Schedule(500)
    g = torch.Generator().manual_seed(3)
    x = torch.tensor([[-1.5], [-0.7], [-0.1], [0.2], [1.1], [1.9]], dtype=D)
    cov = se_covariance(x.numpy())
    chol = np.linalg.cholesky(cov)
    y = torch.as_tensor(chol @ np.random.default_rng(0).standard_normal((6, 3)), dtype=D).T
    y = y[..., None]  # three functions (3, 6, 1)
    a_end = float(sched.alpha_bars[-1])
    end_cov = torch.as_tensor(a_end * cov + (1 - a_end) * np.eye(6))
    end = torch.distributions.MultivariateNormal(torch.zeros(6, dtype=D), end_cov)
    ref = np.array([_analytic_level0(cov, sched, v) for v in y[..., 0].numpy()])
    got = ode_log_prob(
        GaussianOracle(cov, sched),
        sched,
        x.expand(3, 6, 1),
        y,
        ode_steps=60,
        divergence=divergence,
        num_probes=256,
        generator=g,
        terminal_log_prob=lambda s: end.log_prob(s[..., 0]),
    ).numpy()
    tol = 1e-3 if divergence == "exact" else 0.3
    np.testing.assert_allclose(got, ref, atol=tol)
    # the default terminal N(0, I) is off by the little signal left at level T - 1
    got_default = ode_log_prob(
        GaussianOracle(cov, sched), sched, x.expand(3, 6, 1), y, ode_steps=60, divergence="exact"
    ).numpy()
    np.testing.assert_allclose(got_default, ref, atol=0.05)


def test_ode_likelihood_ignores_padding():
    sched = Schedule(100)
    x = torch.tensor([[-1.0], [0.0], [0.7], [5.0]], dtype=D)
    cov = se_covariance(x.numpy()[:3])
    full_cov = np.eye(4)
    full_cov[:3, :3] = cov  # the padded point is independent of the others
    y = torch.tensor([[[0.3], [-0.2], [0.5], [40.0]]], dtype=D)
    mask = torch.tensor([[True, True, True, False]])
    got = ode_log_prob(GaussianOracle(full_cov, sched), sched, x[None], y, mask, ode_steps=40)
    ref = ode_log_prob(GaussianOracle(cov, sched), sched, x[None, :3], y[:, :3], ode_steps=40)
    torch.testing.assert_close(got, ref)


def test_moment_matched_log_prob_against_scipy():
    g = np.random.default_rng(4)
    samples = g.standard_normal((50, 2, 3, 1))
    y = g.standard_normal((2, 3, 1))
    got = moment_matched_log_prob(torch.as_tensor(samples), torch.as_tensor(y), jitter=0.0)
    for b in range(2):
        s = samples[:, b, :, 0]
        ref = stats.multivariate_normal(s.mean(0), np.cov(s.T)).logpdf(y[b, :, 0])
        assert got[b].item() == pytest.approx(ref, rel=1e-10)
        diag = stats.norm(s.mean(0), s.std(0, ddof=1)).logpdf(y[b, :, 0]).sum()
        got_diag = moment_matched_log_prob(
            torch.as_tensor(samples), torch.as_tensor(y), jitter=0.0, diagonal=True
        )
        assert got_diag[b].item() == pytest.approx(diag, rel=1e-10)
