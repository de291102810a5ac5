"""The `bayesfn` command: tour end to end at a tiny size, and the reproduce registry."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayesfn import reproduce
from bayesfn.cli import main
from bayesfn.reproduce.results import make_results, result_row, write_results


def test_tour_writes_a_report(tmp_path):
    out = tmp_path / "tour"
    assert main(["tour", "--smoke", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "GaussianProcess" in report and "test NLL" in report
    results = json.loads((out / "results.json").read_text())
    assert all(step["status"] == "ok" for step in results["steps"])
    for step in results["steps"]:
        for plot in step["plots"]:
            assert (out / plot).stat().st_size > 1000
    # the smoke GP on 20 points still covers most held-out points
    gp = next(s for s in results["steps"] if s["model"].startswith("GaussianProcess"))
    assert gp["metrics"]["95% coverage"] > 0.6


def test_console_script_is_installed():
    """The `bayesfn` script that `pip install` put beside this interpreter lists every
    registered paper."""
    script = Path(sys.executable).parent / "bayesfn"
    assert script.exists(), f"no console script at {script}; is the package installed?"
    done = subprocess.run(
        [str(script), "reproduce", "--list"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert listed == set(reproduce.REGISTRY)


def test_reproduce_rejects_unknown_papers():
    with pytest.raises(ValueError, match="unknown paper 'nope'"):
        main(["reproduce", "nope", "--smoke"])
    assert set(reproduce.available()) == set(reproduce.REGISTRY)


def test_results_json_format(tmp_path):
    rows = [
        result_row("boston", "test NLL", 1.1, paper=1.14, ours_std=0.02),
        result_row("nltcs", "test LL", -6.1, seeds=[3], reference=-6.0, reference_source="HCLT"),
    ]
    path = write_results(make_results("Some et al.", "cpu", [0, 1], rows), tmp_path)
    data = json.loads(path.read_text())
    assert data == {
        "paper": "Some et al.",
        "scale": "cpu",
        "seeds": [0, 1],
        "rows": [
            {
                "setting": "boston",
                "metric": "test NLL",
                "paper": 1.14,
                "ours": 1.1,
                "ours_std": 0.02,
                "seeds": [0, 1],  # a row without its own seeds used all of them
            },
            {
                "setting": "nltcs",
                "metric": "test LL",
                "paper": None,
                "ours": -6.1,
                "ours_std": None,
                "seeds": [3],
                "reference": -6.0,
                "reference_source": "HCLT",
            },
        ],
    }
    report = (tmp_path / "report.md").read_text()
    assert "| boston | test NLL | 1.14 |  | 1.1 ± 0.02 | -0.04 | 0,1 |" in report
    assert "| nltcs | test LL |  | -6 [1] | -6.1 |  | 3 |" in report and "[1] HCLT" in report
    with pytest.raises(ValueError, match="scale must be the name of the preset"):
        make_results("p", "my scale", [0], rows)
    with pytest.raises(ValueError, match="ours must be a number"):
        result_row("a", "b", float("nan"))
    with pytest.raises(ValueError, match="reference= and reference_source= together"):
        result_row("a", "b", 1.0, reference=2.0)


def test_reproduce_passes_a_named_scale(monkeypatch, tmp_path):
    seen = {}

    class Fake:
        PAPER = "fake"

        @staticmethod
        def run(*, scale, seeds, device, out):
            seen.update(scale=scale, seeds=seeds, device=device)
            return make_results("fake", "full", seeds, [result_row("a", "b", 1.0)])

    monkeypatch.setattr(reproduce, "load", lambda name: Fake)
    assert main(["reproduce", "nngp", "--scale", "cpu", "--seed", "2", "--out", str(tmp_path)]) == 0
    assert seen == {"scale": "cpu", "seeds": [2], "device": "cpu"}
    assert (tmp_path / "results.json").exists()


def test_reproduce_merges_split_runs(monkeypatch, tmp_path):
    class Fake:
        PAPER = "fake paper"

    monkeypatch.setattr(reproduce, "load", lambda name: Fake)
    for name, seeds in (("a", [0]), ("b", [1, 2])):
        rows = [result_row(f"set {name}", "NLL", 1.0 + len(seeds))]
        write_results(make_results("fake paper", "cpu", seeds, rows, seconds=3.0), tmp_path / name)
    out = tmp_path / "merged"
    argv = ["reproduce", "fake", "--merge", str(tmp_path / "a"), str(tmp_path / "b")]
    assert main([*argv, "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert merged["scale"] == "cpu" and merged["seeds"] == [0, 1, 2]
    assert [(r["setting"], r["ours"], r["seeds"]) for r in merged["rows"]] == [
        ("set a", 2.0, [0]),
        ("set b", 3.0, [1, 2]),
    ]
    assert [m["seconds"] for m in merged["merged_from"]] == [3.0, 3.0]
    # the same row twice, or two presets, cannot merge
    with pytest.raises(ValueError, match="appears in both"):
        main([*argv[:3], str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(out)])
    write_results(make_results("fake paper", "full", [3], []), tmp_path / "c")
    with pytest.raises(ValueError, match="only runs of one paper and preset merge"):
        main([*argv[:3], str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(out)])
