"""The circuits reproduction at smoke size, through the CLI entry point."""

import json

import pytest

from bayesfn.cli import main
from bayesfn.reproduce import REGISTRY
from bayesfn.reproduce.circuits import _SMOKE, _jobs, paper_init


def test_reproduce_circuits_smoke(tmp_path):
    assert REGISTRY["circuits"] == "circuits"
    assert main(["reproduce", "circuits", "--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scale"] == "smoke" and results["paper"].startswith("Loconte")
    rows = {(r["setting"], r["metric"]): r for r in results["rows"]}
    settings = {s for s, _ in rows}
    assert {"ring/NPC2 K=2", "ring/MPC K=2", "ring/MPC K=16", "ring/true density"} <= settings
    # normalisation of the 32 x 32 categorical models, by enumerating all 1024 cells
    sums = [r for r in results["rows"] if r["metric"].startswith("|sum")]
    assert len(sums) == 3 and all(r["ours"] < 1e-10 for r in sums)
    nltcs = [r for r in results["rows"] if r["setting"].startswith("debd/nltcs")]
    lls = [r for r in nltcs if r["metric"] == "test log-likelihood"]
    # HCLT is a reference baseline, not the paper's number; binary data: log p <= 0
    assert lls and all(r["paper"] is None and "HCLT" in r["reference_source"] for r in lls)
    assert all(r["ours"] < 0 for r in lls)
    # no fitted model beats the true ring density by more than test-set noise
    truth = rows[("ring/true density", "test log-likelihood (standardised data)")]["ours"]
    fitted = [
        r["ours"]
        for (s, m), r in rows.items()
        if s.startswith("ring/") and "true" not in s and m.startswith("test log-likelihood")
    ]
    assert fitted and max(fitted) < truth + 0.05
    steps = [r["ours"] for r in nltcs if r["metric"] == "training steps"]
    assert len(steps) == len(lls) and all(0 < v <= _SMOKE["debd_steps"] for v in steps)
    # the workshop's wave row sits beside K = 16 splines only; smoke runs K = 4
    assert (
        rows[("2d/wave/NPC2 K=4 spline", "test log-likelihood (standardised data)")]["paper"]
        is None
    )
    assert results["paper_tables"]["iclr_uci_table"] is None  # not found, not invented
    for plot in results["plots"]:
        assert (tmp_path / plot).stat().st_size > 0


def test_job_order_puts_the_ring_first_and_skips_nothing_by_default():
    jobs = _jobs(dict(_SMOKE), [0, 1], ("ring", "2d", "2d-discrete", "debd", "maf"))
    parts = [j["part"] for j in jobs]
    assert parts[0] == "ring" and parts[-1] == "2d-discrete"
    # three Figure 1 models and the default-start row, two seeds
    assert parts.count("ring") == 2 * 4
    assert parts.count("2d-discrete") == 2 * 3


def test_paper_init_draws_signed_weights_for_the_ring():
    import torch

    from bayesfn.circuits import MonotonicCircuit, SquaredCircuit

    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    npc = SquaredCircuit(64, seed=0).fit(x, max_steps=0, progress_bar=False)
    paper_init(npc, "normal", seed=1)
    w = npc.module_.weight[-1]
    assert (w < 0).any() and (w > 0).any()  # N(0, 1): both signs from the start
    mpc = MonotonicCircuit(64, seed=0).fit(x, max_steps=0, progress_bar=False)
    paper_init(mpc, "normal", seed=1)
    assert torch.all(mpc.module_.weight[-1] <= 0)  # log of U(0, 1)
    with pytest.raises(ValueError, match="weights"):
        paper_init(npc, "xavier", seed=0)


def test_lbfgs_multistart_reaches_the_closed_form_gaussian_mle():
    """One product unit of Gaussians (MPC, K = 1) is an axis-aligned Gaussian: its
    maximum likelihood is the sample mean and the biased sample variance per axis."""
    import math

    import torch

    from bayesfn.circuits import MonotonicCircuit
    from bayesfn.reproduce.circuits import lbfgs_multistart

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, dtype=torch.float64, generator=g) * torch.tensor([0.5, 2.0]) + 1.0
    model, iters = lbfgs_multistart(
        lambda s: MonotonicCircuit(1, seed=s), x, x[:100], starts=2, seed=0
    )
    var = x.var(0, unbiased=False)
    mle = float(-0.5 * (torch.log(2 * math.pi * var) + 1).sum())
    assert iters > 0
    assert abs(float(model.log_prob(x).mean()) - mle) < 1e-8


def test_ring_models_override_selects_rows_and_rejects_unknown_names(tmp_path):
    from bayesfn.reproduce import circuits

    cfg = {**_SMOKE, "ring_models": ["NPC2 K=2 default init and restarts (extra)", "NPC2 K=2"]}
    jobs = _jobs(cfg, [0, 1], ("ring",))
    # only the named rows, in the table's order, for every seed
    assert [j["model"] for j in jobs] == [
        "NPC2 K=2",
        "NPC2 K=2 default init and restarts (extra)",
    ] * 2
    for bad in (["NPC2 K=3"], "NPC2 K=2", []):
        with pytest.raises(ValueError, match="ring_models"):
            circuits.run(
                scale="smoke",
                seeds=[0],
                device="cpu",
                out=tmp_path / "never",
                parts=("ring",),
                overrides={"ring_models": bad},
            )
    assert not (tmp_path / "never").exists()  # rejected before any work
