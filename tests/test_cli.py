"""The `bayesfn` command: tour end to end at a tiny size, and the reproduce registry."""

import json
import re
import subprocess
import sys

import pytest

from bayesfn import reproduce
from bayesfn.cli import main
from bayesfn.reproduce.results import make_results, result_row, write_results


def test_tour_writes_a_report(tmp_path):
    out = tmp_path / "tour"
    assert main(["tour", "--smoke", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "GaussianProcess" in report and "test NLL" in report
    # every table row has the header's six cells: a '|' inside a cell is escaped
    rows = [line for line in report.splitlines() if line.startswith("|")]
    assert rows and all(len(re.split(r"(?<!\\)\|", row)) == 8 for row in rows)
    assert "'point_mass' \\| 'inverse_gamma'" in report
    results = json.loads((out / "results.json").read_text())
    assert all(step["status"] == "ok" for step in results["steps"])
    for step in results["steps"]:
        for plot in step["plots"]:
            assert (out / plot).stat().st_size > 1000
    # the smoke GP on 20 points still covers most held-out points
    gp = next(s for s in results["steps"] if s["model"].startswith("GaussianProcess"))
    assert gp["metrics"]["95% coverage"] > 0.6


def test_console_script_is_installed():
    done = subprocess.run(
        [sys.executable, "-m", "bayesfn.cli", "reproduce", "--list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_reproduce_rejects_unknown_papers(capsys):
    assert main(["reproduce", "nope", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "unknown paper 'nope'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert set(reproduce.available()) == set(reproduce.REGISTRY)


@pytest.mark.parametrize("paper", sorted(reproduce.REGISTRY))
def test_every_reproduction_rejects_a_bad_scale_before_any_work(
    paper, monkeypatch, capsys, tmp_path
):
    module = reproduce.load(paper)
    assert {"smoke", "full"} <= set(reproduce.scales(module))

    def no_work(**kwargs):
        raise AssertionError("run() started with an unknown scale")

    monkeypatch.setattr(module, "run", no_work)
    assert main(["reproduce", paper, "--scale", "medium"]) == 2
    err = capsys.readouterr().err
    assert f"scale 'medium' is not a preset of the {paper!r} reproduction" in err
    assert "'smoke'" in err and "Traceback" not in err
    monkeypatch.undo()
    # run() itself refuses too, before it writes anything
    with pytest.raises(ValueError, match=r"scale 'medium' is not a preset|scale must be one of"):
        module.run(scale="medium", seeds=[0], device="cpu", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_results_json_format(tmp_path):
    rows = [result_row("boston", "test NLL", 1.1, paper=1.14, ours_std=0.02)]
    path = write_results(make_results("Some et al.", "smoke", [0, 1], rows), tmp_path)
    data = json.loads(path.read_text())
    assert data == {
        "paper": "Some et al.",
        "scale": "smoke",
        "seeds": [0, 1],
        "rows": [
            {
                "setting": "boston",
                "metric": "test NLL",
                "paper": 1.14,
                "ours": 1.1,
                "ours_std": 0.02,
            }
        ],
    }
    with pytest.raises(ValueError, match="scale"):
        make_results("p", "medium", [0], rows)
    with pytest.raises(ValueError, match="ours must be a number"):
        result_row("a", "b", float("nan"))


def test_reproduce_passes_a_named_scale(monkeypatch, tmp_path):
    seen = {}

    class Fake:
        PAPER = "fake"
        SCALES = ("smoke", "cpu", "full")
        __name__ = "bayesfn.reproduce.fake"

        @staticmethod
        def run(*, scale, seeds, device, out):
            seen.update(scale=scale, seeds=seeds, device=device)
            return make_results("fake", "full", seeds, [result_row("a", "b", 1.0)])

    monkeypatch.setattr(reproduce, "load", lambda name: Fake)
    assert main(["reproduce", "nngp", "--scale", "cpu", "--seed", "2", "--out", str(tmp_path)]) == 0
    assert seen == {"scale": "cpu", "seeds": [2], "device": "cpu"}
    assert (tmp_path / "results.json").exists()
