"""Flow matching pieces: reference measures, OT coupling, the ODE solver and exact
densities (checked against closed forms and brute force)."""

import itertools
import math

import pytest
import torch

from bayesfn.covariance import GPSampler
from bayesfn.processes.ofm.flow import (
    GaussianReference,
    SpectralReference,
    interpolate,
    log_density,
    odeint,
    ot_pairing,
)
from bayesfn.processes.ofm.operator import FourierNeuralOperator

F64 = torch.float64


def _grid(n):
    return torch.linspace(0, 1, n, dtype=F64)[:, None]


def test_gaussian_reference_density_whitening_and_draws():
    x = _grid(12)
    ref = GaussianReference(x, 2, kernel="matern12", lengthscale=0.2, variance=1.5)
    cov = GPSampler("matern12", lengthscale=0.2, variance=1.5).covariance(x)[0]
    cov = cov + 1e-6 * cov.diagonal().mean() * torch.eye(12, dtype=F64)
    a = torch.randn(5, 12, 2, dtype=F64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(12, dtype=F64), cov)
    torch.testing.assert_close(ref.log_prob(a), mvn.log_prob(a.mT).sum(-1))
    torch.testing.assert_close(ref.whiten(ref.color(a)), a)
    draws = ref.sample(20000, generator=torch.Generator().manual_seed(0), dtype=F64)
    emp = torch.cov(draws[..., 1].T)
    assert (emp - cov).abs().max() < 0.08  # ~4 standard errors at variance 1.5


@pytest.mark.parametrize("grid", [(16,), (6, 5)])
def test_spectral_reference_is_the_wrapped_kernel_circulant(grid):
    ref = SpectralReference(grid, 1, kernel="matern12", lengthscale=0.3)
    n = math.prod(grid)
    # dense covariance with wrapped displacements, built independently
    idx = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij"), -1).reshape(
        n, -1
    )
    diff = (idx[:, None, :] - idx[None, :, :]).abs()
    sizes = torch.tensor(grid)
    wrapped = torch.minimum(diff, sizes - diff).double() / (sizes - 1).double()
    cov = torch.exp(-wrapped.norm(dim=-1) / 0.3)
    # C^1/2 applied to the identity, squared, gives the covariance
    half = ref.color(torch.eye(n, dtype=F64)[..., None])[..., 0]
    torch.testing.assert_close(half @ half.T, cov, rtol=1e-8, atol=1e-8)
    a = torch.randn(3, n, 1, dtype=F64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), cov)
    torch.testing.assert_close(ref.log_prob(a), mvn.log_prob(a[..., 0]))
    torch.testing.assert_close(ref.whiten(ref.color(a)), a)


def test_ot_pairing_is_the_optimal_permutation_and_beats_random_pairing():
    g = torch.Generator().manual_seed(0)
    # brute force over all 7! pairings
    x0, x1 = torch.randn(7, 5, 1, generator=g), torch.randn(7, 5, 1, generator=g) + 1
    paired = ot_pairing(x0, x1)
    cost = (paired - x1).square().sum((1, 2)).sum()
    best = min((x0[list(p)] - x1).square().sum() for p in itertools.permutations(range(7)))
    torch.testing.assert_close(cost, best)
    assert sorted(map(tuple, paired.flatten(1).tolist())) == sorted(
        map(tuple, x0.flatten(1).tolist())
    )
    # on GP-like draws: much cheaper than random pairing
    ref = GaussianReference(_grid(32), 1, lengthscale=0.01)
    data = GPSampler("matern32", lengthscale=0.3).sample(_grid(32), 128, generator=g)[..., None]
    noise = ref.sample(128, generator=g, dtype=F64)
    random_cost = (noise - data).square().sum((1, 2)).mean()
    ot_cost = (ot_pairing(noise, data) - data).square().sum((1, 2)).mean()
    assert ot_cost < 0.95 * random_cost, (ot_cost, random_cost)


def test_interpolate_end_points_and_velocity():
    x0, x1, xi = torch.randn(3, 4, 1), torch.randn(3, 4, 1), torch.randn(3, 4, 1)
    xt, v = interpolate(x0, x1, torch.tensor([0.0, 1.0, 0.25]), 0.0, xi)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], x1[1])
    torch.testing.assert_close(xt[2], 0.75 * x0[2] + 0.25 * x1[2])
    torch.testing.assert_close(v, x1 - x0)
    xt2, _ = interpolate(x0, x1, torch.zeros(3), 0.1, xi)
    torch.testing.assert_close(xt2, x0 + 0.1 * xi)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_odeint_matches_closed_form_both_directions(method):
    # dy/dt = -t y  ->  y(t) = y0 exp(-t^2 / 2)
    f = lambda t, s: (-t * s[0],)  # noqa: E731
    y0 = torch.tensor([1.0, -2.0], dtype=F64)
    (y1,), nfe = odeint(f, (y0,), 0.0, 1.5, method=method, rtol=1e-9, atol=1e-9, steps=200)
    torch.testing.assert_close(y1, y0 * math.exp(-(1.5**2) / 2), rtol=1e-7, atol=1e-9)
    (back,), _ = odeint(f, (y1,), 1.5, 0.0, method=method, rtol=1e-9, atol=1e-9, steps=200)
    torch.testing.assert_close(back, y0, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="method"):
        odeint(f, (y0,), 0.0, 1.0, method="heun")


def _linear_case(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    a_mat = 0.6 * torch.randn(n, n, generator=g, dtype=F64)
    ref = GaussianReference(_grid(n), 1, lengthscale=0.3)
    field = lambda t, x: a_mat @ x  # noqa: E731  time-independent linear field
    m = torch.linalg.matrix_exp(a_mat)
    cov0 = ref.chol @ ref.chol.T
    truth = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), m @ cov0 @ m.T)
    u = m @ ref.sample(8, generator=g, dtype=F64)  # draws of the pushed measure
    return field, ref, u, truth, a_mat


def test_linear_flow_density_equals_the_analytic_gaussian():
    field, ref, u, truth, a_mat = _linear_case()
    lp, info = log_density(field, u, ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(lp, truth.log_prob(u[..., 0]), rtol=1e-7, atol=1e-7)
    # the integral of the divergence is tr(A) for a constant field
    torch.testing.assert_close(info["integral"], torch.full_like(lp, float(a_mat.trace())))


def test_density_sign_is_the_change_of_variables_not_the_official_one():
    """The official ``data_likelihood`` returns log ν₀ + ∫div; with tr A = 2.1 that is
    off by 2 tr A = 4.2 nats from the true density, which this test would flag."""
    n = 5
    ref = GaussianReference(_grid(n), 1, lengthscale=0.3)
    c = 0.7
    u = ref.sample(4, generator=torch.Generator().manual_seed(3), dtype=F64) * math.exp(c)
    lp, info = log_density(lambda t, x: c * x, u, ref, rtol=1e-9, atol=1e-9)
    cov = math.exp(2 * c) * ref.chol @ ref.chol.T
    truth = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), cov).log_prob(
        u[..., 0]
    )
    torch.testing.assert_close(lp, truth, rtol=1e-8, atol=1e-8)
    official = info["log_reference"] + info["integral"]
    assert ((official - truth) - 2 * c * n).abs().max() < 1e-6


def test_hutchinson_trace_is_unbiased_on_the_linear_flow():
    field, ref, u, truth, _ = _linear_case(n=6, seed=1)
    lp, _ = log_density(
        field,
        u,
        ref,
        trace="hutchinson",
        num_probes=400,
        generator=torch.Generator().manual_seed(0),
    )
    err = lp - truth.log_prob(u[..., 0])
    # each probe's estimate of tr A has sd sqrt(2 sum_{i != j} A_ij^2 ...) ~ 3: 400 probes ~ 0.15
    assert err.abs().max() < 0.6, err


def test_exact_density_of_a_nonlinear_flow_matches_brute_force_jacobian():
    """A random (nonlinear) FNO field on 8 points: log p(u) from the augmented ODE equals
    log ν₀(G⁻¹(u)) − log|det ∂G/∂a| with the Jacobian of a fine RK4 flow map taken by
    autograd."""
    torch.manual_seed(0)
    op = FourierNeuralOperator(1, 1, width=8, modes=3, depth=2).double()
    field = lambda t, x: 2.0 * op(t.expand(x.shape[0]), x)  # noqa: E731
    ref = GaussianReference(_grid(8), 1, lengthscale=0.2)
    a = ref.sample(2, generator=torch.Generator().manual_seed(1), dtype=F64)

    def flow_map(a_vec):
        (u,), _ = odeint(
            lambda t, s: (field(t, s[0]),),
            (a_vec.reshape(1, 8, 1),),
            0.0,
            1.0,
            method="rk4",
            steps=100,
        )
        return u.reshape(8)

    for k in range(2):
        u = flow_map(a[k].reshape(8))
        jac = torch.autograd.functional.jacobian(flow_map, a[k].reshape(8), vectorize=True)
        expected = ref.log_prob(a[k][None]) - torch.linalg.slogdet(jac).logabsdet
        lp, _ = log_density(field, u.reshape(1, 8, 1).detach(), ref, rtol=1e-8, atol=1e-8)
        # the RK4 map (100 steps) is exact to ~1e-8 nats here; a wrong trace is off by O(0.1)
        torch.testing.assert_close(lp, expected, rtol=0, atol=1e-6)
        assert torch.linalg.slogdet(jac).logabsdet.abs() > 0.1  # a non-trivial volume change
