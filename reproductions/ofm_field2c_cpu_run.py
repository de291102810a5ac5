"""The two-channel field of row group (d) of ``bayesfn reproduce ofm`` at the ``cpu``
preset, alone (the other rows of the preset are in ``ofm_results.json``):

    python reproductions/ofm_field2c_cpu_run.py     # -> reproductions/ofm_field2c_results.json

``bayesfn reproduce ofm --scale cpu`` runs the same function among all rows.
"""

import json
import time
from pathlib import Path

import torch

from bayesfn.reproduce import ofm
from bayesfn.reproduce.results import make_results

torch.set_num_threads(1)
SEED = 0
start = time.perf_counter()
cfg = ofm.SCALES["cpu"]
rows = ofm.field_2c(cfg, SEED, "cpu")
results = make_results(
    ofm.PAPER,
    "cpu",
    [SEED],
    rows,
    config={"net": cfg["net"], "lr": cfg["lr"], "batch": cfg["batch"], "field2c": cfg["field2c"]},
    seconds=round(time.perf_counter() - start, 1),
    notes="(d) multi-channel: f1 = g1, f2 = 0.6 g1 + 0.8 g2 with g1, g2 independent "
    "Matern-3/2 fields (lengthscales 0.4 and 0.15) on a square grid over [0, 1]^2; one FNO "
    "with two channels, the paper's Matern-1/2 reference (lengthscale 0.01, independent "
    "channels). 'reference' is the Monte Carlo floor: the same errors for as many exact "
    "draws (the analytic correlation 0.6 for the correlation row).",
    commands=["python reproductions/ofm_field2c_cpu_run.py"],
)
Path("reproductions/ofm_field2c_results.json").write_text(json.dumps(results, indent=1) + "\n")
print(json.dumps(rows, indent=1))
