"""The circuits reproduction at smoke size, through the CLI entry point."""

import json

from bayesfn.cli import main
from bayesfn.reproduce import REGISTRY


def test_reproduce_circuits_smoke(tmp_path, capsys):
    assert REGISTRY["circuits"] == "circuits"
    assert main(["reproduce", "circuits", "--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["scale"] == "smoke" and results["paper"].startswith("Loconte")
    settings = {r["setting"] for r in results["rows"]}
    assert {"ring/NPC2 K=2", "ring/MPC K=2", "ring/MPC K=16"} <= settings
    for row in results["rows"]:
        if row["metric"].startswith("|sum"):
            assert row["ours"] < 1e-10  # 32 x 32 grid sums to one
    nltcs = [r for r in results["rows"] if r["setting"].startswith("debd/nltcs")]
    assert nltcs and all(r["paper"] == -6.00 for r in nltcs)
    for plot in results["plots"]:
        assert (tmp_path / plot).stat().st_size > 0
