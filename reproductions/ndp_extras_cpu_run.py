"""Run the ``cpu`` preset of ``bayesfn reproduce ndp_extras`` for one row group and write
``reproductions/ndp_<group>_results.json`` and its plot ``reproductions/ndp_<group>.png``:

    python reproductions/ndp_extras_cpu_run.py nongauss   # (d) step functions
    python reproductions/ndp_extras_cpu_run.py thompson   # (e) Thompson sampling, 1-D

``nongauss`` trains the step-function NDP once and saves it to
``reproductions/ndp_nongauss_run/model_step_seed0`` (committed, about 530 KB) with its
tasks; later calls reload it, so only the evaluation reruns. ``thompson`` reuses the
committed ``se`` model of ``bayesfn reproduce ndp`` (``reproductions/ndp_tasks/se_run``).
Equivalent to ``bayesfn reproduce ndp_extras --scale cpu`` with one group per process.
"""

import argparse
import json
import shutil
import time

import torch

from bayesfn.reproduce import ndp_extras

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("group", choices=ndp_extras.GROUPS)
args = parser.parse_args()
out = f"reproductions/ndp_{args.group}_run"
start = time.time()
results = ndp_extras.run(scale="cpu", seeds=[0], device="cpu", out=out, groups=[args.group])
results["wall_seconds"] = round(time.time() - start, 1)
with open(f"reproductions/ndp_{args.group}_results.json", "w") as f:
    json.dump(results, f, indent=1)
plot = "ndp_nongauss_seed0.png" if args.group == "nongauss" else "ndp_thompson_regret_seed0.png"
shutil.copy(f"{out}/{plot}", f"reproductions/ndp_{args.group}.png")
for row in results["rows"]:
    print(f"{row['setting']} | {row['metric']} | {row['ours']:.3f} ± {row['ours_std'] or 0:.3f}")
