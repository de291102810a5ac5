"""The LIVI reproduction at smoke size, through the registry."""

import json
import math

import pytest

from bayesfn import reproduce
from bayesfn.reproduce import livi
from bayesfn.reproduce.results import write_results


def test_smoke_run_writes_the_toy_table_beside_the_notebook(tmp_path):
    pytest.importorskip("matplotlib")
    module = reproduce.load("livi")
    assert module is livi
    results = module.run(scale="smoke", seeds=[0], out=tmp_path)
    loaded = json.loads(write_results(results, tmp_path).read_text())
    assert loaded["scale"] == "smoke" and loaded["seeds"] == [0]
    rows = {(r["setting"], r["metric"]): r for r in loaded["rows"]}
    for entropy in ("exact", "bound"):
        noise = rows[(f"toy gap, {entropy}, official", "learned noise sd (truth 0.3)")]
        assert noise["paper"] is None and noise["reference"] == livi.NOTEBOOK_NOISE[entropy]
        assert 0 < noise["ours"] < 5
        key = (f"toy gap, {entropy}, official", "predictive sd at the gap centre / at the data")
        ratio = rows[key]
        assert math.isfinite(ratio["ours"]) and ratio["ours"] > 0
    assert (tmp_path / "livi_toy_gap.png").exists()


def test_presets_are_validated_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        livi.run(scale="medium", seeds=[0], out=tmp_path)
    with pytest.raises(ValueError, match="unknown experiment"):
        livi.run(scale="smoke", seeds=[0], out=tmp_path, experiments=["mnist_large"])
    assert not any(tmp_path.iterdir())


def test_toy_data_has_a_gap_and_the_notebook_noise():
    x, y = livi.toy_data(2000, seed=1)
    assert x.shape == y.shape == (2000, 1)
    assert not ((x > -0.5) & (x < 0.5)).any()
    resid = y - livi.toy_function(x)
    assert abs(float(resid.std()) - 0.3) < 0.02
