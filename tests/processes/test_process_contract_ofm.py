"""The process-learner contract (DESIGN §3, §4, §9) for OperatorFlowMatching's grid
(Fourier) operator: shapes with and without context, sample/mean agreement, save/load,
bad inputs, in 1-D and on a 2-D two-channel grid.

The shared contract (test_process_contract.py) runs OFM with its point-set (attention)
operator; its generic checks query random points, which a grid operator cannot take, so
the grid cases live here, with the OFM-specific checks. Each case is a tiny fitted model."""

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from bayesfn import NotFittedError, Posterior, SamplePosterior
from bayesfn.data import sample_functions
from bayesfn.processes import OperatorFlowMatching

F64 = torch.float64


@dataclass
class Case:
    name: str
    settings: dict
    x: Any  # the training points (n, d)
    channels: int


def _grid2d(n1, n2):
    a, b = torch.linspace(-1, 1, n1, dtype=F64), torch.linspace(0, 2, n2, dtype=F64)
    return torch.stack(torch.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)


CASES = [
    Case(
        "fno_1d",
        {"operator_options": {"width": 8, "modes": 4, "depth": 2}},
        torch.linspace(-2, 2, 16, dtype=F64)[:, None],
        1,
    ),
    Case(
        "fno_2d_two_channels",
        {"operator_options": {"width": 8, "modes": 3, "depth": 2}},
        _grid2d(6, 5),
        2,
    ),
]


def _functions(x, channels, b=64):
    g = torch.Generator().manual_seed(0)
    freq = torch.rand(b, 1, channels, generator=g) * 3
    return torch.sin(
        freq * x.sum(-1)[None, :, None].float() + torch.rand(b, 1, channels, generator=g)
    )


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def fitted(request):
    case = request.param
    model = OperatorFlowMatching(ode_method="rk4", ode_steps=4, **case.settings)
    model.fit(
        case.x, _functions(case.x, case.channels), max_steps=8, batch_size=16, progress_bar=False
    )
    return case, model


def test_fit_returns_self_and_records_the_losses(fitted):
    case, model = fitted
    assert model.is_fitted and len(model.fit_result_.losses) == 8
    assert all(math.isfinite(v) for v in model.fit_result_.losses)


def test_prior_posterior_shapes(fitted):
    case, model = fitted
    n, c = case.x.shape[0], case.channels
    post = model.posterior(case.x, num_samples=20)
    assert isinstance(post, SamplePosterior) and isinstance(post, Posterior)
    assert post.event_shape == (n, c) and post.batch_shape == ()
    assert post.mean.shape == post.variance.shape == post.stddev.shape == (n, c)
    assert post.sample((3,)).shape == (3, n, c)
    lo, hi = post.interval(0.9)
    assert lo.shape == (n, c) and (lo <= hi).all()
    assert model.sample(case.x, 5).shape == (5, n, c)


def test_context_posterior_shapes(fitted):
    case, model = fitted
    n, c = case.x.shape[0], case.channels
    x_c, y_c = case.x[[1, 4]], torch.zeros(2, c, dtype=F64)
    post = model.posterior(
        case.x, context=(x_c, y_c), noise=0.1, num_samples=24, num_chains=4, burn_in=10
    )
    assert post.event_shape == (n, c)
    assert post.samples.shape == (24, n, c)
    assert torch.isfinite(post.mean).all()
    assert model.sampler_diagnostics_["chains"].shape == (4, 6, n, c)
    noisy = model.posterior(
        case.x,
        context=(x_c, y_c),
        noise=0.1,
        num_samples=24,
        num_chains=4,
        burn_in=10,
        observation_noise=True,
    )
    assert noisy.event_shape == (n, c)


def test_sample_and_mean_agree_within_monte_carlo_error(fitted):
    case, model = fitted
    post = model.posterior(case.x, num_samples=300)
    fresh = post.sample((300,), generator=torch.Generator().manual_seed(5))
    se = (2 * post.variance / 300).sqrt()
    z = (fresh.mean(0) - post.mean).abs() / se.clamp_min(1e-6)
    assert z.max() < 5, z.max()
    # the draws are random functions, not copies
    assert post.variance.mean() > 1e-3


def test_save_load_round_trip(fitted, tmp_path):
    case, model = fitted
    model.save(tmp_path / "ofm")
    loaded = OperatorFlowMatching.load(tmp_path / "ofm")
    assert loaded.get_config() == model.get_config()
    a = model.sample(case.x, 4, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(case.x, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    y = a[:2].double()
    torch.testing.assert_close(
        model.log_prob(case.x, y, rtol=1e-3, atol=1e-3),
        loaded.log_prob(case.x, y, rtol=1e-3, atol=1e-3),
    )


def test_log_prob_shapes(fitted):
    case, model = fitted
    y = model.sample(case.x, 3, generator=torch.Generator().manual_seed(2)).double()
    lp = model.log_prob(case.x, y, rtol=1e-3, atol=1e-3)
    assert lp.shape == (3,) and lp.dtype == F64 and torch.isfinite(lp).all()
    single = model.log_prob(case.x, y[0], rtol=1e-3, atol=1e-3)
    assert single.shape == ()
    # a batch shares the adaptive solver's steps: agreement to the solver tolerance
    torch.testing.assert_close(single, lp[0], rtol=0, atol=0.05)
    hutch = model.log_prob(case.x, y[:1], trace="hutchinson", num_probes=2, rtol=1e-3, atol=1e-3)
    assert hutch.shape == (1,) and torch.isfinite(hutch).all()


def test_points_in_any_order(fitted):
    """Permuting the query points permutes the draws (the grid is found by sorting)."""
    case, model = fitted
    perm = torch.randperm(case.x.shape[0], generator=torch.Generator().manual_seed(0))
    a = model.sample(case.x, 3, generator=torch.Generator().manual_seed(4))
    b = model.sample(case.x[perm], 3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(b, a[:, perm])


def test_attention_density_ignores_the_order_of_the_points():
    x = torch.rand(12, 1, generator=torch.Generator().manual_seed(3), dtype=F64)
    model = OperatorFlowMatching(
        operator="attention",
        operator_options={"width": 16, "heads": 2, "depth": 1},
        ode_method="rk4",
        ode_steps=4,
    ).fit(x, _functions(x, 1), max_steps=8, batch_size=16, progress_bar=False)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    a = model.sample(x, 3, generator=torch.Generator().manual_seed(4)).double()
    # the reference is drawn through a Cholesky factor of the permuted points, so
    # compare distributions through the density
    lp = model.log_prob(x, a, rtol=1e-3, atol=1e-3)
    lp_perm = model.log_prob(x[perm], a[:, perm], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(lp, lp_perm, rtol=1e-5, atol=1e-5)


def test_fit_accepts_a_function_batch():
    x = torch.linspace(-2, 2, 12)[:, None]
    fns = sample_functions("se", 32, 12, x=x, seed=0)
    model = OperatorFlowMatching(operator_options={"width": 8, "modes": 3, "depth": 1})
    model.fit(fns, max_steps=2, batch_size=8, progress_bar=False)
    assert model.channels_ == 1 and model.train_x_.shape == (12, 1)


def test_bad_inputs_raise_clear_errors(fitted):
    case, model = fitted
    n, d, c = case.x.shape[0], case.x.shape[1], case.channels
    with pytest.raises(NotFittedError):
        OperatorFlowMatching().posterior(case.x)
    with pytest.raises(ValueError, match="feature"):
        model.posterior(torch.rand(5, d + 1))
    with pytest.raises(ValueError, match="NaN"):
        model.posterior(torch.full((n, d), math.nan))
    with pytest.raises(ValueError, match="shape"):
        model.posterior(torch.rand(2, 3, 4, d))
    with pytest.raises(ValueError, match="noise"):
        model.posterior(case.x, context=(case.x[:2], torch.zeros(2, c)), noise=-1.0)
    with pytest.raises(ValueError, match="y_c"):
        model.posterior(case.x, context=(case.x[:2], torch.zeros(3, c)))
    with pytest.raises(ValueError, match="sampler"):
        model.posterior(case.x, context=(case.x[:2], torch.zeros(2, c)), sampler="hmc")
    with pytest.raises(TypeError, match="precondition"):
        model.posterior(case.x, context=(case.x[:2], torch.zeros(2, c)), precondition="yes")
    with pytest.raises(ValueError, match="y must have shape"):
        model.log_prob(case.x, torch.zeros(2, n + 1, c))
    with pytest.raises(ValueError, match="num"):
        model.sample(case.x, 0)


def test_fit_bad_inputs():
    x = torch.linspace(0, 1, 10)[:, None]
    y = torch.randn(8, 10, 1)
    model = OperatorFlowMatching()
    with pytest.raises(ValueError, match="NaN"):
        model.fit(x, torch.full((8, 10, 1), math.nan), max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(x, y[:1], max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="x must have shape"):
        model.fit(torch.rand(9, 1), y, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="same points"):
        model.fit(torch.rand(8, 10, 1), y, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="regular grid"):
        model.fit(torch.rand(10, 1), y, max_steps=1, progress_bar=False)
    with pytest.raises(TypeError, match="FunctionBatch"):
        model.fit(x, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=1, max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="operator must be"):
        OperatorFlowMatching(operator="gno")
    with pytest.raises(ValueError, match="coupling"):
        OperatorFlowMatching(coupling="sinkhorn")
    with pytest.raises(ValueError, match="fft"):
        OperatorFlowMatching(operator="attention", reference_sampler="fft")
    fitted = OperatorFlowMatching(operator_options={"width": 8, "modes": 3, "depth": 1}).fit(
        x, y, max_steps=1, batch_size=4, progress_bar=False
    )
    with pytest.raises(ValueError, match="regular grid"):
        fitted.sample(torch.rand(7, 1), 2)
    with pytest.raises(ValueError, match="regular grid"):
        fitted.sample(torch.linspace(0, 0.5, 7)[:, None], 2)  # does not span the domain
    with pytest.raises(ValueError, match="inside the training domain"):
        fitted.posterior(x, context=(torch.tensor([[1.5]]), torch.zeros(1)))
