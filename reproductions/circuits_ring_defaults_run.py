"""The ring rows of ``bayesfn reproduce circuits`` at full scale (issue 16, item 3): NPC²
K=2 with the library's default start (``init="auto", restarts=4``) beside the paper's
recipe (``N(0, 1)`` start), with the paper's optimiser settings (batch 64, lr 1e-3, at
most 1,200 epochs, patience 100 epochs).

::

    python reproductions/circuits_ring_defaults_run.py run {default,paper} SEED \
        [--deadline-utc 21:22]
    python reproductions/circuits_ring_defaults_run.py merge

``run`` calls ``bayesfn.reproduce.circuits.run(scale="full", parts=("ring",),
overrides={"ring_models": [ROW]})`` for one row and seed and writes its ``results.json``,
``report.md`` and heatmap into ``reproductions/circuits_ring_defaults/<row>_seed<SEED>/``,
with the fit's steps, wall and CPU seconds (one process, one torch thread). ``merge`` joins
the seeds that ran into ``reproductions/circuits_ring_defaults_results.json`` (per-seed
values, their mean, the seeds' true densities). ``--deadline-utc`` stops a fit at that
time (UTC), keeping its best parameters; such a fit is marked ``hit_deadline``.
Timings come from the shared 2-core development machine under load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

from bayesfn.reproduce import circuits
from bayesfn.reproduce.results import make_results, result_row, write_results

torch.set_num_threads(1)

ROWS = {
    "default": "NPC2 K=2 default init and restarts (extra)",
    "paper": "NPC2 K=2",
}
METRIC = "test log-likelihood (standardised data)"
HERE = Path(__file__).resolve().parent
RUNS = HERE / "circuits_ring_defaults"
RESULTS = HERE / "circuits_ring_defaults_results.json"


def _deadline(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        hh, mm = (int(v) for v in text.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        return now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    except ValueError as err:
        raise SystemExit(f"--deadline-utc must be HH:MM (UTC); got {text!r}") from err


def run_row(seed: int, row: str, deadline: float | None) -> Path:
    """One ring row (``"default"`` or ``"paper"``) for one seed; returns the results path."""
    out = RUNS / f"{row}_seed{seed}"
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = circuits.run(
        scale="full",
        seeds=[seed],
        device="cpu",
        out=out,
        workers=1,
        parts=("ring",),
        overrides={"ring_models": [ROWS[row]]},
        deadline=deadline,
    )
    results["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    results["wall_seconds_driver"] = round(time.perf_counter() - wall0, 1)
    if deadline is not None:
        at = dt.datetime.fromtimestamp(deadline, dt.timezone.utc)
        results["deadline_utc"] = at.isoformat(timespec="seconds")
    path = write_results(results, out)
    steps = results["steps_taken"].get("ring")
    print(f"{row} seed {seed}: steps {steps}, {results['cpu_seconds']} CPU s; wrote {path}")
    return path


def merge() -> dict:
    """Per-seed values and means of every ring row over the seeds in ``RUNS``."""
    parts = {p.parent.name: json.loads(p.read_text()) for p in sorted(RUNS.glob("*/results.json"))}
    if not parts:
        raise SystemExit(f"no runs in {RUNS}")
    per: dict[str, dict[int, float]] = {}
    for res in parts.values():
        seed = res["seeds"][0]
        for row in res["rows"]:
            if row["metric"] in (METRIC, "number of negative root weights"):
                per.setdefault(f"{row['setting']}|{row['metric']}", {})[seed] = row["ours"]
    rows = []
    for key, vals in per.items():
        setting, metric = key.split("|")
        seeds = sorted(vals)
        mean = sum(vals.values()) / len(vals)
        std = (
            (sum((v - mean) ** 2 for v in vals.values()) / (len(vals) - 1)) ** 0.5
            if len(vals) > 1
            else None
        )
        rows.append(result_row(setting, metric, mean, ours_std=std, seeds=seeds))
    payload = make_results(
        circuits.PAPER,
        "full",
        sorted({res["seeds"][0] for res in parts.values()}),
        rows,
        per_seed={k: {str(s): v for s, v in sorted(d.items())} for k, d in per.items()},
        runs={
            name: {
                "steps": res.get("steps_taken", {}).get("ring"),
                "wall_seconds": res.get("wall_seconds"),
                "cpu_seconds": res.get("cpu_seconds"),
                "deadline_utc": res.get("deadline_utc"),
                "not_run": [n for n in res.get("notes", []) if n.startswith("not run")],
            }
            for name, res in parts.items()
        },
        notes=[
            "Ring rows of bayesfn reproduce circuits at the full preset (10k/1k/2k points, "
            "batch 64, lr 1e-3, <= 1200 epochs, patience 100 epochs), one process per "
            "seed on the shared 2-core CPU, one torch thread. 'NPC2 K=2' is the paper's "
            "recipe (N(0,1) start); the '(extra)' row starts from the library's default "
            "init='auto', restarts=4 (each start's trial runs a quarter of the step budget).",
            "'steps' in runs counts the kept start's fit after the trials; the default row "
            "also ran restarts x a quarter of the 1200-epoch budget in trials (4 x 47,100 = "
            "188,400 steps, no early stopping). cpu_seconds is the driver process's "
            "time.process_time for the whole row (trials included).",
        ],
        regenerable=True,
        provenance="python reproductions/circuits_ring_defaults_run.py run ROW SEED for "
        "each row and seed, then python reproductions/circuits_ring_defaults_run.py merge",
    )
    RESULTS.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {RESULTS} (runs {sorted(parts)})")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="one ring row for one seed")
    one.add_argument("row", choices=list(ROWS))
    one.add_argument("seed", type=int)
    one.add_argument("--deadline-utc", default=None, help="HH:MM UTC: stop the fits then")
    sub.add_parser("merge", help="join the seeds into the results file")
    args = parser.parse_args(argv)
    if args.command == "merge":
        merge()
        return 0
    deadline = _deadline(args.deadline_utc)
    if deadline is not None and time.time() > deadline - 60:
        print(f"{args.row} seed {args.seed}: not started, past the deadline")
        return 0
    run_row(args.seed, args.row, deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
