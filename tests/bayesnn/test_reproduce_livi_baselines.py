"""Parts (b) and (c) of the LIVI reproduction (the baselines) at smoke size."""

import json
import math

import pytest
import torch

from bayesfn import reproduce
from bayesfn.reproduce import livi_baselines
from bayesfn.reproduce.results import write_results


def _data_available():
    from bayesfn.data import load_sklearn, load_uci

    try:
        load_uci("yacht", 0)
        load_sklearn("digits")
    except FileNotFoundError:
        return False
    return True


needs_data = pytest.mark.skipif(not _data_available(), reason="UCI / digits data are missing")


@needs_data
def test_smoke_run_beats_trivial_predictors(tmp_path):
    from bayesfn.data import load_uci

    module = reproduce.load("livi_baselines")
    assert module is livi_baselines
    methods = ["map", "mfvi", "ensemble", "laplace", "sghmc"]
    results = module.run(scale="smoke", seeds=[0], out=tmp_path, methods=methods)
    loaded = json.loads(write_results(results, tmp_path).read_text())
    assert loaded["scale"] == "smoke" and loaded["seeds"] == [0]
    rows = {(r["setting"], r["metric"]): r["ours"] for r in loaded["rows"]}
    assert len(rows) == 2 * len(methods) + 5 * len(methods)
    assert all(math.isfinite(v) for v in rows.values())
    # the reference: a Gaussian with the training targets' mean and variance
    split = load_uci("yacht", 0, standardize=False)
    mean, var = split.y_train.mean(), split.y_train.var(unbiased=False)
    trivial = torch.distributions.Normal(mean, var.sqrt()).log_prob(split.y_test).mean()
    trivial_rmse = ((split.y_test - mean) ** 2).mean().sqrt()
    for m in methods:
        assert rows[("yacht", f"test LL ({m})")] > float(trivial) + 0.5
        assert rows[("yacht", f"test RMSE ({m})")] < 0.5 * float(trivial_rmse)
        setting = "digits MLP [32]"
        assert rows[(setting, f"accuracy ({m})")] > 0.8  # chance: 0.1
        assert rows[(setting, f"NLL ({m})")] < math.log(10)  # the uniform predictive
        assert rows[(setting, f"OOD AUROC, noisy ({m})")] > 0.6
    assert set(loaded["orderings"]) == {"yacht", "digits MLP [32]"}
    assert "not retrieved" in loaded["paper_tables"]


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        livi_baselines.run(scale="huge", out=tmp_path)
    with pytest.raises(ValueError, match="methods must be drawn from"):
        livi_baselines.run(scale="smoke", out=tmp_path, methods=["vogn"])
    with pytest.raises(ValueError, match="datasets must be UCI short names"):
        livi_baselines.run(scale="smoke", out=tmp_path, datasets=["iris"])
    with pytest.raises(ValueError, match="seeds must name"):
        livi_baselines.run(scale="smoke", out=tmp_path, seeds=[])
