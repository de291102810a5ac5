"""Last-layer Laplace against Bayesian linear regression on the last layer's features
and against the autograd Hessian of the log joint."""

import pytest
import torch

from bayesfn.bayesnn import (
    BNN,
    CNN,
    MLP,
    GaussianLikelihood,
    HierarchicalPrior,
    LastLayerLaplace,
)

NOISE = 0.05


def _regression():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 2, generator=g, dtype=torch.float64) * 4 - 2
    y = (
        torch.sin(x[:, :1])
        + 0.2 * x[:, 1:]
        + 0.2 * torch.randn(60, 1, generator=g, dtype=torch.float64)
    )
    return x, y


def test_gaussian_likelihood_gives_bayesian_linear_regression_on_the_features():
    x, y = _regression()
    model = BNN(
        MLP((10,)),
        likelihood=GaussianLikelihood(NOISE),
        inference=LastLayerLaplace(max_steps=1500, lr=0.03),
        standardize=False,
        dtype=torch.float64,
    ).fit(x, y, seed=0, progress_bar=False)
    p = model.state_["params"]
    # the MAP features, written out
    h = torch.tanh(x @ p["layers.0.weight"][0].T / 2**0.5 + p["layers.0.bias"][0])
    phi = torch.cat([h / 10**0.5, torch.ones(60, 1, dtype=torch.float64)], 1)
    precision = phi.T @ phi / NOISE + torch.eye(11, dtype=torch.float64)
    blr_mean = torch.linalg.solve(precision, phi.T @ y)[:, 0] / NOISE
    torch.testing.assert_close(model.state_["precision"], precision)
    # the MAP's last layer is the BLR mean given its own features (at the joint optimum;
    # 1500 Adam steps end within about 1e-2 of it)
    last = torch.cat([p["layers.1.weight"][0, 0], p["layers.1.bias"][0]])
    torch.testing.assert_close(last, blr_mean, atol=2e-2, rtol=0)
    # the predictive of f at test points: φ*ᵀ Σ φ*, by Monte Carlo over draws
    x_test = torch.tensor([[0.0, 0.0], [1.5, -1.0], [4.0, 3.0]], dtype=torch.float64)
    h_test = torch.tanh(x_test @ p["layers.0.weight"][0].T / 2**0.5 + p["layers.0.bias"][0])
    phi_test = torch.cat([h_test / 10**0.5, torch.ones(3, 1, dtype=torch.float64)], 1)
    exact_var = (phi_test @ torch.linalg.solve(precision, phi_test.T)).diagonal()
    post = model.posterior(x_test, num_samples=20000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(post.variance[:, 0], exact_var, rtol=0.05, atol=0)
    torch.testing.assert_close(
        post.mean[:, 0], phi_test @ last, atol=4 * exact_var.max() ** 0.5 / 140, rtol=0
    )


def test_categorical_precision_is_the_hessian_of_the_log_joint():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(80, 2, generator=g, dtype=torch.float64)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    model = BNN(
        MLP((6,)),
        likelihood="categorical",
        inference=LastLayerLaplace(max_steps=300, lr=0.05),
        dtype=torch.float64,
    ).fit(x, labels, seed=0, progress_bar=False)
    target, p = model.target_, model.state_["params"]

    def neg_log_joint(flat):
        theta = flat.reshape(3, 7)
        q = dict(p)
        q["layers.1.weight"], q["layers.1.bias"] = theta[None, :, :6], theta[None, :, 6]
        return -target.log_joint(q)[0]

    flat = torch.cat([p["layers.1.weight"][0], p["layers.1.bias"][0][:, None]], 1).reshape(-1)
    hessian = torch.autograd.functional.hessian(neg_log_joint, flat)
    torch.testing.assert_close(model.state_["precision"], hessian)
    pred = model.posterior(x, observation_noise=True, num_samples=50)
    torch.testing.assert_close(pred.mean.sum(-1), torch.ones(80, dtype=torch.float64))


def test_non_gaussian_prior_curvature_by_autograd_and_cnn_features():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 16, generator=g)
    y = x[:, :1] - x[:, 5:6]
    model = BNN(
        CNN(image_shape=(1, 4, 4), channels=(2,), hidden=(5,)),
        # the marginal (Student-t) prior is convex in the weights only where
        # Σ w² < 2 β: a large rate keeps the Laplace precision positive definite
        prior=HierarchicalPrior(rate=100.0),
        inference=LastLayerLaplace(max_steps=50),
    ).fit(x, y, seed=0, progress_bar=False)
    target, p = model.target_, model.state_["params"]

    def neg_log_joint(flat):
        theta = flat.reshape(1, 6)
        q = dict(p)
        q["layers.1.weight"], q["layers.1.bias"] = theta[None, :, :5], theta[None, :, 5]
        return -target.log_joint(q)[0]

    flat = torch.cat([p["layers.1.weight"][0], p["layers.1.bias"][0][:, None]], 1).reshape(-1)
    hessian = torch.autograd.functional.hessian(neg_log_joint, flat)
    # float32 MAP features; the Hessian here is of the float32 log joint
    torch.testing.assert_close(model.state_["precision"], hessian.double(), rtol=1e-4, atol=1e-3)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="prior_precision must be"):
        LastLayerLaplace(prior_precision=0.0)
    with pytest.raises(ValueError, match="max_steps must be"):
        LastLayerLaplace(max_steps=-1)
    assert isinstance(BNN(inference="laplace").inference, LastLayerLaplace)
