"""The model contract for process learners (DESIGN §3, §4, §9): models fitted to a
distribution over functions, asked for posteriors with and without ``context=``.

A process learner adds a :class:`ProcessCase` to ``PROCESS_CASES``: a factory for the
unfitted model, training data (anything its ``fit(functions)`` takes) and fit keywords
that keep it fast. The checks: shapes of the posterior with and without context and with
batched inputs, agreement of fresh draws with the posterior mean within Monte Carlo
standard errors, ``log_prob`` shapes and finiteness, a save/load round trip that
reproduces draws and densities, and clear errors for bad inputs.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from bayesfn import Model, NotFittedError, Posterior
from bayesfn.data import FunctionSampler, sample_functions
from bayesfn.processes import NeuralDiffusionProcess, OperatorFlowMatching


@dataclass
class ProcessCase:
    name: str
    factory: Any
    data: Any  # () -> what fit(functions) takes
    fit_kwargs: dict
    posterior_kwargs: dict = field(default_factory=dict)
    log_prob_kwargs: dict = field(default_factory=dict)


PROCESS_CASES = [
    ProcessCase(
        "ndp_tiny",
        lambda: NeuralDiffusionProcess(
            hidden=8, num_layers=1, num_heads=2, num_steps=8, num_inner_steps=1
        ),
        lambda: FunctionSampler("se", 8, (6, 9), lengthscale=0.5, noise_std=0.05),
        {"max_steps": 20, "progress_bar": False, "seed": 0},
        {"num_samples": 64},
        {"ode_steps": 4},
    ),
    # OFM with its point-set operator takes any points; the grid-only Fourier operator
    # has its own contract file (test_process_contract_ofm.py)
    ProcessCase(
        "ofm_attention_tiny",
        lambda: OperatorFlowMatching(
            operator="attention",
            operator_options={"width": 16, "heads": 2, "depth": 1},
            ode_method="rk4",
            ode_steps=4,
        ),
        lambda: sample_functions(
            "se",
            64,
            10,
            x=torch.linspace(-2, 2, 10)[:, None],
            lengthscale=0.5,
            noise_std=0.05,
            seed=0,
        ),
        {"max_steps": 20, "batch_size": 16, "progress_bar": False, "seed": 0},
        {"num_samples": 64, "num_chains": 8, "burn_in": 10, "noise": 0.05},
        {"rtol": 1e-3, "atol": 1e-3},
    ),
]


@pytest.fixture(scope="module", params=PROCESS_CASES, ids=lambda c: c.name)
def fitted(request):
    case = request.param
    torch.manual_seed(0)
    return case, case.factory().fit(case.data(), **case.fit_kwargs)


def _points(n, seed, d=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g) * 4 - 2


def test_is_a_model_and_fit_returns_self(fitted):
    case, model = fitted
    assert isinstance(model, Model) and model.is_fitted
    assert len(model.fit_result_.losses) == case.fit_kwargs["max_steps"]
    assert all(math.isfinite(v) for v in model.fit_result_.losses)


@pytest.mark.parametrize("with_context", [False, True])
def test_posterior_shapes(fitted, with_context):
    case, model = fitted
    x = _points(7, 1)
    context = (_points(3, 2), torch.randn(3, 1)) if with_context else None
    post = model.posterior(x, context=context, **case.posterior_kwargs)
    assert isinstance(post, Posterior)
    assert post.event_shape == (7, 1) and post.batch_shape == ()
    assert post.mean.shape == post.variance.shape == (7, 1)
    assert post.sample((5,)).shape == (5, 7, 1)
    low, high = post.interval(0.9)
    assert low.shape == (7, 1) and bool((low <= high).all())
    # batched inputs, with a batched context
    xb = torch.stack([_points(4, 3), _points(4, 4)])
    cb = (
        (torch.stack([_points(2, 5), _points(2, 6)]), torch.randn(2, 2, 1))
        if with_context
        else None
    )
    pb = model.posterior(xb, context=cb, **case.posterior_kwargs)
    assert pb.batch_shape == (2,) and pb.event_shape == (4, 1)
    assert pb.sample((3,)).shape == (3, 2, 4, 1)


def test_context_accepts_flat_values_and_numpy(fitted):
    case, model = fitted
    x = _points(5, 1)
    xc, yc = _points(3, 2), torch.randn(3)
    a = model.posterior(x, context=(xc, yc), **case.posterior_kwargs)
    b = model.posterior(
        x.numpy(), context=(xc.numpy(), yc[:, None].numpy()), **case.posterior_kwargs
    )
    torch.testing.assert_close(a.mean, b.mean)


def test_fresh_draws_agree_with_the_mean_within_monte_carlo_error(fitted):
    case, model = fitted
    x = _points(6, 7)
    post = model.posterior(x, context=(_points(2, 8), torch.randn(2, 1)), **case.posterior_kwargs)
    fresh = post.sample((400,), generator=torch.Generator().manual_seed(1))
    cached = post.samples
    se = torch.sqrt(fresh.var(0) / fresh.shape[0] + cached.var(0) / cached.shape[0])
    z = ((fresh.mean(0) - post.mean) / se).abs()
    assert z.max() < 4.5, z
    torch.testing.assert_close(
        post.variance, cached.var(0, correction=0)
    )  # the draws' own distribution


def test_log_prob_shapes_and_finiteness(fitted):
    case, model = fitted
    x, y = _points(5, 9), torch.randn(5, 1)
    lp = model.log_prob(x, y, **case.log_prob_kwargs)
    assert lp.shape == () and torch.isfinite(lp)
    ctx = (_points(3, 10), torch.randn(3, 1))
    lpc = model.log_prob(x, y, context=ctx, **case.log_prob_kwargs)
    assert lpc.shape == () and torch.isfinite(lpc)
    xb, yb = torch.stack([x, x + 0.1]), torch.randn(2, 5, 1)
    assert model.log_prob(xb, yb, **case.log_prob_kwargs).shape == (2,)


def test_save_load_round_trip(fitted, tmp_path):
    case, model = fitted
    model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m")
    assert loaded.get_config() == model.get_config()
    x = _points(6, 11)
    ctx = (_points(2, 12), torch.randn(2, 1))
    a = model.posterior(x, context=ctx, **case.posterior_kwargs)
    b = loaded.posterior(x, context=ctx, **case.posterior_kwargs)
    torch.testing.assert_close(a.samples, b.samples)
    y = torch.randn(6, 1)
    torch.testing.assert_close(
        model.log_prob(x, y, context=ctx, **case.log_prob_kwargs),
        loaded.log_prob(x, y, context=ctx, **case.log_prob_kwargs),
    )
    assert loaded.fit_result_.losses == model.fit_result_.losses


def test_unfitted_model_refuses(fitted, tmp_path):
    case, _ = fitted
    model = case.factory()
    with pytest.raises(NotFittedError):
        model.posterior(_points(3, 0))
    with pytest.raises(NotFittedError):
        model.save(tmp_path / "x")


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: ((torch.rand(4, 2),), {}), ValueError, "feature"),
        (lambda: ((torch.rand(4),), {}), ValueError, "shape"),
        (lambda: ((torch.tensor([[0.0], [math.nan]]),), {}), ValueError, "NaN"),
        (lambda: ((torch.rand(4, 1),), {"context": torch.rand(3, 1)}), TypeError, "context"),
        (
            lambda: ((torch.rand(4, 1),), {"context": (torch.rand(3, 1), torch.rand(2, 1))}),
            ValueError,
            "rows",
        ),
        (
            lambda: ((torch.rand(4, 1),), {"context": (torch.rand(3, 2), torch.rand(3, 1))}),
            ValueError,
            "feature",
        ),
        (
            lambda: ((torch.rand(2, 4, 1),), {"context": (torch.rand(3, 1), torch.rand(3, 1))}),
            ValueError,
            "context",
        ),
        (lambda: (("abc",), {}), TypeError, "x"),
    ],
)
def test_bad_posterior_inputs(fitted, make, error, match):
    case, model = fitted
    args, kwargs = make()
    with pytest.raises(error, match=match):
        model.posterior(*args, **kwargs, **case.posterior_kwargs)


def test_bad_log_prob_inputs(fitted):
    case, model = fitted
    with pytest.raises(ValueError, match="rows"):
        model.log_prob(torch.rand(4, 1), torch.rand(3, 1), **case.log_prob_kwargs)
    with pytest.raises(ValueError, match="NaN"):
        model.log_prob(torch.rand(2, 1), torch.tensor([0.0, math.inf]), **case.log_prob_kwargs)


def test_bad_fit_data(fitted):
    case, _ = fitted
    with pytest.raises(TypeError, match="functions"):
        case.factory().fit("not data", max_steps=1, progress_bar=False)
    with pytest.raises(ValueError, match="NaN"):
        case.factory().fit(
            [(np.zeros((3, 1)), np.array([0.0, np.nan, 1.0]))], max_steps=1, progress_bar=False
        )
