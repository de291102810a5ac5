"""Weight priors against closed forms and numerical integration."""

import math

import pytest
import scipy.integrate
import scipy.stats
import torch

from bayesfn.bayesnn import MLP, GaussianPrior, HierarchicalPrior


def _net():
    return MLP(hidden=(3,)).build(2, 1)


def test_gaussian_prior_is_exactly_standard_normal_at_std_one():
    prior = GaussianPrior().bind(_net())
    w = prior.sample(5, generator=torch.Generator().manual_seed(0))
    expected = sum(
        torch.distributions.Normal(0.0, 1.0).log_prob(v).flatten(1).sum(-1) for v in w.values()
    )
    torch.testing.assert_close(prior.log_prob(w), expected)


def test_gaussian_prior_per_parameter_scales_have_parameter_shapes():
    prior = GaussianPrior(2.0, per="parameter").bind(_net())
    scales = prior.scales()
    assert scales["layers.0.weight"].shape == (3, 2)
    torch.testing.assert_close(scales["layers.0.weight"], torch.full((3, 2), 2.0))
    w = prior.sample(20000, generator=torch.Generator().manual_seed(1))
    assert abs(w["layers.0.weight"].std().item() - 2.0) < 0.02


def test_rsample_is_differentiable_in_the_hyperparameters():
    for prior in (GaussianPrior(), HierarchicalPrior(2.0, 2.0)):
        prior.bind(_net())
        w = prior.rsample(8, generator=torch.Generator().manual_seed(0))
        sum(v.square().sum() for v in w.values()).backward()
        grads = [p.grad for p in prior.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_hierarchical_marginal_density_equals_numerical_integration():
    prior = HierarchicalPrior(2.5, 1.5).bind({"w": (3,)})
    w = torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64)
    prior.double()
    sq = float((w**2).sum())

    def integrand(lam):
        return math.exp(
            scipy.stats.gamma.logpdf(lam, 2.5, scale=1 / 1.5)
            + 1.5 * math.log(lam / (2 * math.pi))
            - 0.5 * lam * sq
        )

    value, _ = scipy.integrate.quad(integrand, 0, math.inf)
    torch.testing.assert_close(prior.log_prob({"w": w}).item(), math.log(value), rtol=1e-8, atol=0)


def test_hierarchical_conditional_density_is_gaussian_given_the_precision():
    prior = HierarchicalPrior().bind({"w": (4,), "b": (2,)})
    params = {"w": torch.randn(3, 4), "b": torch.randn(3, 2)}
    state = {"w": torch.tensor([0.5, 1.0, 4.0]), "b": torch.tensor([2.0, 2.0, 0.1])}
    expected = sum(
        torch.distributions.Normal(0, state[k].rsqrt()[:, None]).log_prob(params[k]).sum(-1)
        for k in params
    )
    torch.testing.assert_close(prior.log_prob(params, state), expected)


def test_gibbs_draws_follow_the_conjugate_gamma_posterior():
    prior = HierarchicalPrior(1.5, 0.5).bind({"w": (6,)})
    w = torch.tensor([[0.2, -0.4, 1.1, 0.0, -2.0, 0.5]]).expand(40000, 6)
    state = prior.gibbs(
        {"w": w}, prior.init_state(40000), generator=torch.Generator().manual_seed(3)
    )
    lam = state["w"].double().numpy()
    a, b = 1.5 + 3.0, 0.5 + 0.5 * float((w[0] ** 2).sum())
    ks = scipy.stats.kstest(lam, scipy.stats.gamma(a, scale=1 / b).cdf)
    assert ks.pvalue > 0.01
    assert abs(lam.mean() - a / b) < 4 * math.sqrt(a) / b / math.sqrt(lam.size)


def test_a_parameter_the_prior_does_not_cover_is_an_error():
    prior = GaussianPrior().bind(_net())
    w = prior.sample(2)
    w["extra.weight"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"does not cover parameter\(s\) \['extra.weight'\]"):
        prior.log_prob(w)
    del w["extra.weight"], w["layers.1.bias"]
    with pytest.raises(ValueError, match=r"lack parameter\(s\) \['layers.1.bias'\]"):
        prior.log_prob(w)
    with pytest.raises(ValueError, match="cannot cover"):
        prior.bind(MLP(hidden=(4,)).build(2, 1))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="std must be a positive"):
        GaussianPrior(0.0)
    with pytest.raises(ValueError, match="per must be one of"):
        GaussianPrior(per="unit")
    with pytest.raises(ValueError, match="rate must be a positive"):
        HierarchicalPrior(1.0, float("nan"))
    with pytest.raises(ValueError, match="not bound"):
        GaussianPrior().rsample(3)
