"""Why the (e) rows' first pCN preset scored far below 128 independent chains, measured.

On the first tasks of NDP's saved 1-D tasks, with the (e) model of one family (fitted by
``reproductions/ofm_ndp_cpu_run.py`` and saved under ``reproductions/ofm_ndp_tasks/models``;
refitted here with the same command's settings when absent), runs the latent pCN for
``--steps`` steps after burn-in with every step kept, plain (per-chain β, prior starts) and
preconditioned (the default: generalised pCN around each task's Gauss–Newton
approximation, β per task), and prints per sampler: the acceptance rate, the median final
β, the multi-chain effective sample size of f at the targets per 100 steps of one chain
(median over targets and tasks), and NDP's moment-matched LL per target from the preset's
draws (16 chains × 8 draws, every 10th step after 150 burn-in steps) beside the exact
grid-GP ceiling.

    python reproductions/ofm_pcn_diagnostics.py se [--tasks 4] [--steps 300]

Run from the repository root, 1 thread. Prints one JSON object.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from bayesfn.covariance import GPSampler
from bayesfn.processes import OperatorFlowMatching
from bayesfn.reproduce import ndp, ofm
from benchmarks.ofm_bench import ess

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("family", choices=ofm.NDP_FAMILIES)
parser.add_argument("--tasks", type=int, default=4)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--samplers", default="plain,preconditioned")
parser.add_argument("--target-accept", type=float, default=0.25)
args = parser.parse_args()

e = dict(ofm.SCALES["cpu"]["ndp"])
path = Path("reproductions/ofm_ndp_tasks/models") / f"{args.family}_seed0"
if not path.exists():
    cfg = dict(ofm.SCALES["cpu"])
    cfg["ndp"] = {**e, "families": [args.family], "first_tasks": 1, "model_dir": path.parent}
    ofm.ndp_regression(cfg, 0, "cpu")  # fits and saves the model
model = OperatorFlowMatching.load(path)
tasks, _, _ = ofm._ndp_tasks(args.family, e)
tasks = dataclasses.replace(tasks, **{k: getattr(tasks, k)[: args.tasks] for k in tasks.TENSORS})
noise = ndp._COMMON["noise_std"] ** 2
low, high = ndp._COMMON["x_range"]
grid = torch.linspace(low, high, e["n"], dtype=torch.float64)
kernel = GPSampler(ndp._GP_SPEC[args.family], lengthscale=ndp._COMMON["lengthscale"])
y_t = tasks.y_target[..., 0].double()
out = {
    "family": args.family,
    "tasks": args.tasks,
    "grid_gp_ll": float(ofm._grid_gp_ll(kernel, grid, tasks, noise).mean()),
}
for name in args.samplers.split(","):
    cfg = {
        **e,
        "chains": 16,
        "burn_in": 150,
        "thin": 1,
        "num_samples": 16 * args.steps,
        "precondition": name == "preconditioned",
        "target_accept": args.target_accept,
    }
    start = time.perf_counter()
    _, info = ofm._ofm_task_draws(model, grid, tasks, cfg, noise, 0)
    seconds = time.perf_counter() - start
    chains = info["chains"]  # (b, chains, steps, targets)
    per_task = [np.median(ess(chains[i].numpy())) for i in range(chains.shape[0])]
    preset = chains[:, :, 9:80:10].flatten(1, 2).permute(1, 0, 2)  # (128, b, targets)
    every = chains.flatten(1, 2).permute(1, 0, 2)
    out[f"{name}, target acceptance {args.target_accept}"] = {
        "accept": info["accept"],
        "median_final_beta": info["step_size"],
        "ess_per_100_steps_per_chain": float(np.median(per_task) / 16 / args.steps * 100),
        "ess_per_task_of_all_steps": [float(v) for v in per_task],
        "ll_preset_draws": float(ofm._moment_ll(preset, y_t, noise).mean()),
        f"ll_all_{every.shape[0]}_draws": float(ofm._moment_ll(every, y_t, noise).mean()),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(out, indent=1), flush=True)
