"""Row groups of ``bayesfn reproduce ofm`` at the ``cpu`` preset, one part alone, with the
posterior sampler of the time: ``ab`` (the GP prior (a), its exact densities and
super-resolution, then the GP regression (b) with that model) or ``c`` (the truncated GP,
with how far the draws that leave the box go).

    python reproductions/ofm_part_cpu_run.py ab   # -> reproductions/ofm_part_ab_results.json
    python reproductions/ofm_part_cpu_run.py c    # -> reproductions/ofm_part_c_results.json

Run from the repository root, 1 thread (5-15 minutes each on the shared machine).
"""

import json
import sys
import time
from pathlib import Path

import torch

from bayesfn.reproduce import ofm
from bayesfn.reproduce.results import make_results

torch.set_num_threads(1)
SEED = 0
part = sys.argv[1]
if part not in ("ab", "c"):
    raise SystemExit(f"part must be 'ab' or 'c'; got {part!r}")
cfg = ofm.SCALES["cpu"]
start = time.perf_counter()
if part == "ab":
    rows, prior = ofm.gp_prior(cfg, SEED, "cpu")
    rows += ofm.gp_regression(cfg, prior["model"], SEED)[0]
else:
    rows, _ = ofm.truncated_gp(cfg, SEED, "cpu")
for row in rows:
    row["seeds"] = [SEED]
results = make_results(
    ofm.PAPER,
    "cpu",
    [SEED],
    rows,
    config={k: cfg[k] for k in ("n", "num_functions", "steps", "batch", "net", "mcmc")},
    seconds=round(time.perf_counter() - start, 1),
)
results["commands"] = [f"python reproductions/ofm_part_cpu_run.py {part}"]
out = Path(f"reproductions/ofm_part_{part}_results.json")
out.write_text(json.dumps(results, indent=1) + "\n")
print(json.dumps(rows, indent=1))
