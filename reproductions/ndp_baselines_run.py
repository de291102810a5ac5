"""Train and score the neural-process baselines of the NDP 1-D table for one family:
``python reproductions/ndp_baselines_run.py FAMILY [--models convcnp anp] [--steps N]``.

Each model is trained for ``--steps`` Adam steps (default 6,000, the NDP rows' budget) on
fresh batches of the NDP's own sampler, seed 0, and saved as
``reproductions/ndp_baselines/<model>_<family>_seed0`` (a later call loads it); it is
scored on the NDP's saved task sets ``reproductions/ndp_tasks/<family>_run/tasks_<family>``
and ``..._generalisation``. Writes ``reproductions/ndp_baselines/<model>_<family>.json``;
``ndp_baselines_merge.py`` joins them into ``reproductions/ndp_baselines_results.json``.
Run at most two at once on the shared 2-core machine (one thread each).
"""

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from bayesfn.reproduce import ndp, ndp_baselines

torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO)
parser = argparse.ArgumentParser()
parser.add_argument("family", choices=ndp.FAMILIES)
parser.add_argument("--models", nargs="+", default=list(ndp_baselines.MODELS))
parser.add_argument("--steps", type=int, default=ndp_baselines.TRAINING["steps"])
parser.add_argument("--no-progress", action="store_true")
args = parser.parse_args()
out = Path("reproductions/ndp_baselines")
out.mkdir(parents=True, exist_ok=True)
for name in args.models:
    start = time.time()
    results = ndp_baselines.run_one(
        name,
        args.family,
        out,
        f"reproductions/ndp_tasks/{args.family}_run",
        steps=args.steps,
        progress_bar=not args.no_progress,
    )
    results["wall_seconds"] = round(time.time() - start, 1)
    (out / f"{name}_{args.family}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results["rows"], indent=1))
