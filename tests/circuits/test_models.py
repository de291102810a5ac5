"""The model contract for circuits: ConditionalPosterior against bayesfn.posterior's
rules, save / load, fitting behaviour and clear errors on bad input."""

import json
import math

import pytest
import torch

from bayesfn import Model, NotFittedError, Posterior
from bayesfn.circuits import ConditionalPosterior, MonotonicCircuit, SquaredCircuit
from bayesfn.data import sample_toy2d

from .conftest import fitted, make_circuit


@pytest.fixture(scope="module")
def gaussian_models():
    x = torch.randn(60, 3, dtype=torch.float64)
    return x, {
        k: fitted(k, x, num_units=3, num_replicas=2, seed=7) for k in ("mpc", "mpc2", "npc2")
    }


def test_conditional_posterior_contract(gaussian_models, kind):
    x, models = gaussian_models
    model = models[kind]
    mask = torch.tensor([True, False, False])
    post = model.posterior(x[:4], mask=mask)
    assert isinstance(post, ConditionalPosterior) and isinstance(post, Posterior)
    assert post.has_log_prob and not post.is_reparameterized
    assert post.batch_shape == (4,) and post.event_shape == (2,)
    assert (
        post.mean.shape == (4, 2) and post.variance.shape == (4, 2) and post.stddev.shape == (4, 2)
    )
    g = torch.Generator().manual_seed(0)
    draws = post.sample((2000,), generator=g)
    assert draws.shape == (2000, 4, 2)
    assert post.log_prob(draws[:5]).shape == (5, 4)
    assert post.marginal_log_prob(draws[:5]).shape == (5, 4, 2)
    assert post.cdf(draws[:5]).shape == (5, 4, 2)
    se = (post.variance / 2000).sqrt()
    assert ((draws.mean(0) - post.mean).abs() < 5 * se).all()
    assert ((draws.var(0) - post.variance).abs() < 0.3 * post.variance).all()
    q = post.quantile(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    assert q.shape == (3, 4, 2) and (q[1:] >= q[:-1]).all()
    lo, hi = post.interval(0.9)
    torch.testing.assert_close(
        post.cdf(hi) - post.cdf(lo), torch.full((4, 2), 0.9, dtype=torch.float64)
    )
    with pytest.raises(NotImplementedError):
        post.rsample()
    single = model.posterior(x[0], mask=mask)
    assert single.batch_shape == () and single.sample((7,)).shape == (7, 2)
    torch.testing.assert_close(single.mean, post.mean[0])
    joint = model.posterior()
    assert joint.event_shape == (3,) and joint.batch_shape == ()


def test_arviz_export(gaussian_models):
    post = gaussian_models[1]["npc2"].posterior(
        gaussian_models[0][:2], mask=torch.tensor([True, False, True])
    )
    idata = post.to_inference_data(num_samples=5, num_chains=2)
    assert idata.posterior_predictive["f"].shape == (2, 5, 2, 1)


def test_save_load_round_trip(tmp_path, kind):
    x = torch.randint(0, 3, (40, 4)).double()
    model = fitted(kind, x, num_units=3, input="categorical", num_replicas=2)
    model.save(tmp_path / "m")
    loaded = Model.load(tmp_path / "m")
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    config = json.loads(json.dumps(model.get_config()))
    assert type(model)(**config).get_config() == config


def test_state_of_an_older_layout_is_refused():
    """Leaves and folds are stored in reader order since layout 2: an older state would
    load into permuted slots, so it is refused with a message that says to refit."""
    x = torch.randint(0, 3, (40, 4)).double()
    model = fitted("mpc", x, num_units=2, input="categorical")
    state = model._get_state()
    assert state["layout"] == 2
    del state["layout"]
    with pytest.raises(ValueError, match=r"layout 1.*refit"):
        model._set_state(state)


def test_save_load_spline_circuit(tmp_path):
    x = torch.randn(50, 3, dtype=torch.float64)
    model = SquaredCircuit(3, input="spline", spline_bases=9, spline_degree=1).fit(
        x, max_steps=3, progress_bar=False
    )
    assert model.module_.inputs.num_bases == 9 and model.module_.inputs.degree == 1
    model.save(tmp_path / "m")
    loaded = Model.load(tmp_path / "m")
    assert loaded.get_config()["spline_bases"] == 9
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_save_load_custom_graph(tmp_path):
    from bayesfn.circuits import linear_tree

    x = torch.randn(30, 3, dtype=torch.float64)
    model = SquaredCircuit(2, region_graph=linear_tree(3, order=[2, 0, 1])).fit(
        x, max_steps=3, progress_bar=False
    )
    model.save(tmp_path / "m")
    loaded = SquaredCircuit.load(tmp_path / "m")
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_fit_early_stopping_and_diagnostics():
    x = sample_toy2d("rings", 600, seed=0)
    xv = sample_toy2d("rings", 200, seed=1)
    model = SquaredCircuit(4, num_replicas=2).fit(
        x, validation=xv, max_steps=400, val_every=10, patience=2, lr=0.05, progress_bar=False
    )
    r = model.fit_result_
    assert r.best_step is not None and r.val_history
    # the fit ends at the best validation state it saw: the continued run's best check, or
    # the kept restart's trial state when the continuation never got back above it
    best = max(-min(v for _, v in r.val_history), max(r.diagnostics["restart_log_likelihoods"]))
    assert math.isclose(r.diagnostics["val_log_likelihood"], best)
    assert r.diagnostics.get("returned_to_trial", False) == (
        best > -min(v for _, v in r.val_history)
    )
    assert r.diagnostics["train_log_likelihood"] > -3.5


def test_npc2_data_start_has_positive_uniform_weights():
    model = SquaredCircuit(4, init="data").fit(
        torch.randn(20, 2, dtype=torch.float64), max_steps=0, progress_bar=False
    )
    for w in model.module_.weight:
        assert ((w > 0) & (w < 1)).all()


def test_float32_training_on_rings_has_no_nan():
    x = sample_toy2d("rings", 500, seed=0).float()
    for kind in ("mpc", "npc2"):
        model = make_circuit(kind, num_units=8, num_replicas=2, dtype="float32").fit(
            x, max_steps=150, lr=0.05, progress_bar=False
        )
        losses = torch.tensor(model.fit_result_.losses)
        assert torch.isfinite(losses).all()
        lp = model.log_prob(x)
        assert lp.dtype == torch.float32 and torch.isfinite(lp).all()
        assert abs(float(model.log_partition().detach())) < 80


def test_float32_tucker_training_on_rings_has_no_nan_and_learns():
    x = sample_toy2d("rings", 500, seed=0).float()
    for kind in ("mpc", "npc2"):
        model = make_circuit(kind, num_units=4, num_replicas=2, dtype="float32", layer="tucker")
        model.fit(x, max_steps=60, lr=0.05, progress_bar=False)
        losses = torch.tensor(model.fit_result_.losses)
        assert torch.isfinite(losses).all()
        assert losses[-10:].mean() < losses[:10].mean() - 0.1
        lp = model.log_prob(x)
        assert lp.dtype == torch.float32 and torch.isfinite(lp).all()


def test_bad_inputs_give_clear_errors():
    x = torch.randint(0, 3, (20, 3)).double()
    model = MonotonicCircuit(2, input="categorical", num_states=3).fit(
        x, max_steps=1, progress_bar=False
    )
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\).*got \(4, 2\)"):
        model.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"integer states in 0..2.*got 3.0"):
        model.log_prob(torch.tensor([[0.0, 3.0, 1.0]]))
    with pytest.raises(ValueError, match="integer states"):
        model.log_prob(torch.tensor([[0.5, 1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"NaN .* nothing says which values are missing"):
        model.log_prob(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="needs mask="):
        model.posterior(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="NaN where mask says"):
        model.posterior(
            torch.tensor([[0.0, float("nan"), 1.0]]), mask=torch.tensor([True, True, False])
        )
    with pytest.raises(ValueError, match="X must have shape"):
        MonotonicCircuit().fit(torch.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        MonotonicCircuit().fit(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(NotFittedError):
        SquaredCircuit().posterior()
    with pytest.raises(ValueError, match="input must be one of"):
        SquaredCircuit(input="poisson")
    with pytest.raises(ValueError, match="num_units"):
        SquaredCircuit(0)
    with pytest.raises(ValueError, match="image_shape"):
        SquaredCircuit(region_graph="quad")
    with pytest.raises(ValueError, match=r"layer must be one of \('cp', 'tucker'\); got 'tt'"):
        SquaredCircuit(layer="tt")


def test_nonfinite_loss_names_the_layer():
    x = torch.randn(30, 4, dtype=torch.float64)
    model = MonotonicCircuit(2).fit(x, max_steps=1, progress_bar=False)
    with torch.no_grad():
        model.module_.weight[1].fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"parameter 'weight\.1'"):
        model._explain_nonfinite(x, torch.tensor(float("nan")))
    with torch.no_grad():
        model.module_.weight[1].fill_(0.0)
        model.module_.inputs.mu.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"inputs\.mu"):
        model._explain_nonfinite(x, torch.tensor(float("nan")))


def test_nonfinite_layer_output_is_named():
    x = torch.randn(30, 4, dtype=torch.float64)
    model = MonotonicCircuit(2).fit(x, max_steps=1, progress_bar=False)
    with torch.no_grad():
        # log-weights of 1e308 are finite, but adding two of them overflows at the root
        model.module_.weight[0].fill_(1e308)
        model.module_.weight[1].fill_(1e308)
    with pytest.raises(FloatingPointError, match=r"root sum layer \(1 replicas\) produced"):
        model._explain_nonfinite(x, torch.tensor(float("inf")))


def test_impute_one_call():
    x = torch.randint(0, 3, (40, 4)).double()
    model = fitted("npc2", x, num_units=3, input="categorical")
    holes = x[:6].clone()
    holes[0, 1] = holes[2, 3] = holes[3, 0] = holes[3, 2] = float("nan")
    for method in ("mean", "mode", "sample"):
        filled = model.impute(holes, method=method)
        assert not torch.isnan(filled).any()
        keep = ~torch.isnan(holes)
        assert torch.equal(filled[keep], holes[keep])
    mean = model.impute(holes)
    post = model.posterior(holes[0], mask=torch.tensor([True, False, True, True]))
    torch.testing.assert_close(mean[0, 1], post.mean[0])


# what waits for the device, and (lift_fresh) tensors built from host data, which on a
# GPU are uploads from pageable memory: neither can be recorded in a CUDA graph
_HOST_SYNCS = {
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "unique_dim",
    "_unique2",
    "lift_fresh",
}


@pytest.mark.parametrize("input", ["categorical", "binomial", "bernoulli", "gaussian", "spline"])
def test_training_step_never_synchronises_with_the_host(kind, input):
    """A CUDA graph can record the training step only if nothing in it waits for a value
    (``.item()``, a Python branch on a tensor, a boolean-mask index, ``nonzero``). On CPU
    the same operations still pass through the dispatcher, so catch them there."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.syncs: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            bool_index = name == "index" and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
            )
            if name in _HOST_SYNCS or bool_index:
                self.syncs.append(name)
            return func(*args, **(kwargs or {}))

    if input in ("categorical", "binomial", "bernoulli"):
        states = 2 if input == "bernoulli" else 3
        x = torch.randint(0, states, (20, 4)).double()
        kw = {"num_states": states}
    else:
        x = torch.randn(20, 4, dtype=torch.float64)
        kw = {}
    model = fitted(kind, x, num_units=3, num_replicas=2, input=input, **kw)
    with Recorder() as rec:
        loss = -model._log_prob(x).mean()
        loss.backward()
    assert rec.syncs == []
    # the recorder sees what it must: a Python branch on a tensor
    with Recorder() as rec:
        bool(loss > 0)
    assert rec.syncs == ["_local_scalar_dense"]


def test_cuda_graph_needs_cuda_parameters():
    x = torch.randn(20, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="cuda_graph=True needs CUDA parameters"):
        MonotonicCircuit(3).fit(x, max_steps=3, progress_bar=False, cuda_graph=True)


def test_checkpoints_resume_only_the_same_fit(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    kw = {"max_steps": 4, "batch_size": 10, "progress_bar": False, "checkpoint_dir": tmp_path}
    # one start: with restarts the checkpoint holds the continued start's steps only
    SquaredCircuit(num_units=2, restarts=1).fit(x, checkpoint_every=2, **kw)
    again = SquaredCircuit(num_units=2, restarts=1).fit(x, checkpoint_every=2, **kw)
    assert again.fit_result_.resumed_from == 4
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*another fit .*the data differ"):
        SquaredCircuit(num_units=2, num_replicas=1).fit(x + 1, **kw)
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*another fit"):
        SquaredCircuit(num_units=3, num_replicas=1).fit(x, **kw)
