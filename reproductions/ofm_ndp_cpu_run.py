"""Row group (e) of ``bayesfn reproduce ofm`` at the ``cpu`` preset: OFM on the NDP
reproduction's saved 1-D regression tasks (``reproductions/ndp_tasks``), beside the exact
GP on the same tasks and NDP's committed numbers (``reproductions/ndp_results.json``).

    python reproductions/ofm_ndp_cpu_run.py se          # one family (about 45 min here)
    python reproductions/ofm_ndp_cpu_run.py matern52
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
    merged = merge_results([json.loads(n.read_text()) for n in names], [str(n) for n in names])
    merged["commands"] = [
        "python reproductions/ofm_ndp_cpu_run.py se",
        "python reproductions/ofm_ndp_cpu_run.py matern52",
        "python reproductions/ofm_ndp_cpu_run.py --merge",
    ]
    Path("reproductions/ofm_ndp_results.json").write_text(json.dumps(merged, indent=1) + "\n")
    sys.exit(0)

family = sys.argv[1]
cfg = dict(ofm.SCALES["cpu"])
cfg["ndp"] = {**cfg["ndp"], "families": [family]}
start = time.perf_counter()
rows, details = ofm.ndp_regression(cfg, SEED, "cpu")
for row in rows:
    row["seeds"] = [SEED]
results = make_results(
    ofm.PAPER,
    "cpu",
    [SEED],
    rows,
    config={"ndp": ofm.SCALES["cpu"]["ndp"]},
    details=details,
    seconds=round(time.perf_counter() - start, 1),
    notes=ofm.NDP_NOTES,
)
OUT.mkdir(parents=True, exist_ok=True)
(OUT / f"{family}.json").write_text(json.dumps(results, indent=1) + "\n")
print(json.dumps(rows, indent=1))
