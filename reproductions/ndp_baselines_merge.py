"""Join the per-model, per-family results of ``ndp_baselines_run.py``
(``reproductions/ndp_baselines/<model>_<family>.json``) into
``reproductions/ndp_baselines_results.json`` and print the table rows:
``python reproductions/ndp_baselines_merge.py``."""

import json
from pathlib import Path

from bayesfn.reproduce.ndp import FAMILIES
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
