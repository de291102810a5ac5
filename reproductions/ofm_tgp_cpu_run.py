"""Row group (c) of ``bayesfn reproduce ofm`` at the ``cpu`` preset alone: the truncated GP,
with the posterior sampler of the time and how far the draws that leave the box go.

    python reproductions/ofm_tgp_cpu_run.py     # -> reproductions/ofm_tgp_results.json

Run from the repository root (about 10 CPU-minutes, 1 thread).
"""

import json
import time
from pathlib import Path

import torch

from bayesfn.reproduce import ofm
from bayesfn.reproduce.results import make_results

torch.set_num_threads(1)
SEED = 0
start = time.perf_counter()
rows, _ = ofm.truncated_gp(ofm.SCALES["cpu"], SEED, "cpu")
for row in rows:
    row["seeds"] = [SEED]
results = make_results(
    ofm.PAPER,
    "cpu",
    [SEED],
    rows,
    config={k: ofm.SCALES["cpu"][k] for k in ("n", "num_functions", "steps", "mcmc")},
    seconds=round(time.perf_counter() - start, 1),
)
results["commands"] = ["python reproductions/ofm_tgp_cpu_run.py"]
Path("reproductions/ofm_tgp_results.json").write_text(json.dumps(results, indent=1) + "\n")
print(json.dumps(rows, indent=1))
