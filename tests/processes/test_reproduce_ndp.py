"""``bayesfn reproduce ndp`` at smoke size: the table's structure, the published numbers
beside ours, the saved tasks reused, and presets validated before any work."""

import pytest
import torch

from bayesfn import reproduce
from bayesfn.data import TaskSet
from bayesfn.reproduce import ndp


def test_registered():
    assert "ndp" in reproduce.available()
    assert reproduce.load("ndp") is ndp


def test_smoke_run(tmp_path):
    results = ndp.run(scale="smoke", seeds=[0], device="cpu", out=tmp_path)
    assert results["scale"] == "smoke"
    interpolation = [r for r in results["rows"] if r["setting"] == "1d interpolation/se"]
    generalisation = [r for r in results["rows"] if r["setting"] == "1d generalisation/se"]
    assert len(interpolation) == 7 and len(generalisation) == 7
    assert len(results["rows"]) == 14
    rows = {r["metric"]: r for r in interpolation}
    assert rows["LL per target, GP full (true kernel)"]["reference"] == 0.70
    assert rows["LL per target, GP diagonal (true kernel)"]["reference"] == -0.81
    assert rows["LL per target, NDP moment-matched (paper metric)"]["reference"] == 0.39
    assert (
        rows["LL per target, NDP exact (probability-flow ODE; the first 4 tasks)"]["reference"]
        == 0.69
    )
    # published numbers that are not the NDP paper's own go under reference, with a source
    assert all(r["paper"] is None for r in rows.values())
    assert all(r["reference_source"] for r in rows.values() if "reference" in r)
    # the exact GP with the true kernel beats its diagonal version on every task set
    assert (
        rows["LL per target, GP full (true kernel)"]["ours"]
        > rows["LL per target, GP diagonal (true kernel)"]["ours"]
    )
    assert results["published"]["tsndp"]["values"]["sawtooth"] == 3.39
    tasks = TaskSet.load(tmp_path / "tasks_se")
    assert len(tasks) == 4 and tasks.info["seed"] == 1000
    assert results["details"]["se"]["num_context_per_task"] == tasks.num_context.tolist()
    # generalisation: context and targets in U(2, 6), the same fitted model (saved once)
    general = TaskSet.load(tmp_path / "tasks_se_generalisation")
    assert general.info["seed"] == 2000 and len(general) == 4
    for x in (general.x_context[general.context_mask], general.x_target):
        assert x.min() >= 2.0 and x.max() <= 6.0
    gen_rows = {r["metric"]: r for r in generalisation}
    ode = "LL per target, NDP exact (probability-flow ODE; the first 4 tasks)"
    assert gen_rows[ode]["reference"] == 0.71
    assert "reference" not in gen_rows["LL per target, NDP moment-matched (paper metric)"]
    assert (tmp_path / "model_se_seed0" / "weights.safetensors").exists()
    # a second run loads the saved model instead of refitting: identical NDP numbers
    again = ndp.run(
        scale="smoke", seeds=[0], device="cpu", out=tmp_path, task_sets=("generalisation",)
    )
    assert [r["setting"] for r in again["rows"]] == ["1d generalisation/se"] * 7
    assert {r["metric"]: r["ours"] for r in again["rows"]} == {
        r["metric"]: r["ours"] for r in generalisation
    }


def test_non_gp_families_have_ndp_rows_only(tmp_path):
    results = ndp.run(
        scale="smoke",
        seeds=[0],
        device="cpu",
        out=tmp_path,
        families=["mixture"],
        task_sets=("interpolation",),
    )
    assert len(results["rows"]) == 3
    assert all("GP" not in r["metric"] for r in results["rows"])
    ode = next(r for r in results["rows"] if "exact" in r["metric"])
    assert ode["reference"] == 0.41  # Geometric-NDP's T-sNDP, mixture


def test_mixture_draws_every_member():
    tasks = ndp.make_family_tasks("mixture", 40, 20, generalisation=False)
    members = tasks.info["member_per_task"]
    assert set(members) == {"se", "matern52", "weakly_periodic", "sawtooth"}
    # noise-free sawtooth values lie in [-1/2, 1/2); the GP members' do not
    saw = torch.tensor([m == "sawtooth" for m in members])
    y = tasks.y_target[..., 0]
    assert (y[saw].abs() <= 0.5).all() and (y[~saw].abs() > 0.5).any()
    batch = ndp.MixtureSampler(64, (10, 12))(torch.Generator().manual_seed(0))
    assert batch.x.shape == (64, 12, 1) and batch.mask.sum(1).unique().numel() == 1


@pytest.mark.parametrize(
    ("family", "full", "diag"),
    [("se", 0.70, -0.81), ("matern52", 0.31, -0.93), ("weakly_periodic", -0.32, -1.18)],
)
def test_gp_rows_match_the_published_optimum(family, full, diag):
    # the Geometric-NDP table's GP (optimum) and GP (diag) rows, an independent
    # reference for our task generator and GP evaluation (context 1-10 there, 1-9 here)
    tasks = ndp.make_family_tasks(family, 200, 50, generalisation=False)
    gp = ndp.gp_log_likelihoods(tasks, family)
    assert abs(float(gp["full"].mean()) - full) < 0.05
    assert abs(float(gp["diag"].mean()) - diag) < 0.08


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "huge"}, "scale"),
        ({"seeds": []}, "seeds"),
        ({"families": ["step"]}, "families"),
        ({"task_sets": ("extrapolation",)}, "task_sets"),
        ({"steps": 0}, "steps"),
    ],
)
def test_presets_are_validated_before_any_work(tmp_path, kwargs, match):
    args = {"scale": "smoke", "seeds": [0], "device": "cpu", "out": tmp_path / "o", **kwargs}
    with pytest.raises(ValueError, match=match):
        ndp.run(**args)
    assert not (tmp_path / "o").exists()
