"""Deep ensembles: the vectorised fit against member-by-member fits and least squares."""

import pytest
import torch

from bayesfn.bayesnn import BNN, MLP, DeepEnsemble, GaussianLikelihood
from bayesfn.posterior import SamplePosterior


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 2, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.sin(x[:, :1]) * x[:, 1:] + 0.1 * torch.randn(40, 1, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("use_prior", [True, False])
def test_vectorised_members_equal_sequential_fits(use_prior):
    """Each member equals a separate Adam fit (written out here, one network at a time)
    from the same starting point."""
    x, y = _data()
    inference = DeepEnsemble(num_members=3, max_steps=150, lr=0.02, use_prior=use_prior)
    model = BNN(
        MLP((8,)),
        likelihood=GaussianLikelihood(0.05),
        inference=inference,
        standardize=False,
        dtype=torch.float64,
    ).fit(x, y, seed=7, progress_bar=False)
    target = model.target_
    for i in range(3):
        start = target.init_params(1, generator=torch.Generator().manual_seed(7 + i))
        params = {n: v[0].clone().requires_grad_(True) for n, v in start.items()}
        opt = torch.optim.Adam(params.values(), lr=0.02)
        module = target.module
        for _ in range(150):
            opt.zero_grad()
            h = torch.tanh(x @ params["layers.0.weight"].T / 2**0.5 + params["layers.0.bias"])
            f = h @ params["layers.1.weight"].T / 8**0.5 + params["layers.1.bias"]
            loss = 0.5 * ((y - f) ** 2 / 0.05).sum()
            if use_prior:
                loss = loss + 0.5 * sum((p**2).sum() for p in params.values())
            (loss / 40).backward()
            opt.step()
        for name, value in params.items():
            torch.testing.assert_close(
                model.state_["params"][name][i], value.detach(), atol=1e-9, rtol=1e-7
            )
        assert module is target.module


def test_linear_members_converge_to_least_squares_without_the_prior():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-1.0], [2.0]], dtype=torch.float64) - 0.5
    y = y + 0.1 * torch.randn(30, 1, generator=g, dtype=torch.float64)
    model = BNN(
        MLP(hidden=()),
        inference=DeepEnsemble(num_members=4, max_steps=3000, lr=0.05, use_prior=False),
        standardize=False,
        dtype=torch.float64,
    ).fit(x, y, seed=0, progress_bar=False)
    design = torch.cat([x / 3**0.5, torch.ones(30, 1, dtype=torch.float64)], 1)
    lstsq = torch.linalg.lstsq(design, y).solution[:, 0]
    w = model.state_["params"]["layers.0.weight"][:, 0]
    b = model.state_["params"]["layers.0.bias"]
    # Adam at a constant rate ends within about 1e-3 of the optimum; the ridge (MAP)
    # solution is about 1e-2 away from least squares here
    torch.testing.assert_close(torch.cat([w, b], 1), lstsq.expand(4, 4), atol=2e-3, rtol=0)
    post = model.posterior(x[:5])
    assert isinstance(post, SamplePosterior) and post.samples.shape[0] == 4


def test_members_differ_and_the_predictive_averages_them():
    x, y = _data()
    model = BNN(MLP((16,)), inference=DeepEnsemble(num_members=5, max_steps=100)).fit(
        x, y, seed=0, progress_bar=False
    )
    w = model.state_["params"]["layers.0.weight"]
    assert w.shape == (5, 16, 2)
    assert (w[1:] - w[:1]).abs().amax() > 0.1
    post = model.posterior(x)
    draws = model.weight_draws()
    flat = {k: v[0] for k, v in draws.items()}
    f = model.target_.forward(flat, model._scale_x(x.float())) * model.y_std_ + model.y_mean_
    torch.testing.assert_close(post.mean, f.mean(0))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="num_members must be"):
        DeepEnsemble(num_members=0)
    with pytest.raises(ValueError, match="init must be"):
        DeepEnsemble(init="zeros")
    assert isinstance(BNN(inference="ensemble").inference, DeepEnsemble)
