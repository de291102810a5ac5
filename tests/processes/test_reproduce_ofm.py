"""The operator-flow-matching reproduction at smoke size, through the registry."""

import json
import math
import time

import pytest

from bayesfn import reproduce
from bayesfn.reproduce import ofm
from bayesfn.reproduce.results import write_results


def test_smoke_run_writes_rows_beside_the_analytic_references(tmp_path):
    module = reproduce.load("ofm")
    assert module is ofm and "Operator Flow Matching" in module.PAPER
    start = time.perf_counter()
    results = module.run(scale="smoke", seeds=[0], out=tmp_path)
    assert time.perf_counter() - start < 90
    loaded = json.loads(write_results(results, tmp_path).read_text())
    assert loaded["scale"] == "smoke" and loaded["seeds"] == [0]
    assert "could not be retrieved" in loaded["notes"]
    rows = loaded["rows"]
    settings = {r["setting"].split(")")[0] for r in rows}
    assert settings == {"(a", "(b", "(c"}  # no 2-D field at smoke size
    for r in rows:
        assert r["paper"] is None and math.isfinite(r["ours"])
        assert "reference" not in r or "computed here" in r["reference_source"]
        assert r["seeds"] == [0]
    by_metric = {(r["setting"][:3], r["metric"]): r for r in rows}
    # analytic facts the rows must show whatever the (tiny) fit: the true GP beats the
    # white-ish reference measure, and the exact posterior sd is reported as its own reference
    ref_gap = by_metric[("(a)", "reference measure's gap to the true GP, nats per point")]
    assert ref_gap["ours"] > 0.5
    sd = by_metric[("(b)", "exact GP posterior sd, grid average")]
    assert sd["ours"] == pytest.approx(sd["reference"])
    assert 0 < sd["ours"] < 1
    assert (tmp_path / "ofm_1d.png").exists()


def test_presets_are_validated_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        ofm.run(scale="huge", out=tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        ofm.run(scale="smoke", seeds=[], out=tmp_path)
    assert set(ofm.SCALES) == {"smoke", "cpu", "full"}
