"""The weight-space BNN model: plumbing checked against closed forms."""

import pytest
import torch

from bayesfn.bayesnn import BNN, MAP, MLP, GaussianLikelihood
from bayesfn.bayesnn.nets import CNN, batched_forward


def test_batched_forward_equals_a_loop_over_parameter_sets():
    module = MLP(hidden=(4, 3), activation="tanh").build(2, 2)
    params = {n: torch.randn(5, *p.shape) for n, p in module.named_parameters()}
    x = torch.randn(7, 2)
    out = batched_forward(module, params, x)
    for k in range(5):
        expected = x
        for i in range(3):
            w, b = params[f"layers.{i}.weight"][k], params[f"layers.{i}.bias"][k]
            expected = expected @ w.T / w.shape[1] ** 0.5 + b
            if i < 2:
                expected = torch.tanh(expected)
        torch.testing.assert_close(out[k], expected)


def test_cnn_reads_flat_rows_as_images():
    module = CNN(image_shape=(1, 8, 8), channels=(2,), hidden=(5,)).build(64, 3)
    assert module(torch.randn(4, 64)).shape == (4, 3)
    with pytest.raises(ValueError, match="x has 10 features but image_shape"):
        CNN(image_shape=(1, 8, 8)).build(10, 3)


def test_map_of_a_linear_model_is_the_ridge_solution():
    """With no hidden layer, f = x Wᵀ / sqrt(d) + b and N(0, 1) priors: the MAP is the
    Bayesian linear regression posterior mean in closed form."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.3
    y = y + 0.2 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    noise = 0.25
    model = BNN(
        MLP(hidden=()),
        likelihood=GaussianLikelihood(noise),
        inference=MAP(max_steps=3000, lr=0.05),
        standardize=False,
        dtype=torch.float64,
    ).fit(x, y, seed=0, progress_bar=False)
    phi = torch.cat([x / 3**0.5, torch.ones(30, 1, dtype=torch.float64)], 1)
    precision = phi.T @ phi / noise + torch.eye(4, dtype=torch.float64)
    mean = torch.linalg.solve(precision, phi.T @ y / noise)
    x_test = torch.randn(6, 3, generator=g, dtype=torch.float64)
    phi_test = torch.cat([x_test / 3**0.5, torch.ones(6, 1, dtype=torch.float64)], 1)
    post = model.posterior(x_test)
    torch.testing.assert_close(post.mean, phi_test @ mean, atol=1e-5, rtol=0)
    noisy = model.posterior(x_test, observation_noise=True)
    torch.testing.assert_close(noisy.variance, torch.full((6, 1), noise, dtype=torch.float64))


def test_standardisation_reports_in_original_units():
    """A model fitted on (a x + c, s y + t) predicts s f + t of the model fitted on (x, y)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(25, 1, generator=g, dtype=torch.float64)
    y = torch.sin(4 * x)
    fits = []
    for a, c, s, t in [(1.0, 0.0, 1.0, 0.0), (100.0, 1e4, 1e3, -5e3)]:
        m = BNN(MLP((8,)), inference=MAP(max_steps=200), dtype=torch.float64)
        fits.append(m.fit(a * x + c, s * y + t, seed=0, progress_bar=False))
        fits[-1].scale = (a, c, s, t)
    a, c, s, t = fits[1].scale
    x_test = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None]
    torch.testing.assert_close(
        fits[1].posterior(a * x_test + c).mean,
        s * fits[0].posterior(x_test).mean + t,
        rtol=1e-6,
        atol=1e-6 * s,
    )


def test_classification_gives_label_probabilities():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 2, generator=g)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    model = BNN(MLP((10,)), likelihood="categorical", inference=MAP(max_steps=1000, lr=0.05))
    model.fit(x, labels, seed=0, progress_bar=False)
    pred = model.posterior(x, observation_noise=True)
    assert pred.event_shape == (300,) and pred.mean.shape == (300, 3)
    torch.testing.assert_close(pred.mean.sum(-1), torch.ones(300))
    assert (pred.mean.argmax(-1) == labels).float().mean() > 0.9
    assert model.posterior(x[:4]).event_shape == (4, 3)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="prior must be one of"):
        BNN(prior="laplace")
    with pytest.raises(TypeError, match="net must be a Network"):
        BNN(net=torch.nn.Linear(2, 1))
    with pytest.raises(ValueError, match="inference must be one of"):
        BNN(inference="magic")
    with pytest.raises(ValueError, match="noise must be a positive"):
        GaussianLikelihood(-1.0)
    with pytest.raises(TypeError, match="unexpected option"):
        BNN(inference="map").fit(torch.zeros(5, 1), torch.zeros(5), progress_bar=False, foo=1)
