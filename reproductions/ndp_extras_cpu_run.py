"""Run the ``cpu`` preset of ``bayesfn reproduce ndp_extras`` for one row group and write
``reproductions/ndp_<group>_results.json`` and its plots ``reproductions/ndp_nongauss.png``,
``reproductions/ndp_thompson_<d>d.png``:

    python reproductions/ndp_extras_cpu_run.py nongauss   # (d) step functions
    python reproductions/ndp_extras_cpu_run.py thompson [--dims 1 2]  # (e) Thompson sampling
    python reproductions/ndp_extras_cpu_run.py diagnose   # (d): the sampler or the model?

``diagnose`` checks the committed step NDP and its saved tasks against the exact step law,
with the exact noise model (``ndp_extras.StepOracle``) in place of the network: RePaint
at U = 1, 4, 16 and SMC with the oracle and with the NDP, the ODE likelihood with the
oracle, the NDP's density of small sets (``ndp_extras.diagnose_nongauss``, settings
``ndp_extras.DIAGNOSIS["cpu"]``); it writes ``reproductions/ndp_nongauss_diagnosis.json``.

``thompson`` writes ``ndp_thompson_results.json`` for ``--dims 1`` and
``ndp_thompson_<d>d..._results.json`` otherwise, with ``_u<U>`` for ``--inner-steps U``.

``nongauss`` trains the step-function NDP once and saves it to
``reproductions/ndp_nongauss_run/model_step_seed0`` (committed, about 630 KB) with its
tasks; later calls reload it, so only the evaluation reruns. ``thompson`` reuses the
committed ``se`` model of ``bayesfn reproduce ndp`` (``reproductions/ndp_tasks/se_run``) in
1-D and the ``se-2`` model of ``bayesfn reproduce ndp_multidim``
(``reproductions/ndp_multidim/se-2_run``) in 2-D.
Equivalent to ``bayesfn reproduce ndp_extras --scale cpu`` with one group per process.
"""

import argparse
import json
import shutil
import time

import torch

from bayesfn.reproduce import ndp_extras
from bayesfn.reproduce.results import make_results

torch.set_num_threads(1)
parser = argparse.ArgumentParser()
parser.add_argument("group", choices=[*ndp_extras.GROUPS, "diagnose"])
parser.add_argument(
    "--dims", type=int, nargs="+", default=[1, 2], help="thompson: input dimensions"
)
parser.add_argument(
    "--inner-steps",
    type=int,
    default=None,
    help="thompson: RePaint U of the NDP draws (default: the preset's, 1); the result file "
    "gets the suffix _u<U>",
)
parser.add_argument(
    "--model-2d",
    default=None,
    help="thompson: the 2-D SE model (default: the preset's, ndp_multidim's se-2 model)",
)
args = parser.parse_args()
if args.group == "diagnose":
    from bayesfn.data import TaskSet
    from bayesfn.processes import NeuralDiffusionProcess

    start = time.time()
    found = ndp_extras.diagnose_nongauss(
        NeuralDiffusionProcess.load("reproductions/ndp_nongauss_run/model_step_seed0"),
        TaskSet.load("reproductions/ndp_nongauss_run/tasks_step"),
        ndp_extras.DIAGNOSIS["cpu"],
        seed=0,
    )
    found = make_results(
        ndp_extras.PAPER,
        "cpu",
        [0],
        found["rows"],
        details=found["details"],
        wall_seconds=round(time.time() - start, 1),
    )
    with open("reproductions/ndp_nongauss_diagnosis.json", "w") as f:
        json.dump(found, f, indent=1)
    for row in found["rows"]:
        print(f"{row['setting']} | {row['metric']} | {row['ours']:.3f} ± {row['ours_std']:.3f}")
    raise SystemExit(0)
suffix = "" if args.dims == [1] else "".join(f"_{d}d" for d in args.dims)
u_suffix = "" if args.inner_steps is None else f"_u{args.inner_steps}"
suffix += u_suffix
overrides = {"ts_dims": args.dims, "ts_inner_steps": args.inner_steps}
if args.model_2d is not None:
    setups = json.loads(json.dumps(ndp_extras.SCALES["cpu"]["thompson"]))
    setups["2"]["ndp_model"] = args.model_2d
    overrides["thompson"] = setups
out = f"reproductions/ndp_{args.group}_run"  # models and tasks (plots are moved out)
start = time.time()
results = ndp_extras.run(
    scale="cpu",
    seeds=[0],
    device="cpu",
    out=out,
    groups=[args.group],
    overrides=overrides,
)
results["wall_seconds"] = round(time.time() - start, 1)
with open(f"reproductions/ndp_{args.group}{suffix}_results.json", "w") as f:
    json.dump(results, f, indent=1)
if args.group == "nongauss":
    shutil.move(f"{out}/ndp_nongauss_seed0.png", "reproductions/ndp_nongauss.png")
else:
    for dim in args.dims:
        shutil.move(
            f"{out}/ndp_thompson_regret_{dim}d_seed0.png",
            f"reproductions/ndp_thompson_{dim}d{u_suffix}.png",
        )
for row in results["rows"]:
    print(f"{row['setting']} | {row['metric']} | {row['ours']:.3f} ± {row['ours_std'] or 0:.3f}")
