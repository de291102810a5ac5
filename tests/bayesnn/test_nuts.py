"""NUTS against the closed-form posterior of Bayesian linear regression."""

import pytest
import torch

from bayesfn.bayesnn import BNN, MLP, NUTS, GaussianLikelihood

NOISE = 0.25


def test_linear_model_draws_match_the_conjugate_posterior():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    x[:, 1] += 0.8 * x[:, 0]  # correlated posterior
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3
    y = y + 0.5 * torch.randn(30, 1, generator=g, dtype=torch.float64)
    model = BNN(
        MLP(hidden=()),
        likelihood=GaussianLikelihood(NOISE),
        inference=NUTS(num_samples=200, warmup_steps=100, num_chains=2),
        standardize=False,
        dtype=torch.float64,
    ).fit(x, y, seed=0, progress_bar=False)
    phi = torch.cat([x / 3**0.5, torch.ones(30, 1, dtype=torch.float64)], 1)
    precision = phi.T @ phi / NOISE + torch.eye(4, dtype=torch.float64)
    covariance = torch.linalg.inv(precision)
    mean = covariance @ phi.T @ y[:, 0] / NOISE
    draws = model.weight_draws()
    assert draws["layers.0.weight"].shape == (2, 200, 1, 3)
    w = torch.cat([draws["layers.0.weight"][..., 0, :], draws["layers.0.bias"]], -1)
    w = w.reshape(400, 4)
    # NUTS on a Gaussian target mixes about as well as independent draws; allow a
    # Monte Carlo error of 400 / 2 effective draws
    se = (covariance.diagonal() / 200) ** 0.5
    assert ((w.mean(0) - mean).abs() < 4 * se).all()
    torch.testing.assert_close(
        torch.cov(w.T), covariance, rtol=0, atol=0.2 * covariance.diagonal().max()
    )
    assert (w.var(0) / covariance.diagonal() - 1).abs().max() < 0.25
    assert model.fit_result_.diagnostics["divergences"] == [0, 0]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="num_chains must be"):
        NUTS(num_chains=0)
    with pytest.raises(ValueError, match="target_accept_prob must be"):
        NUTS(target_accept_prob=1.5)
    assert isinstance(BNN(inference="nuts").inference, NUTS)
