"""The scale-mixture NNGP reproduction at smoke size, through the registry."""

import json
import math
import time

import numpy as np
import pytest

from bayesfn import reproduce
from bayesfn.reproduce import nngp
from bayesfn.reproduce.results import write_results


def test_smoke_run_writes_the_table_beside_the_paper(tmp_path):
    pytest.importorskip("matplotlib")
    try:
        from bayesfn.data import load_uci

        load_uci("yacht", 0)
    except FileNotFoundError:
        pytest.skip("UCI data are not available under the data root")
    module = reproduce.load("nngp")
    assert module is nngp
    start = time.perf_counter()
    results = module.run(scale="smoke", seeds=[0], out=tmp_path)
    assert time.perf_counter() - start < 90
    path = write_results(results, tmp_path)
    loaded = json.loads(path.read_text())
    assert loaded["scale"] == "smoke" and loaded["seeds"] == [0]
    rows = loaded["rows"]
    datasets = nngp.SCALES["smoke"]["datasets"]
    assert len(rows) == 3 * len(datasets)
    for row in rows:
        assert row["paper"] is not None and math.isfinite(row["ours"])
        name, method = row["setting"], row["metric"].split("(")[1].rstrip(")")
        assert row["paper"] == nngp.PAPER_NLL[name][nngp.METHODS.index(method)]
    assert loaded["max_burr_quadrature_error"] < 1e-3
    assert (tmp_path / "nngp_regression_nll.png").exists()


def test_synthetic_sets_have_the_stated_sizes_and_noise():
    xa, ya, xta, yta = nngp.synthetic("synthetic_a", 0)
    xb, yb, xtb, ytb = nngp.synthetic("synthetic_b", 0)
    assert xa.shape[0] + xta.shape[0] == 100 and xb.shape[0] + xtb.shape[0] == 300
    assert abs(float(ya.mean())) < 1e-12 and abs(float(ya.std(unbiased=False)) - 1) < 1e-12

    # Cauchy noise gives far heavier tails than the Gaussian set: compare kurtosis
    def kurtosis(v):
        v = v.numpy().ravel()
        return float(((v - v.mean()) ** 4).mean() / v.var() ** 2)

    assert kurtosis(yb) > 2 * kurtosis(ya)
    assert np.isfinite(kurtosis(ytb))
