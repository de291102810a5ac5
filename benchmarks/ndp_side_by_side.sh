#!/usr/bin/env bash
# NDP training and RePaint throughput, ours against the official JAX code, side by side with
# alternating order, on one core and on all cores; then the cost of our exact likelihood.
# Usage: bash benchmarks/ndp_side_by_side.sh <official checkout> <python of the jax 0.4.13 venv>
# (see benchmarks/ndp_official_jax_bench.py for the venv); run from the repository root with
# the project's environment active.
set -u
OFFICIAL=${1:?path of the official checkout}
JAXPY=${2:?python of the jax venv}
export PYTHONPATH=$PWD
J="$JAXPY benchmarks/ndp_official_jax_bench.py --official $OFFICIAL --repeats 3"
T="python benchmarks/ndp_bench.py --no-likelihood --repeats 3"
ONE="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
for round in 1 2; do
  echo "== round $round, 1 core"
  if [ "$round" = 1 ]; then
    OMP_NUM_THREADS=1 taskset -c 0 $T --threads 1 2>&1 | tail -1
    XLA_FLAGS="$ONE" taskset -c 0 $J 2>&1 | tail -1
  else
    XLA_FLAGS="$ONE" taskset -c 0 $J 2>&1 | tail -1
    OMP_NUM_THREADS=1 taskset -c 0 $T --threads 1 2>&1 | tail -1
  fi
  echo "== round $round, all cores"
  if [ "$round" = 1 ]; then
    $J 2>&1 | tail -1
    $T --threads "$(nproc)" 2>&1 | tail -1
  else
    $T --threads "$(nproc)" 2>&1 | tail -1
    $J 2>&1 | tail -1
  fi
done
echo "== likelihood cost (ours, 1 thread, 4 tasks of 55 points)"
OMP_NUM_THREADS=1 python benchmarks/ndp_bench.py --threads 1 --repeats 1 --ll-tasks 4 2>&1 | tail -1
