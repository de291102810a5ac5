#!/usr/bin/env bash
# The `cpu` preset of `bayesfn reproduce funcprior`, one part (or UCI set) per process so
# that a finished part survives a later failure (a part whose results.json exists is not
# rerun); then one merged results file of the parts that finished.
# Run from the repository root: bash reproductions/funcprior_cpu.sh [OUT]
set -euo pipefail
OUT=${1:-results/funcprior_cpu}
export BAYESFN_DATA=${BAYESFN_DATA:-../shared/data}
run() {  # run <folder> <python keyword arguments of funcprior.run>
  if [ -f "$OUT/$1/results.json" ]; then return; fi
  python - "$OUT/$1" <<PY
import sys, torch
torch.set_num_threads(1)
from bayesfn.reproduce import funcprior
from bayesfn.reproduce.results import write_results
res = funcprior.run(scale="cpu", seeds=[0], out=sys.argv[1], $2)
print(write_results(res, sys.argv[1]), res["seconds"])
PY
}
run toy 'parts=("toy",)'
run uci_boston 'parts=("uci",), datasets=["boston"]'
run classification 'parts=("classification",)'
run uci_concrete 'parts=("uci",), datasets=["concrete"]'
run uci_energy 'parts=("uci",), datasets=["energy"]'
# not run in the recorded session (out of time): yacht
bayesfn reproduce funcprior --merge "$OUT"/toy "$OUT"/uci_* "$OUT"/classification --out "$OUT"
