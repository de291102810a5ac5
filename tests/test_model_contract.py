"""The model contract (DESIGN §4), run over every model in the package.

A method issue adds its model to ``MODEL_CASES``: a factory for the unfitted model,
the fit keywords that keep it fast, and the kind of data it takes. Monte Carlo
posteriors (BNNs) take part with seeded fits; comparisons between two posterior calls
use means and variances, and the joint covariance where the posterior has one.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from bayesfn import Model, NotFittedError, Posterior
from bayesfn.bayesnn import BNN, MAP, MLP, SGHMC, ScaleMixtureNNGP
from bayesfn.processes import GaussianProcess


@dataclass
class Case:
    name: str
    factory: Any
    fit_kwargs: dict
    num_outputs: int = 1
    steps: int | None = None  # recorded loss values, when fit_kwargs has no max_steps

    @property
    def num_steps(self) -> int:
        return self.fit_kwargs.get("max_steps", self.steps)


MODEL_CASES = [
    Case("gp_rbf", lambda: GaussianProcess("rbf"), {"max_steps": 20, "progress_bar": False}),
    Case(
        "gp_matern52_plus_periodic",
        lambda: GaussianProcess("matern52+periodic", mean="zero"),
        {"max_steps": 10, "progress_bar": False},
    ),
    Case(
        "gp_two_outputs_fixed_noise",
        lambda: GaussianProcess("rbf*linear", noise=0.05),
        {"max_steps": 10, "progress_bar": False},
        num_outputs=2,
    ),
    Case(
        "nngp_student_t",
        lambda: ScaleMixtureNNGP(depth=2, prior="inverse_gamma"),
        {"max_steps": 10, "progress_bar": False},
    ),
    Case(
        "nngp_point_mass_two_outputs",
        lambda: ScaleMixtureNNGP(depth=1, activation="erf", prior="point_mass"),
        {"max_steps": 5, "progress_bar": False},
        num_outputs=2,
    ),
    Case(
        "bnn_map_two_outputs",
        lambda: BNN(MLP((16,)), inference=MAP(max_steps=40)),
        {"progress_bar": False, "seed": 0},
        num_outputs=2,
        steps=40,
    ),
    Case(
        "bnn_sghmc",
        lambda: BNN(
            MLP((16,)),
            inference=SGHMC(num_burn_in=30, num_samples=6, thin=5, num_discard=1, num_chains=2),
        ),
        {"progress_bar": False, "seed": 0},
        steps=30 + 6 * 5,  # burn-in, then num_samples x thin
    ),
]


def _data(num_outputs, n=30, d=2):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.cat([torch.sin(x.sum(-1, keepdim=True) * (k + 1)) for k in range(num_outputs)], -1)
    return x, y + 0.1 * torch.randn(y.shape, generator=g, dtype=torch.float64)


@pytest.fixture(params=MODEL_CASES, ids=lambda c: c.name)
def fitted(request):
    case = request.param
    x, y = _data(case.num_outputs)
    return case, case.factory().fit(x, y, **case.fit_kwargs), x, y


def test_fit_returns_self_and_records_result(fitted):
    case, model, x, y = fitted
    assert isinstance(model, Model) and model.is_fitted
    assert len(model.fit_result_.losses) == case.num_steps


def test_posterior_shapes(fitted):
    case, model, x, y = fitted
    m = case.num_outputs
    post = model.posterior(x[:7])
    assert isinstance(post, Posterior)
    assert post.event_shape == (7, m) and post.batch_shape == ()
    assert post.mean.shape == (7, m) and post.variance.shape == (7, m)
    batched = model.posterior(torch.rand(3, 5, 2, dtype=torch.float64))
    assert batched.batch_shape == (3,) and batched.event_shape == (5, m)
    assert batched.sample((4,)).shape == (4, 3, 5, m)


def test_batched_posterior_equals_separate_calls(fitted):
    _, model, _, _ = fitted
    xb = torch.rand(3, 5, 2, dtype=torch.float64)
    batched = model.posterior(xb)
    for i in range(3):
        single = model.posterior(xb[i])
        torch.testing.assert_close(batched.mean[i], single.mean)
        torch.testing.assert_close(batched.variance[i], single.variance)
        if hasattr(single, "covariance_matrix"):
            torch.testing.assert_close(batched.covariance_matrix[i], single.covariance_matrix)


def test_observation_noise_widens_the_predictive(fitted):
    _, model, x, _ = fitted
    latent, noisy = model.posterior(x[:5]), model.posterior(x[:5], observation_noise=True)
    torch.testing.assert_close(latent.mean, noisy.mean)
    assert (noisy.variance > latent.variance).all()


def test_numpy_inputs_are_accepted(fitted):
    _, model, x, _ = fitted
    torch.testing.assert_close(model.posterior(x[:4].numpy()).mean, model.posterior(x[:4]).mean)


def test_save_load_round_trip(fitted, tmp_path):
    _, model, x, _ = fitted
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "weights.safetensors",
    ]
    loaded = type(model).load(tmp_path / "m")
    also = Model.load(tmp_path / "m")  # the base class dispatches on the saved class name
    assert type(also) is type(model)
    a, b = model.posterior(x[:6]), loaded.posterior(x[:6])
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    if hasattr(a, "covariance_matrix"):
        assert torch.equal(a.covariance_matrix, b.covariance_matrix)
    assert loaded.get_config() == model.get_config()
    assert loaded.fit_result_.losses == model.fit_result_.losses


def test_config_is_json_and_rebuilds_the_model(fitted):
    _, model, _, _ = fitted
    config = json.loads(json.dumps(model.get_config()))
    assert type(model)(**config).get_config() == config


def test_loading_never_unpickles(fitted, tmp_path, monkeypatch):
    _, model, x, _ = fitted
    model.save(tmp_path / "m")
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("load() must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    type(model).load(tmp_path / "m").posterior(x[:2])


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: c.name)
def test_bad_inputs_raise_clear_errors(case, tmp_path):
    x, y = _data(case.num_outputs)
    kw = case.fit_kwargs
    model = case.factory()
    with pytest.raises(NotFittedError, match="not fitted"):
        model.posterior(x)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.save(tmp_path / "m")
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        model.fit(x[:, 0], y, **kw)
    with pytest.raises(ValueError, match="y has 29 rows but x has 30"):
        model.fit(x, y[:-1], **kw)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x contains 1 NaN or inf"):
        model.fit(bad, y, **kw)
    bad_y = y.clone()
    bad_y[0, 0] = float("inf")
    with pytest.raises(ValueError, match="y contains 1 NaN or inf"):
        model.fit(x, bad_y, **kw)
    with pytest.raises(ValueError, match="x is empty"):
        model.fit(x[:0], y[:0], **kw)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor or numpy array"):
        model.fit("data", y, **kw)
    model.fit(x, y, **kw)
    with pytest.raises(ValueError, match="2 feature"):
        model.posterior(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\) or \(b, n, d\)"):
        model.posterior(torch.zeros(2, 2, 4, 2))
    with pytest.raises(ValueError, match="x contains"):
        model.posterior(np.full((2, 2), np.inf))
