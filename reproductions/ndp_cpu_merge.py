"""Join the per-family runs of ``ndp_cpu_run.py`` into ``reproductions/ndp_results.json``
(``python reproductions/ndp_cpu_merge.py se matern52``)."""

import json
import sys

parts = []
for family in sys.argv[1:]:
    with open(f"reproductions/ndp_tasks/{family}_run/results.json") as f:
        parts.append(json.load(f))
merged = dict(parts[0])
merged["rows"] = [row for p in parts for row in p["rows"]]
merged["details"] = {k: v for p in parts for k, v in p["details"].items()}
merged["settings"]["families"] = [f for p in parts for f in p["settings"]["families"]]
merged["seconds_per_family"] = {p["settings"]["families"][0]: p["wall_seconds"] for p in parts}
merged.pop("wall_seconds", None)
merged.pop("seconds", None)
merged["commands"] = [
    f"python reproductions/ndp_cpu_run.py {family}" for family in sys.argv[1:]
] + [f"python reproductions/ndp_cpu_merge.py {' '.join(sys.argv[1:])}"]
with open("reproductions/ndp_results.json", "w") as f:
    json.dump(merged, f, indent=1)
print(json.dumps(merged["rows"], indent=1))
