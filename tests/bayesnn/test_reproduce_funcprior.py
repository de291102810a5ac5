"""The functional-prior reproduction at smoke size, through the registry."""

import json
import math
import time

import pytest
import torch

from bayesfn import reproduce
from bayesfn.reproduce import funcprior
from bayesfn.reproduce.results import write_results


def _uci_available():
    from bayesfn.data import load_uci

    try:
        load_uci("boston", 0)
    except FileNotFoundError:
        return False
    return True


needs_uci = pytest.mark.skipif(not _uci_available(), reason="UCI data are not available")


def test_toy_data_has_its_gap_and_grid():
    data = funcprior.toy_data(40, seed=0, grid=100)
    x = data["x"][:, 0]
    assert x.shape == (40,) and not ((x > -1) & (x < 3)).any()
    assert data["x_test"].shape == (100, 1) and data["in_gap"].sum() > 20
    # the noise is N(0, 0.3^2): test residuals about the true function have that sd
    resid = data["y_test"][:, 0] - data["f_test"]
    assert 0.2 < float(resid.std()) < 0.4


@needs_uci
def test_smoke_run_writes_every_part_beside_the_notebook(tmp_path):
    pytest.importorskip("matplotlib")
    module = reproduce.load("funcprior")
    assert module is funcprior
    start = time.perf_counter()
    results = module.run(scale="smoke", seeds=[0], out=tmp_path)
    assert time.perf_counter() - start < 120
    loaded = json.loads(write_results(results, tmp_path).read_text())
    assert loaded["scale"] == "smoke" and loaded["inference"] == "sghmc"
    rows = {(r["setting"], r["metric"]): r for r in loaded["rows"]}
    assert all(math.isfinite(r["ours"]) for r in loaded["rows"])
    for prior, numbers in funcprior.NOTEBOOK_BOSTON.items():
        for metric, (mean, _) in numbers.items():
            row = rows[(f"boston/{prior}", f"test {metric}")]
            assert row["reference"] == mean and row["paper"] is None
            assert "notebook" in row["reference_source"]
    for prior in funcprior.PRIORS:
        assert (f"boston/{prior}", "test RMSE") in rows
    for prior in ("FG", "GPi-G"):
        acc = rows[(f"digits/{prior}", "test accuracy")]["ours"]
        assert 0.0 <= acc <= 1.0
    # the exact GP on the toy set: close to the truth (noise sd 0.3) outside the gap
    assert rows[("1-D gap/exact GP", "test RMSE (all)")]["ours"] < 0.8
    for name in ("prior_draws", "posterior", "w1"):
        assert (tmp_path / f"funcprior_toy_{name}.png").exists()


def test_bad_settings_fail_before_any_work():
    with pytest.raises(ValueError, match="scale"):
        funcprior.run(scale="huge")
    with pytest.raises(ValueError, match="inference"):
        funcprior.run(scale="smoke", inference="nuts")
    with pytest.raises(ValueError, match="parts"):
        funcprior.run(scale="smoke", parts=("banana",))
    with pytest.raises(ValueError, match="UCI"):
        funcprior.run(scale="smoke", datasets=["nope"])


def test_uci_target_is_the_notebooks_hierarchical_gp():
    target = funcprior.uci_target(13)
    assert target.is_hierarchical
    assert target.lengthscale == (pytest.approx(math.log(math.sqrt(26))), 1.0)
    assert target.variance == (0.1, 1.0)
    f = target.sample(
        torch.zeros(3, 13, dtype=torch.float64), 4000, generator=torch.Generator().manual_seed(0)
    )
    # var f(x) = σ² with log σ² ~ N(0.1, 1): E σ² = exp(0.1 + 1/2)
    assert float(f[:, 0].var()) == pytest.approx(math.exp(0.6), rel=0.25)
