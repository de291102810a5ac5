"""Add the LIVI column to the `livi_baselines` cpu tables (issue 12, parts b and c).

The baselines' tables (`livi_baselines_results.json`) ran before LIVI was registered.
Every fit in `bayesfn.reproduce.livi_baselines` is seeded by itself, so LIVI's rows can be
run alone, at the same preset, and merged with the baselines' rows: the numbers equal
those of one run with every method. This script runs LIVI on the cpu preset in two
processes side by side, then merges:

    python reproductions/livi_column_cpu_run.py [--out results/livi_column]

and writes `reproductions/livi_baselines_results.json` with both parts (the merge keeps
each part's metadata under `merged_from`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _part(args: tuple[str, list[str], bool, str]) -> str:
    import torch

    from bayesfn.reproduce import livi_baselines
    from bayesfn.reproduce.results import write_results

    name, datasets, classification, out = args
    torch.set_num_threads(1)
    folder = Path(out) / name
    results = livi_baselines.run(
        scale="cpu",
        seeds=[0],
        methods=["livi"],
        datasets=datasets,
        classification=classification,
        out=folder,
    )
    write_results(results, folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/livi_column")
    args = parser.parse_args()
    out = Path(args.out)
    jobs = [
        ("livi_a", ["boston", "concrete"], False, str(out)),
        ("livi_b", ["energy", "yacht"], True, str(out)),
    ]
    with mp.get_context("spawn").Pool(2) as pool:
        folders = pool.map(_part, jobs)
    base = out / "baselines"
    base.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "livi_baselines_results.json", base / "results.json")
    from bayesfn.cli import main as cli

    merged = out / "merged"
    code = cli(
        ["reproduce", "livi_baselines", "--merge", str(base), *folders, "--out", str(merged)]
    )
    if code != 0:
        raise SystemExit(code)
    results = json.loads((merged / "results.json").read_text())
    (HERE / "livi_baselines_results.json").write_text(json.dumps(results, indent=2))
    print("wrote", HERE / "livi_baselines_results.json")


if __name__ == "__main__":
    main()
