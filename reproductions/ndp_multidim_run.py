"""Run the ``cpu`` preset of :mod:`bayesfn.reproduce.ndp_multidim` for one setting and
write its ``results.json``: ``python reproductions/ndp_multidim_run.py SETTING
[--steps N] [--fit-only]`` with SETTING one of ``se-2``, ``se-3``, ``matern52-2``,
``matern52-3`` (row group (b)) or ``se-hyper`` (row group (c)).

The fitted model (``reproductions/ndp_multidim/<setting>_run/model_<setting>_seed0``,
about 630 KB with its EMA weights and loss history, committed) and the task set are saved
there; a later call loads the model instead of refitting, so the evaluation can be rerun
alone. ``ndp_multidim_merge.py`` joins the settings into
``reproductions/ndp_multidim_results.json`` and lists the commands of the committed runs
(``RUNS``). One thread, as the committed runs (two settings side by side on the shared
2-core machine).
"""

import argparse
import json
import time

import torch

from bayesfn.reproduce import ndp_multidim

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("setting", choices=ndp_multidim.SETTINGS)
parser.add_argument("--steps", type=int, default=None, help="default: the cpu preset's")
parser.add_argument(
    "--num-tasks", type=int, default=None, help="tasks of the task set (default: the preset's 32)"
)
parser.add_argument("--fit-only", action="store_true")
args = parser.parse_args()
out = f"reproductions/ndp_multidim/{args.setting}_run"
start = time.time()
results = ndp_multidim.run(
    scale="cpu",
    seeds=[0],
    device="cpu",
    out=out,
    settings=[args.setting],
    steps=args.steps,
    overrides={"num_tasks": args.num_tasks} if args.num_tasks else None,
    fit_only=args.fit_only,
)
results["wall_seconds"] = round(time.time() - start, 1)
name = "results_fit_only.json" if args.fit_only else "results.json"
with open(f"{out}/{name}", "w") as f:
    json.dump(results, f, indent=1)
for row in results["rows"]:
    print(f"{row['setting']:12s} {row['metric'][:72]:72s} {row['ours']:7.3f}")
