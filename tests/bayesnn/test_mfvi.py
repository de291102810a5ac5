"""Mean-field VI against the closed-form mean-field optimum of Bayesian linear regression.

For ``y = Φ β + ε`` with ``β ~ N(0, I)`` and ``ε ~ N(0, σ²)``, the posterior is
``N(Λ⁻¹ Φᵀ y / σ², Λ⁻¹)`` with ``Λ = ΦᵀΦ / σ² + I``; the best fully factorised Gaussian
has the exact mean and variances ``1 / diag(Λ)`` (not ``diag(Λ⁻¹)``), and equals the
posterior when ``ΦᵀΦ`` is diagonal. A network with no hidden layer is this model with
``Φ = [x / sqrt(d), 1]``.
"""

import pytest
import torch

from bayesfn.bayesnn import BNN, MLP, GaussianLikelihood, HierarchicalPrior, MeanFieldVI
from bayesfn.bayesnn.inference.mfvi import gaussian_kl

NOISE = 0.25


def _closed_form(x, y):
    n, d = x.shape
    phi = torch.cat([x / d**0.5, torch.ones(n, 1, dtype=x.dtype)], 1)
    precision = phi.T @ phi / NOISE + torch.eye(d + 1, dtype=x.dtype)
    mean = torch.linalg.solve(precision, phi.T @ y / NOISE)[:, 0]
    return mean, precision


def _fit(x, y, **settings):
    inference = MeanFieldVI(
        **{"max_steps": 2000, "lr": 0.03, "train_samples": 16, "lr_schedule": "cosine"} | settings
    )
    model = BNN(
        MLP(hidden=()),
        likelihood=GaussianLikelihood(NOISE),
        inference=inference,
        standardize=False,
        dtype=torch.float64,
    )
    model.fit(x, y, seed=0, progress_bar=False)
    state = model.state_
    mean = torch.cat([state["mean"]["layers.0.weight"][0], state["mean"]["layers.0.bias"]])
    std = torch.cat([state["std"]["layers.0.weight"][0], state["std"]["layers.0.bias"]])
    return model, mean, std


def _data(orthogonal: bool):
    g = torch.Generator().manual_seed(0)
    if orthogonal:  # columns of a Sylvester-Hadamard matrix: orthogonal, zero-sum
        h = torch.ones(1, 1, dtype=torch.float64)
        for _ in range(5):
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        x = h[:, 1:4]
    else:
        x = torch.randn(40, 3, generator=g, dtype=torch.float64)
        x[:, 1] += 0.8 * x[:, 0]  # correlated design: the posterior is not factorised
    beta = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    y = x @ beta + 0.3 + 0.5 * torch.randn(x.shape[0], 1, generator=g, dtype=torch.float64)
    return x, y


def test_orthogonal_design_recovers_the_exact_posterior():
    x, y = _data(orthogonal=True)
    exact_mean, precision = _closed_form(x, y)
    covariance = torch.linalg.inv(precision)
    assert torch.allclose(covariance, torch.diag(covariance.diagonal()), atol=1e-12)
    _, mean, std = _fit(x, y)
    torch.testing.assert_close(mean, exact_mean, atol=5e-3, rtol=0)
    torch.testing.assert_close(std**2, covariance.diagonal(), rtol=0.05, atol=0)


@pytest.mark.parametrize("local", [True, False])
def test_correlated_design_gives_the_mean_field_optimum(local):
    x, y = _data(orthogonal=False)
    exact_mean, precision = _closed_form(x, y)
    mf_var = 1.0 / precision.diagonal()
    # the check can fail: the exact marginal variances differ from the mean-field ones
    assert (torch.linalg.inv(precision).diagonal() / mf_var).max() > 1.5
    _, mean, std = _fit(x, y, local_reparameterization=local)
    torch.testing.assert_close(mean, exact_mean, atol=5e-3, rtol=0)
    torch.testing.assert_close(std**2, mf_var, rtol=0.05, atol=0)


def test_draws_have_the_fitted_moments():
    x, y = _data(orthogonal=True)
    model, mean, std = _fit(x, y, max_steps=200)
    draws = model.weight_draws(20000, generator=torch.Generator().manual_seed(1))
    assert draws["layers.0.weight"].shape == (1, 20000, 1, 3)
    w = torch.cat([draws["layers.0.weight"][0, :, 0], draws["layers.0.bias"][0]], 1)
    se = std / 20000**0.5
    assert ((w.mean(0) - mean).abs() < 5 * se).all()
    torch.testing.assert_close(w.std(0), std, rtol=0.05, atol=0)
    post = model.posterior(x[:5], num_samples=50)
    assert post.event_shape == (5, 1)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(4, 3, generator=g, dtype=torch.float64)
    std = torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.1
    prior = torch.tensor(1.7, dtype=torch.float64)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, prior)
    ).sum()
    torch.testing.assert_close(gaussian_kl(mean, std, prior), reference)


def test_learned_noise_and_hierarchical_prior_run_and_learn_the_noise():
    """A learned noise variance is one more coordinate of q; with a Monte Carlo KL to a
    hierarchical prior the fit still moves it from 0.5 to about the data's level (0.09)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(200, 1, generator=g) * 4 - 2
    y = torch.sin(2 * x) + 0.3 * torch.randn(200, 1, generator=g)
    model = BNN(
        MLP((20,)),
        prior=HierarchicalPrior(),
        likelihood=GaussianLikelihood(0.5, learn_noise=True, noise_prior=None),
        inference=MeanFieldVI(max_steps=1500, lr=0.02, batch_size=50, train_samples=4),
        standardize=False,
    ).fit(x, y, seed=0, progress_bar=False)
    noise = model.state_["mean"]["likelihood.log_noise"].exp().item()
    assert 0.05 < noise < 0.2  # started at 0.5; MFVI tends to overestimate noise
    pred = model.posterior(x, observation_noise=True, num_samples=30)
    assert ((pred.mean - torch.sin(2 * x)) ** 2).mean() < 0.05  # a constant: about 0.5


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="train_samples must be"):
        MeanFieldVI(train_samples=0)
    with pytest.raises(ValueError, match="init_std must be"):
        MeanFieldVI(init_std=-1.0)
    with pytest.raises(ValueError, match="lr_schedule must be"):
        MeanFieldVI(lr_schedule="linear")
    with pytest.raises(TypeError, match="unexpected option"):
        BNN(inference="mfvi").fit(torch.zeros(5, 1), torch.zeros(5), progress_bar=False, foo=1)
    assert isinstance(BNN(inference="mfvi").inference, MeanFieldVI)
