"""Run the ``cpu`` preset of ``bayesfn reproduce ndp`` for one family and write its
``results.json`` (``python reproductions/ndp_cpu_run.py se``); ``ndp_cpu_merge.py``
joins the families into ``reproductions/ndp_results.json``. Equivalent to
``bayesfn reproduce ndp --scale cpu`` (which runs the families one after the other),
split so that the families train side by side on two cores."""

import json
import sys
import time

import torch

from bayesfn.reproduce import ndp

torch.set_num_threads(1)
family = sys.argv[1]
# what the shared 2-core machine could afford before the deadline (load average ~9):
# fewer steps, U = 1, the exact likelihood on 16 tasks with 12 RK4 steps
OVERRIDES = {"num_inner_steps": 1, "ode_steps": 12, "ode_tasks": 16}
STEPS = 6000
out = f"reproductions/ndp_tasks/{family}_run"
start = time.time()
results = ndp.run(
    scale="cpu",
    seeds=[0],
    device="cpu",
    out=out,
    families=[family],
    steps=STEPS,
    overrides=OVERRIDES,
)
results["wall_seconds"] = round(time.time() - start, 1)
with open(f"{out}/results.json", "w") as f:
    json.dump(results, f, indent=1)
print(json.dumps(results["rows"], indent=1))
