"""Join the per-model, per-family results of ``ndp_baselines_run.py``
(``reproductions/ndp_baselines/<model>_<family>.json``) into
``reproductions/ndp_baselines_results.json`` and print the table rows:
``python reproductions/ndp_baselines_merge.py``."""

import json
from pathlib import Path

import torch

from bayesfn.data import TaskSet
from bayesfn.reproduce.ndp import FAMILIES, gp_log_likelihoods
from bayesfn.reproduce.ndp_baselines import MODELS
from bayesfn.reproduce.results import format_table, merge_results

folder = Path("reproductions/ndp_baselines")
parts, sources = [], []
for name in MODELS:
    for family in FAMILIES:
        path = folder / f"{name}_{family}.json"
        if path.exists():
            parts.append(json.loads(path.read_text()))
            sources.append(str(path))
merged = merge_results(parts, sources)
Path("reproductions/ndp_baselines_results.json").write_text(json.dumps(merged, indent=1))
print(format_table(merged))

# the rows of the README's NDP tables (families in column order; "—" where not run)
for kind in ("interpolation", "generalisation"):
    print(f"\n{kind}")
    for label in ("ConvCNP", "ANP"):
        cells, cover = [], []
        for family in FAMILIES:
            rows = [
                r
                for r in merged["rows"]
                if r["setting"] == f"1d {kind}/{family}" and label in r["metric"]
            ]
            ll = [r for r in rows if r["metric"].startswith("LL")]
            cv = [r for r in rows if r["metric"].startswith("95")]
            if not ll:
                cells.append("—")
                cover.append("—")
                continue
            r = ll[0]
            ours = f"{r['ours']:.2f} ± {r['ours_std']:.2f}".replace("-", "−")
            cells.append(f"{ours} ({r['reference']:.2f})".replace("-", "−"))
            cover.append(f"{cv[0]['ours']:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
        print(f"| {label} 95 % interval coverage | " + " | ".join(cover) + " |")

# paired differences on the identical tasks against the exact GP (true kernel), GP families
print("\npaired differences per task (mean ± s.e.): model − GP full, model − GP diagonal")
for part in parts:
    for key, detail in part["details"].items():
        name, family = key.split("/")
        if family not in ("se", "matern52", "weakly_periodic"):
            continue
        for kind, suffix in (("interpolation", ""), ("generalisation", "_generalisation")):
            tasks = TaskSet.load(f"reproductions/ndp_tasks/{family}_run/tasks_{family}{suffix}")
            gp = gp_log_likelihoods(tasks, family)
            ll = torch.tensor(detail[kind]["ll_per_task"], dtype=torch.float64)
            diffs = []
            for ref in ("full", "diag"):
                d = ll - gp[ref]
                diffs.append(f"{float(d.mean()):+.2f} ± {float(d.std() / d.numel() ** 0.5):.2f}")
            print(f"{name:8s} {family:16s} {kind:15s} " + "   ".join(diffs))
