"""The per-layer planar-flow prior: its log density against the change-of-variables
formula (numerical Jacobian) and numerical integration, and its gradients."""

import pytest
import torch

from bayesfn.bayesnn import MLP, FlowPrior


def _prior(shapes, **kw):
    # large flow parameters: far from the identity, so the flows matter
    prior = FlowPrior(num_flows=4, std=0.8, init_scale=0.8, seed=3, **kw).bind(shapes)
    return prior.double()


def test_log_density_equals_change_of_variables_with_numerical_jacobian():
    prior = _prior({"l.weight": (2, 1), "l.bias": (2,)})
    assert prior.groups == {"l": ["l.bias", "l.weight"]}
    g = torch.Generator().manual_seed(0)
    base = torch.distributions.Normal(
        torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    )
    for _ in range(5):
        z0 = 0.8 * torch.randn(4, generator=g, dtype=torch.float64)

        def flow(z):
            return prior.forward_flow("l", z.unsqueeze(0)).squeeze(0)

        with torch.no_grad():
            v = flow(z0)
        jac = torch.autograd.functional.jacobian(flow, z0)
        expected = base.log_prob(z0).sum() - torch.linalg.slogdet(jac)[1]
        params = {"l.bias": v[:2].unsqueeze(0), "l.weight": v[2:].reshape(1, 2, 1)}
        got = prior.log_prob(params)
        # far-from-identity flows make the inversion ill-conditioned: ~1e-9 relative
        torch.testing.assert_close(got, expected.reshape(1), rtol=1e-7, atol=1e-7)
        # the inverse recovers the base point exactly
        z_back, _ = prior.inverse_flow("l", v.unsqueeze(0))
        torch.testing.assert_close(z_back[0], z0, rtol=1e-7, atol=1e-7)


def test_density_integrates_to_one_in_two_dimensions():
    prior = _prior({"l.weight": (1, 1), "l.bias": (1,)})

    # on a grid: vectorised evaluation, then the trapezoidal rule in both directions
    grid = torch.linspace(-9, 9, 301, dtype=torch.float64)
    ww, bb = torch.meshgrid(grid, grid, indexing="ij")
    params = {"l.bias": bb.reshape(-1, 1), "l.weight": ww.reshape(-1, 1, 1)}
    with torch.no_grad():
        dens = prior.log_prob(params).exp().reshape(301, 301)
    total = torch.trapezoid(torch.trapezoid(dens, grid), grid).item()
    assert total == pytest.approx(1.0, abs=1e-4)  # trapezoid error at spacing 0.06


def test_one_dimensional_density_integrates_to_one():
    prior = _prior({"b": (1,)})
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)
    with torch.no_grad():
        dens = prior.log_prob({"b": grid.reshape(-1, 1)}).exp()
    assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=1e-8)


def test_samples_follow_the_density():
    # the mean of log p over draws equals minus the entropy; compare with a histogram
    prior = _prior({"b": (1,)})
    draws = prior.sample(200000, generator=torch.Generator().manual_seed(1))["b"][:, 0]
    edges = torch.linspace(-4, 4, 41, dtype=torch.float64)
    hist = torch.histogram(draws, edges).hist / draws.numel()
    grid = torch.linspace(-4, 4, 4001, dtype=torch.float64)
    with torch.no_grad():
        dens = prior.log_prob({"b": grid.reshape(-1, 1)}).exp()
    probs = torch.stack(
        [
            torch.trapezoid(dens[i * 100 : (i + 1) * 100 + 1], grid[i * 100 : (i + 1) * 100 + 1])
            for i in range(40)
        ]
    )
    # multinomial standard errors, 5 sigma
    se = (probs * (1 - probs) / draws.numel()).sqrt()
    assert ((hist - probs).abs() <= 5 * se + 1e-4).all()


def test_log_density_gradients_match_finite_differences():
    prior = _prior({"l.weight": (2, 1), "l.bias": (2,)})
    v = prior.sample(3, generator=torch.Generator().manual_seed(2))
    w = v["l.weight"].requires_grad_(True)
    b = v["l.bias"].requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda w, b: prior.log_prob({"l.weight": w, "l.bias": b}), (w, b)
    )
    # gradients to the flow's own parameters, by central differences (implicit
    # gradients through the inverse's root)
    params = {k: x.detach() for k, x in v.items()}
    prior.zero_grad()
    prior.log_prob(params).sum().backward()
    for p in (prior.flow_u["l"], prior.flow_w["l"], prior.flow_c["l"], prior.log_var["l"]):
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in (0, flat.numel() - 1):
            old, h = flat[i].item(), 1e-6
            with torch.no_grad():
                flat[i] = old + h
                up = prior.log_prob(params).sum().item()
                flat[i] = old - h
                down = prior.log_prob(params).sum().item()
                flat[i] = old
            assert grad[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-6)


def test_flow_prior_covers_a_network_layer_by_layer_and_rsamples_pathwise():
    net = MLP(hidden=(3,)).build(2, 1)
    prior = FlowPrior(num_flows=2).bind(net)
    assert prior.groups == {
        "layers.0": ["layers.0.bias", "layers.0.weight"],
        "layers.1": ["layers.1.bias", "layers.1.weight"],
    }
    draws = prior.rsample(4, generator=torch.Generator().manual_seed(0))
    assert {k: tuple(v.shape) for k, v in draws.items()} == {
        "layers.0.weight": (4, 3, 2),
        "layers.0.bias": (4, 3),
        "layers.1.weight": (4, 1, 3),
        "layers.1.bias": (4, 1),
    }
    sum(v.square().sum() for v in draws.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in prior.parameters())
    assert prior.log_prob({k: v.detach() for k, v in draws.items()}).shape == (4,)


def test_flow_prior_bad_settings_and_unbound_use():
    with pytest.raises(ValueError, match="num_flows"):
        FlowPrior(num_flows=-1)
    with pytest.raises(ValueError, match="std"):
        FlowPrior(std=0.0)
    with pytest.raises(ValueError, match="not bound"):
        FlowPrior().rsample(2)
    prior = FlowPrior().bind({"w": (2,)})
    with pytest.raises(ValueError, match="does not cover"):
        prior.log_prob({"w": torch.zeros(1, 2), "v": torch.zeros(1, 1)})
