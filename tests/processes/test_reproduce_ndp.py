"""``bayesfn reproduce ndp`` at smoke size: the table's structure, the published numbers
beside ours, the saved tasks reused, and presets validated before any work."""

import pytest

from bayesfn import reproduce
from bayesfn.data import TaskSet
from bayesfn.reproduce import ndp


def test_registered():
    assert "ndp" in reproduce.available()
    assert reproduce.load("ndp") is ndp


def test_smoke_run(tmp_path):
    results = ndp.run(scale="smoke", seeds=[0], device="cpu", out=tmp_path)
    assert results["scale"] == "smoke"
    rows = {r["metric"]: r for r in results["rows"]}
    assert len(rows) == 7 and all(r["setting"] == "1d interpolation/se" for r in rows.values())
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


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "huge"}, "scale"),
        ({"seeds": []}, "seeds"),
        ({"families": ["sawtooth"]}, "families"),
        ({"steps": 0}, "steps"),
    ],
)
def test_presets_are_validated_before_any_work(tmp_path, kwargs, match):
    args = {"scale": "smoke", "seeds": [0], "device": "cpu", "out": tmp_path / "o", **kwargs}
    with pytest.raises(ValueError, match=match):
        ndp.run(**args)
    assert not (tmp_path / "o").exists()
