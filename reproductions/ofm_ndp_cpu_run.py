"""Row group (e) of ``bayesfn reproduce ofm`` at the ``cpu`` preset: OFM on the NDP
reproduction's saved 1-D regression tasks (``reproductions/ndp_tasks``), beside the exact
GP on the same tasks and NDP's committed numbers (``reproductions/ndp_results.json``).

    python reproductions/ofm_ndp_cpu_run.py se          # one family (~10 min here, fit first)
    python reproductions/ofm_ndp_cpu_run.py matern52
    python reproductions/ofm_ndp_cpu_run.py se --independent         # the sampler check, plain
    python reproductions/ofm_ndp_cpu_run.py matern52 --independent
    python reproductions/ofm_ndp_cpu_run.py se --independent --first 8  # a subset
    python reproductions/ofm_ndp_cpu_run.py se --independent --preconditioned --first 8
    python reproductions/ofm_ndp_cpu_run.py --merge     # -> reproductions/ofm_ndp_results.json

Run from the repository root (the saved tasks and NDP's results are read relative to it).
The families run as separate processes so that they fit side by side on two cores;
``bayesfn reproduce ofm --scale cpu`` runs the same code one family after the other.
"""

import json
import sys
import time
from pathlib import Path

import torch

from bayesfn.reproduce import ofm
from bayesfn.reproduce.results import make_results, merge_results

torch.set_num_threads(1)
OUT = Path("reproductions/ofm_ndp_tasks")
SEED = 0

if sys.argv[1] == "--merge":
    names = [OUT / f"{f}.json" for f in ofm.NDP_FAMILIES]
    names += sorted(OUT.glob("*_independent*.json"))
    parts = [json.loads(n.read_text()) for n in names]
    for family, part in zip(ofm.NDP_FAMILIES, parts, strict=False):
        # runs that predate a row of gp_moment_rows get it here (seconds of work, the same
        # function ndp_regression now calls); the rows it shares keep their values
        tasks, _, _ = ofm._ndp_tasks(family, ofm.SCALES["cpu"]["ndp"])
        have = {r["metric"] for r in part["rows"]}
        rows = ofm.gp_moment_rows(tasks, family, seed=SEED)
        part["rows"] += [{**r, "seeds": [SEED]} for r in rows if r["metric"] not in have]
    merged = merge_results(parts, [str(n) for n in names])
    merged["commands"] = [
        "python reproductions/ofm_ndp_cpu_run.py se",
        "python reproductions/ofm_ndp_cpu_run.py matern52",
        "python reproductions/ofm_ndp_cpu_run.py se --independent --first 8",
        "python reproductions/ofm_ndp_cpu_run.py matern52 --independent --first 8",
        "python reproductions/ofm_ndp_cpu_run.py se --independent --preconditioned --first 8",
        "python reproductions/ofm_ndp_cpu_run.py matern52 --independent --preconditioned --first 8",
        "python reproductions/ofm_ndp_cpu_run.py --merge",
    ]
    Path("reproductions/ofm_ndp_results.json").write_text(json.dumps(merged, indent=1) + "\n")
    sys.exit(0)

family = sys.argv[1]
cfg = dict(ofm.SCALES["cpu"])
# the fitted model is saved once and reused by the other runs of the family
cfg["ndp"] = {**cfg["ndp"], "families": [family], "model_dir": str(OUT / "models")}
name = family
if sys.argv[2:3] == ["--independent"]:
    # the sampler check, independent of the preset's sampler: one draw from each of 128
    # chains of plain pCN (prior starts, no preconditioner) after 150 burn-in steps
    cfg["ndp"].update(
        chains=128,
        thin=1,
        burn_in=150,
        precondition=False,
        label=", one draw from each of 128 plain pCN chains",
    )
    name = f"{family}_independent"
    if "--preconditioned" in sys.argv:  # the same with the preset's sampler, 40 burn-in steps
        cfg["ndp"].update(
            burn_in=40,
            precondition=True,
            label=", one draw from each of 128 preconditioned pCN chains",
        )
        name = f"{family}_independent_preconditioned"
    if "--first" in sys.argv:  # a subset: the first tasks
        first = sys.argv[sys.argv.index("--first") + 1]
        cfg["ndp"]["first_tasks"] = int(first)
        cfg["ndp"]["label"] = f", first {first} tasks" + cfg["ndp"]["label"]
start = time.perf_counter()
rows, details = ofm.ndp_regression(cfg, SEED, "cpu")
for row in rows:
    row["seeds"] = [SEED]
results = make_results(
    ofm.PAPER,
    "cpu",
    [SEED],
    rows,
    config={"ndp": cfg["ndp"]},
    details=details,
    seconds=round(time.perf_counter() - start, 1),
    notes=ofm.NDP_NOTES,
)
OUT.mkdir(parents=True, exist_ok=True)
(OUT / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
print(json.dumps(rows, indent=1))
