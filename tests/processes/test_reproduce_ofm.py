"""The operator-flow-matching reproduction at smoke size, through the registry."""

import json
import math
import time
from pathlib import Path

import pytest
import torch

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
    assert settings == {"(a", "(b", "(c", "(d", "(e"}  # (d): the two-channel field only
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


ROOT = Path(__file__).resolve().parents[2]


def test_regenerated_ndp_tasks_equal_the_saved_ones():
    from bayesfn.data import TaskSet

    for family in ofm.NDP_FAMILIES:
        saved = TaskSet.load(ROOT / ofm.NDP_TASKS.format(family=family))
        made, source, from_file = ofm._ndp_tasks(family, {"num_tasks": 32, "num_target": 50})
        assert not from_file and "regenerated" in source
        for key in ("x_context", "y_context", "context_mask", "x_target", "y_target"):
            a, b = getattr(made, key), getattr(saved, key)
            assert a.shape == b.shape
            assert torch.allclose(a.double(), b.double(), rtol=0, atol=1e-7), key


def test_grid_ceiling_and_moment_match_approach_the_exact_gp():
    from bayesfn.covariance import GPSampler
    from bayesfn.reproduce import ndp

    tasks, _, _ = ofm._ndp_tasks("se", {"num_tasks": 4, "num_target": 20})
    exact = ndp.gp_log_likelihoods(tasks, "se")["full"]
    kernel = GPSampler("rbf", lengthscale=0.25)
    noise = 0.05**2
    # linear interpolation is exact on linear functions, and a fine grid is the GP itself
    grid = torch.linspace(-2, 2, 401, dtype=torch.float64)
    xq = torch.tensor([-2.0, -0.013, 0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(ofm._interpolation(xq, grid) @ (3 * grid - 1), 3 * xq - 1)
    assert torch.allclose(ofm._grid_gp_ll(kernel, grid, tasks, noise), exact, atol=2e-3)
    coarse = ofm._grid_gp_ll(kernel, grid[::25], tasks, noise)  # 17 points: loses
    assert (coarse.mean() < exact.mean() - 0.05).item()
    # NDP's metric on many exact posterior draws of f approaches the exact LL
    g = torch.Generator().manual_seed(0)
    draws = []
    for i in range(len(tasks)):
        (xc, yc), (xt, _) = tasks.task(i)
        x = torch.cat([xc, xt]).double()
        k = kernel.covariance(x)[0]
        c = xc.shape[0]
        kcc = k[:c, :c] + noise * torch.eye(c, dtype=torch.float64)
        sol = torch.linalg.solve(kcc, k[:c, c:])
        mean = sol.T @ yc[:, 0].double()
        cov = k[c:, c:] - k[:c, c:].T @ sol
        chol = torch.linalg.cholesky(0.5 * (cov + cov.T) + 1e-9 * torch.eye(len(mean)))
        z = torch.randn(20000, len(mean), generator=g, dtype=torch.float64)
        draws.append(mean + z @ chol.T)
    draws = torch.stack(draws, 1)
    mm = ofm._moment_ll(draws, tasks.y_target[..., 0].double(), noise)
    assert torch.allclose(mm, exact, atol=0.02)
