"""The shared kernel language: formulas, and batched (hierarchical) GP draws against
closed-form covariances."""

import math

import pytest
import torch

from bayesfn.covariance import GPSampler, batched_covariance, build_kernel


def test_fixed_sampler_covariance_is_the_closed_form_kernel():
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)[:, None]
    cov = GPSampler("rbf", lengthscale=0.5, variance=2.0).covariance(x, 2)
    exact = 2.0 * torch.exp(-0.5 * (x - x.T) ** 2 / 0.25)
    torch.testing.assert_close(cov[0], exact)
    torch.testing.assert_close(cov[1], exact)


def test_linear_sampler_variance_is_the_output_scale():
    x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    cov = GPSampler("linear", variance=4.0).covariance(x, 1)[0]
    torch.testing.assert_close(cov, 4.0 * x @ x.T)


def test_fixed_sampler_draws_have_the_kernel_covariance():
    x = torch.linspace(-1, 1, 4, dtype=torch.float64)[:, None]
    s = GPSampler("matern52", lengthscale=0.7, variance=1.5)
    f = s.sample(x, 40000, generator=torch.Generator().manual_seed(1))
    emp = f.T @ f / f.shape[0]
    # Monte Carlo sd of a second moment is about sqrt(2) * var / sqrt(N) = 0.011
    torch.testing.assert_close(emp, s.covariance(x)[0], atol=0.06, rtol=0)


def test_hierarchical_draws_use_one_hyperparameter_set_per_function():
    x = torch.zeros(3, 1, dtype=torch.float64)
    s = GPSampler("rbf", lengthscale=1.0, variance=(0.1, 1.0))
    cov = s.covariance(x, 20000, generator=torch.Generator().manual_seed(2))
    # identical inputs: every entry of a draw's matrix is its variance, log-normal(0.1, 1)
    var = cov[:, 0, 0]
    assert torch.equal(cov[:, 0, 2], var)
    assert abs(var.log().mean().item() - 0.1) < 0.03
    assert abs(var.log().std().item() - 1.0) < 0.03
    assert abs(var.mean().item() - math.exp(0.1 + 0.5)) < 0.1


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="unknown kernel 'foo'"):
        build_kernel("rbf+foo", 2)
    with pytest.raises(ValueError, match="lengthscale must be a positive number"):
        GPSampler("rbf", lengthscale=-1.0)
    with pytest.raises(ValueError, match="variance prior must be a"):
        GPSampler("rbf", variance=(0.0, -1.0))
    with pytest.raises(ValueError, match="single product term"):
        GPSampler("rbf+linear")
    with pytest.raises(ValueError, match="num must be a positive integer"):
        GPSampler().sample(torch.zeros(2, 1), 0)


def _sq(x):
    return ((x[:, :, None, :] - x[:, None, :, :]) ** 2).sum(-1)


def test_batched_covariance_equals_the_textbook_kernels():
    """One hyperparameter set per batch element, against the closed forms."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 7, 2, generator=g, dtype=torch.float64) * 4 - 2
    ls, var = torch.tensor([0.3, 1.0, 2.0]).double(), torch.tensor([0.5, 1.0, 2.0]).double()
    period, decay = torch.tensor([0.7, 1.5, 3.0]).double(), torch.tensor([1.0, 2.0, 4.0]).double()
    col = lambda t: t[:, None, None]  # noqa: E731
    r = _sq(x).sqrt()
    se = col(var) * torch.exp(-0.5 * r**2 / col(ls) ** 2)
    s = 5**0.5 * r / col(ls)
    matern = col(var) * (1 + s + s**2 / 3) * torch.exp(-s)
    sines = (
        torch.sin(torch.pi * (x[:, :, None, :] - x[:, None, :, :]) / period[:, None, None, None])
        ** 2
    ).sum(-1)
    periodic = col(var) * torch.exp(-2 * sines / col(ls) ** 2)
    weakly = periodic * torch.exp(-0.5 * r**2 / col(decay) ** 2)
    kw = {"variance": var, "lengthscale": ls}
    torch.testing.assert_close(batched_covariance("rbf", x, **kw), se)
    torch.testing.assert_close(batched_covariance("matern52", x, **kw), matern)
    torch.testing.assert_close(batched_covariance("periodic", x, **kw, period=period), periodic)
    got = batched_covariance(
        "periodic*rbf", x, variance=var, lengthscale=[ls, decay], period=period
    )
    torch.testing.assert_close(got, weakly)
    with pytest.raises(ValueError, match="give period="):
        batched_covariance("periodic", x, **kw)
