"""The latent-space samplers of OFM regression against closed forms and quadrature: the
Gauss–Newton approximation of a linear-Gaussian problem, the generalised pCN on a
nonlinear one, and the step-size adaptation's acceptance rate."""

import pytest
import torch

from bayesfn.processes.ofm import latent

F64 = torch.float64


def _linear_problem(d=12, m=4, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, d, generator=g, dtype=F64)
    y = torch.randn(m, generator=g, dtype=F64)
    precision = torch.eye(d, dtype=F64) + a.T @ a / noise
    mean = torch.linalg.solve(precision, a.T @ y / noise)
    return a, y, noise, mean, precision


def test_gauss_newton_is_the_exact_posterior_of_a_linear_gaussian_problem():
    """For h(z) = A z the posterior of z ~ N(0, I), y ~ N(A z, σ² I) is N(μ, P⁻¹) with
    P = I + AᵀA/σ², μ = P⁻¹Aᵀy/σ²; padded (masked) observations must not count."""
    a, y, noise, mean, precision = _linear_problem()
    pad = torch.cat([a, torch.randn(2, a.shape[1], dtype=F64)])  # two rows to mask out
    y_pad = torch.cat([y, torch.tensor([5.0, -5.0], dtype=F64)])
    mask = torch.cat([torch.ones(4), torch.zeros(2)])[None].expand(3, -1)
    approx = latent.gauss_newton(
        lambda z: z[..., 0] @ pad.T,
        y_pad[None].expand(3, -1),
        noise,
        torch.randn(3, a.shape[1], 1, dtype=F64),  # any start: one step is exact
        mask=mask,
    )
    assert approx["mean"].shape == (3, a.shape[1], 1)
    torch.testing.assert_close(approx["mean"][..., 0], mean.expand(3, -1), atol=1e-9, rtol=0)
    chol = approx["precision_chol"]
    torch.testing.assert_close(chol @ chol.transpose(1, 2), precision.expand(3, -1, -1))
    # its draws have the posterior covariance P⁻¹
    g = torch.Generator().manual_seed(1)
    many = {k: v[:1].expand(20000, *v.shape[1:]) for k, v in approx.items()}
    draws = latent.approximation_draws(many, generator=g)[..., 0]
    cov = torch.cov(draws.T)
    want = torch.linalg.inv(precision)
    assert (cov - want).abs().max() < 0.05 * want.diagonal().max()


def test_preconditioned_pcn_samples_a_nonlinear_posterior_exactly():
    """π(z) ∝ N(z; 0, I₂) N(y; z₁ + 0.4 z₁³ + 0.5 z₂, σ²): the Gauss–Newton Gaussian is
    only an approximation, so the Metropolis correction (its density ratio in the
    acceptance) must make the chains match the posterior moments from 2-D quadrature."""
    y, noise = 1.3, 0.05

    def h(z):
        z1, z2 = z[..., 0, 0], z[..., 1, 0]
        return z1 + 0.4 * z1**3 + 0.5 * z2

    def log_lik(z):
        return -0.5 * (y - h(z)).double().square() / noise, z[..., 0]

    s = torch.linspace(-5, 5, 1001, dtype=F64)
    z1, z2 = torch.meshgrid(s, s, indexing="ij")
    log_post = -0.5 * (z1**2 + z2**2) - 0.5 * (y - z1 - 0.4 * z1**3 - 0.5 * z2) ** 2 / noise
    w = (log_post - log_post.max()).exp()
    w = w / w.sum()
    want_mean = torch.stack([(w * z1).sum(), (w * z2).sum()])
    want_sd = torch.stack([(w * z1**2).sum(), (w * z2**2).sum()]).sub(want_mean**2).sqrt()

    chains = 64
    approx = latent.gauss_newton(
        lambda z: h(z)[:, None],
        torch.full((chains, 1), y, dtype=F64),
        noise,
        torch.zeros(chains, 2, 1, dtype=F64),
    )
    g = torch.Generator().manual_seed(0)
    z0 = latent.approximation_draws(approx, generator=g)
    res = latent.pcn(
        log_lik,
        z0,
        num_samples=300,
        burn_in=200,
        step_size=0.5,
        preconditioner=approx,
        groups=torch.zeros(chains),
        generator=g,
    )
    draws = res["output"].flatten(0, 1)
    err_mean = (draws.mean(0) - want_mean).abs() / want_sd
    err_sd = (draws.std(0) / want_sd - 1).abs()
    assert err_mean.max() < 0.08, err_mean
    assert err_sd.max() < 0.08, err_sd
    # the Gaussian approximation alone is off by more than that in the second moment
    gauss_sd = torch.linalg.inv(approx["precision_chol"][0] @ approx["precision_chol"][0].T)
    assert (gauss_sd.diagonal().sqrt() / want_sd - 1).abs().max() > 0.15
    assert 0.15 < res["accept"] < 0.9


@pytest.mark.parametrize("grouped", [False, True])
def test_adapted_acceptance_lands_near_its_target(grouped):
    """Plain pCN on a linear-Gaussian problem whose observations pin four of 30 latent
    directions: β adapted during burn-in must give an acceptance rate near 0.25 after it
    (β frozen), per chain or shared by all chains."""
    a, y, noise, _, _ = _linear_problem(d=30, m=4, noise=0.01)

    def log_lik(z):
        return -0.5 * (y - z[..., 0] @ a.T).square().sum(-1) / noise, z[..., 0]

    chains = 32
    g = torch.Generator().manual_seed(0)
    res = latent.pcn(
        log_lik,
        torch.randn(chains, 30, 1, generator=g, dtype=F64),
        num_samples=300,
        burn_in=600,
        step_size=0.5,
        groups=torch.zeros(chains) if grouped else None,
        generator=g,
    )
    assert abs(res["accept"] - 0.25) < 0.05, res["accept"]
    assert res["accept_per_chain"].shape == (chains,)
    if grouped:
        assert (res["step_size"] == res["step_size"][0]).all()
    assert res["step_size"].max() < 0.5  # it had to shrink from its start


def test_pcn_rejects_bad_settings():
    def log_lik(z):
        return torch.zeros(z.shape[0], dtype=F64), z

    z0 = torch.zeros(2, 3, 1)
    with pytest.raises(ValueError, match="target_accept"):
        latent.pcn(log_lik, z0, target_accept=1.5)
    with pytest.raises(ValueError, match="groups"):
        latent.pcn(log_lik, z0, groups=torch.zeros(3))
    bad = {"mean": z0, "precision_chol": torch.eye(2).expand(2, 2, 2)}
    with pytest.raises(ValueError, match="precision_chol"):
        latent.pcn(log_lik, z0, preconditioner=bad)
    with pytest.raises(ValueError, match="iterations"):
        latent.gauss_newton(lambda z: z[:, :1, 0], torch.zeros(2, 1), 0.1, z0, iterations=-1)


def test_preconditioned_pcn_mixes_where_plain_pcn_crawls():
    """On a linear-Gaussian problem the Gauss–Newton Gaussian is the posterior, so the
    generalised pCN accepts every proposal, β adapts to 1 and successive draws are
    independent (lag-1 autocorrelation ~0); plain pCN, whose β must stay small for the
    pinned directions, moves the free directions by ~β a step (autocorrelation ~1)."""
    a, y, noise, mean, precision = _linear_problem(d=30, m=4, noise=0.0025)

    def log_lik(z):
        return -0.5 * (y - z[..., 0] @ a.T).square().sum(-1) / noise, z[..., 0]

    chains = 16
    approx = latent.gauss_newton(
        lambda z: z[..., 0] @ a.T,
        y.expand(chains, -1),
        noise,
        torch.zeros(chains, 30, 1, dtype=F64),
    )
    lag1 = {}
    for name, pre in (("plain", None), ("preconditioned", approx)):
        g = torch.Generator().manual_seed(0)
        z0 = latent.approximation_draws(approx, generator=g)
        res = latent.pcn(
            log_lik,
            z0,
            num_samples=200,
            burn_in=200,
            preconditioner=pre,
            groups=torch.zeros(chains),
            generator=g,
        )
        x = res["output"] - res["output"].mean(1, keepdim=True)  # (C, S, 30)
        lag1[name] = float((x[:, 1:] * x[:, :-1]).sum((0, 1)).div(x.square().sum((0, 1))).median())
        if pre is not None:
            assert res["accept"] > 0.99 and res["step_size"].min() > 0.99
            sd = torch.linalg.inv(precision).diagonal().sqrt()
            err = (res["output"].flatten(0, 1).mean(0) - mean).abs() / sd
            assert err.max() < 0.15, err
    assert lag1["preconditioned"] < 0.1, lag1
    assert lag1["plain"] > 0.8, lag1
