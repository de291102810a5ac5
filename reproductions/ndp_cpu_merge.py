"""Join the per-family runs of ``ndp_cpu_run.py`` into ``reproductions/ndp_results.json``
(``python reproductions/ndp_cpu_merge.py [FAMILY ...]``, default all five families).

Per family it reads ``reproductions/ndp_tasks/<family>_run/results.json`` (interpolation,
and generalisation for the families run with both task sets) and, where present,
``results_generalisation.json`` (se and matern52: generalisation from a refit with the
same seed and settings, their interpolation run's models not having been kept).

A task set whose NDP run has not written its results contributes, for the GP families,
the exact-GP rows (full and diagonal covariance) computed on its task file, and is listed
under ``"not_finished"``; its NDP rows are then absent, not invented. Rows written in the
earlier reporting format (published numbers under ``paper``) are rewritten to the current
one (under ``reference``, with their source); no number changes.
"""

import json
import sys
from pathlib import Path

import torch

from bayesfn.data import TaskSet
from bayesfn.reproduce import ndp
from bayesfn.reproduce.results import make_results

torch.set_num_threads(1)
families = sys.argv[1:] or list(ndp.FAMILIES)
bad = [f for f in families if f not in ndp.FAMILIES]
if bad:
    raise SystemExit(f"unknown families {bad}; choose from {list(ndp.FAMILIES)}")


def current_format(row: dict) -> dict:
    """A row of the earlier format (published number under ``paper``) in the current one."""
    row = dict(row)
    if "paper_source" in row:
        source = row.pop("paper_source")
        if source is not None:
            row["reference"] = row["paper"]
            row["reference_source"] = source
        row["paper"] = None
    return row


def gp_rows(family: str, tasks: TaskSet, generalisation: bool) -> tuple[list, dict]:
    kind = "generalisation" if generalisation else "interpolation"
    setting = f"1d {kind}/{family}"
    gp = ndp.gp_log_likelihoods(tasks, family)
    rows = [
        ndp._row(setting, "LL per target, GP full (true kernel)", gp["full"], "gp_full"),
        ndp._row(setting, "LL per target, GP diagonal (true kernel)", gp["diag"], "gp_diag"),
    ]
    detail = {
        "gp_full_per_task": gp["full"].tolist(),
        "gp_diag_per_task": gp["diag"].tolist(),
        "num_context_per_task": tasks.num_context.tolist(),
    }
    return rows, detail


rows, details, seconds, missing, settings, commands = [], {}, {}, [], {}, []
for family in families:
    folder = Path(f"reproductions/ndp_tasks/{family}_run")
    details[family] = {}
    done = set()
    for name in ("results.json", "results_generalisation.json"):
        path = folder / name
        if not path.exists():
            continue
        part = json.loads(path.read_text())
        for row in part["rows"]:
            rows.append(current_format(row))
            done.add(row["setting"].split()[1].split("/")[0])
        found = part["details"][family]
        if name == "results_generalisation.json":
            details[family]["generalisation"] = found["generalisation"]
            details[family]["generalisation_fit"] = found.get("fit")
        else:
            details[family].update(found)
        settings.setdefault(family, {})[name] = part["settings"]
        seconds.setdefault(family, {})[name] = part.get("wall_seconds")
    for kind in ("interpolation", "generalisation"):
        if kind in done:
            continue
        missing.append(f"{family} {kind}")
        if family not in ndp._GP_SPEC:
            continue
        generalisation = kind == "generalisation"
        suffix = "_generalisation" if generalisation else ""
        path = folder / f"tasks_{family}{suffix}"
        if path.exists():
            tasks = TaskSet.load(path)
        else:  # the task set a run would make (16 tasks, seeded)
            tasks = ndp.make_family_tasks(family, 16, 50, generalisation=generalisation)
        found_rows, detail = gp_rows(family, tasks, generalisation)
        rows += found_rows
        if generalisation:
            details[family]["generalisation"] = detail
        else:
            details[family].update(detail)
    if family in ("se", "matern52"):
        commands += [
            f"python reproductions/ndp_cpu_run.py {family} --num-tasks 32 "
            "--task-sets interpolation",
            f"python reproductions/ndp_cpu_run.py {family} --task-sets generalisation",
        ]
    else:
        commands += [f"python reproductions/ndp_cpu_run.py {family}"]
commands.append(f"python reproductions/ndp_cpu_merge.py {' '.join(families)}")
results = make_results(
    ndp.PAPER,
    "cpu",
    [0],
    rows,
    settings=settings,
    published=ndp.PUBLISHED,
    details=details,
    seconds_per_family=seconds,
    not_finished=missing,
    commands=commands,
    notes=[
        "ours_std is the standard error over tasks; one seed (0) per family.",
        "cpu preset reduced to what the shared 2-core machine allowed: 6,000 steps, "
        "RePaint U = 1, the exact (ODE) likelihood on 16 tasks with 12 RK4 steps; "
        "se and matern52 interpolation on 32 tasks, every other task set on 16 "
        "(settings per family and file).",
        "se and matern52 interpolation rows come from results.json files written in the "
        "earlier format: published numbers moved from 'paper' to 'reference' by the merge, "
        "no number changed.",
        "Sawtooth and mixture have no GP optimum: NDP rows and published references only.",
        "Context counts 1-9 per task (the NDP code); the Geometric-NDP table uses 1-10; "
        "50 targets for every family (Geometric-NDP: 100 for sawtooth and mixture).",
    ],
)
Path("reproductions/ndp_results.json").write_text(json.dumps(results, indent=1))
for row in rows:
    ref = row.get("reference")
    print(f"{row['setting']:34s} {row['metric'][:60]:60s} {row['ours']:7.3f}  ref {ref}")
