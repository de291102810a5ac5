"""The model contract (DESIGN §4) for classifiers: ``fit(x, labels)`` with integer labels.

Same promises as ``test_model_contract.py`` with two differences that follow DESIGN §3:
``posterior(x)`` is over the latent outputs (event ``(n, C)``) and
``posterior(x, observation_noise=True)`` is the ``CategoricalPosterior`` over labels.
"""

import json
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from bayesfn import CategoricalPosterior, Model, NotFittedError, Posterior
from bayesfn.bayesnn import OneHotNNGPClassifier, SVTPClassifier

NUM_CLASSES = 3


@dataclass
class Case:
    name: str
    factory: Any
    fit_kwargs: dict


CLASSIFIER_CASES = [
    Case(
        "one_hot_student_t",
        lambda: OneHotNNGPClassifier(nngp={"depth": 1}, num_samples=200),
        {"max_steps": 5, "progress_bar": False},
    ),
    Case(
        "svtp",
        lambda: SVTPClassifier(num_inducing=8),
        {"max_steps": 5, "batch_size": 15, "progress_bar": False},
    ),
    Case(
        "svgp",
        lambda: SVTPClassifier(num_inducing=8, scale_prior=None),
        {"max_steps": 5, "batch_size": 15, "progress_bar": False},
    ),
]


def _data(n=30, d=2):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) * 4 - 2
    # three angular sectors: a label every class appears in
    angle = torch.atan2(x[:, 1], x[:, 0])
    labels = ((angle + torch.pi) / (2 * torch.pi) * NUM_CLASSES).long().clamp(max=2)
    return x, labels


@pytest.fixture(params=CLASSIFIER_CASES, ids=lambda c: c.name)
def fitted(request):
    case = request.param
    x, labels = _data()
    return case, case.factory().fit(x, labels, **case.fit_kwargs), x, labels


def test_fit_returns_self(fitted):
    _, model, _, _ = fitted
    assert isinstance(model, Model) and model.is_fitted


def test_latent_and_label_posteriors(fitted):
    _, model, x, _ = fitted
    latent = model.posterior(x[:7])
    assert isinstance(latent, Posterior) and not isinstance(latent, CategoricalPosterior)
    assert latent.event_shape == (7, NUM_CLASSES)
    assert latent.mean.shape == (7, NUM_CLASSES)
    labels = model.posterior(x[:7], observation_noise=True)
    assert isinstance(labels, CategoricalPosterior)
    assert labels.event_shape == (7,)
    assert labels.probs.shape == (7, NUM_CLASSES)
    torch.testing.assert_close(labels.probs.sum(-1), torch.ones(7, dtype=labels.probs.dtype))
    assert (labels.probs > 0).all()


def test_save_load_round_trip(fitted, tmp_path):
    _, model, x, _ = fitted
    model.save(tmp_path / "m")
    loaded = Model.load(tmp_path / "m")
    assert type(loaded) is type(model)
    a, b = model.posterior(x[:6]), loaded.posterior(x[:6])
    assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
    assert loaded.get_config() == model.get_config()


def test_config_is_json_and_rebuilds_the_model(fitted):
    _, model, _, _ = fitted
    config = json.loads(json.dumps(model.get_config()))
    assert type(model)(**config).get_config() == config


@pytest.mark.parametrize("case", CLASSIFIER_CASES, ids=lambda c: c.name)
def test_bad_labels_raise_clear_errors(case):
    x, labels = _data()
    model = case.factory()
    with pytest.raises(NotFittedError, match="not fitted"):
        model.posterior(x)
    with pytest.raises(TypeError, match="labels must hold integer class indices"):
        model.fit(x, labels.double(), **case.fit_kwargs)
    with pytest.raises(ValueError, match="labels"):
        model.fit(x, labels[:-1], **case.fit_kwargs)
    bad = labels.clone()
    bad[0] = -1
    with pytest.raises(ValueError, match="labels"):
        model.fit(x, bad, **case.fit_kwargs)
