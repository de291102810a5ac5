"""Join the per-family runs of ``ndp_cpu_run.py`` into ``reproductions/ndp_results.json``
(``python reproductions/ndp_cpu_merge.py se matern52``).

A family whose run has not written its ``results.json`` yet contributes the exact-GP rows
(full and diagonal covariance) computed on its saved task file, and is listed under
``"not_finished"``; the NDP rows of that family are then absent, not invented.
"""

import json
import sys
from pathlib import Path

import torch

from bayesfn.data import TaskSet
from bayesfn.reproduce import ndp
from bayesfn.reproduce.results import make_results

torch.set_num_threads(1)
families = sys.argv[1:]
rows, details, seconds, missing, settings = [], {}, {}, [], None
for family in families:
    folder = Path(f"reproductions/ndp_tasks/{family}_run")
    path = folder / "results.json"
    if path.exists():
        part = json.loads(path.read_text())
        rows += part["rows"]
        details.update(part["details"])
        seconds[family] = part["wall_seconds"]
        settings = part["settings"]
        continue
    missing.append(family)
    tasks = TaskSet.load(folder / f"tasks_{family}")
    gp = ndp.gp_log_likelihoods(tasks, family)
    setting = f"1d interpolation/{family}"
    rows += [
        ndp._row(setting, "LL per target, GP full (true kernel)", gp["full"], "gp_full"),
        ndp._row(setting, "LL per target, GP diagonal (true kernel)", gp["diag"], "gp_diag"),
    ]
    details[family] = {
        "gp_full_per_task": gp["full"].tolist(),
        "gp_diag_per_task": gp["diag"].tolist(),
        "num_context_per_task": tasks.num_context.tolist(),
    }
if settings is None:
    settings = dict(ndp.SCALES["cpu"])
    settings.update(steps=6000, num_inner_steps=1, ode_steps=12, ode_tasks=16)
settings["families"] = families
results = make_results(
    ndp.PAPER,
    "cpu",
    [0],
    rows,
    settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
    published=ndp.PUBLISHED,
    details=details,
    seconds_per_family=seconds,
    not_finished=missing,
    commands=[f"python reproductions/ndp_cpu_run.py {f}" for f in families]
    + [f"python reproductions/ndp_cpu_merge.py {' '.join(families)}"],
)
Path("reproductions/ndp_results.json").write_text(json.dumps(results, indent=1))
print(json.dumps(rows, indent=1))
