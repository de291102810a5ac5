#!/usr/bin/env bash
# One GPU run for issue 5 (Triton kernels): float64 correctness checks of every Triton path
# against the torch reference first (inside each benchmark, which refuses to time a path
# that failed), then the benchmarks; markdown tables go to OUT_DIR.
#
#   bash benchmarks/kernels_device_run.sh OUT_DIR          # on the GPU machine
#   bash benchmarks/kernels_device_run.sh OUT_DIR --tiny   # CPU, Triton interpreter
#
# pyjuice (for the monotonic-circuit comparison) is installed offline from the wheels in
# build/pyjuice/ (pyjuice, tqdm; numba + llvmlite in build/pyjuice/numba/) when they are
# there. If numba cannot be imported, pyjuice runs with a stand-in whose njit returns the
# plain Python function (only pyjuice's compile step uses numba; its kernels are Triton),
# and matplotlib, imported only by pyjuice.visualize, gets an empty stand-in when absent.
# Exit status: non-zero when any correctness check failed.
set -u
out=${1:?usage: kernels_device_run.sh OUT_DIR [--tiny]}
tiny=${2:-}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
        || echo "no nvidia-smi"
    python3 -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, \
'numpy', numpy.__version__)"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

pj=""
if [ -z "$tiny" ] && ls build/pyjuice/pyjuice-*.whl > /dev/null 2>&1; then
    log="$out/pyjuice_install.txt"
    python3 -m pip install -q --no-index --no-deps build/pyjuice/pyjuice-*.whl >> "$log" 2>&1
    python3 -c "import tqdm" 2> /dev/null \
        || python3 -m pip install -q --no-index --no-deps build/pyjuice/tqdm-*.whl >> "$log" 2>&1
    python3 -c "import numba" 2> /dev/null \
        || python3 -m pip install -q --no-index --no-deps build/pyjuice/numba/*.whl >> "$log" 2>&1
    stubs=$(mktemp -d)
    if ! python3 -c "import numba" >> "$log" 2>&1; then
        mkdir -p "$stubs/numba"
        printf '%s\n' "def njit(*args, **kwargs):" \
            "    if len(args) == 1 and callable(args[0]) and not kwargs:" \
            "        return args[0]" \
            "    return lambda fn: fn" "jit = njit" "prange = range" \
            > "$stubs/numba/__init__.py"
        echo "numba: NOT importable; pure-Python stand-in for njit" >> "$log"
    fi
    if ! python3 -c "import matplotlib.pyplot" 2> /dev/null; then
        mkdir -p "$stubs/matplotlib" && touch "$stubs/matplotlib/__init__.py" \
            "$stubs/matplotlib/pyplot.py"
        echo "matplotlib: absent; empty stand-in" >> "$log"
    fi
    export PYTHONPATH="$PYTHONPATH:$stubs"
    python3 -c "import pyjuice, numba; print('pyjuice import ok; numba', \
getattr(numba, '__version__', 'stand-in'))" >> "$log" 2>&1
    cat "$log"
    pj="--pyjuice"
fi

status=0
run() {  # run NAME SECONDS CMD...: keep going after a failure, remember it
    local name=$1 secs=$2
    shift 2
    echo "=== $name"
    timeout "$secs" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$out/$name.log"
    echo "=== $name: exit $rc"
    [ $rc -eq 0 ] || status=1
}
if [ -n "$tiny" ]; then
    run sq 300 python3 benchmarks/kernels_sq_bench.py --tiny --out "$out/sq.md"
    run cp 300 python3 benchmarks/kernels_cp_bench.py --tiny --methods fused,gemm --no-sq \
        --out "$out/cp.md"
    run circuits 300 python3 benchmarks/kernels_circuit_bench.py --tiny --out "$out/circuits.md"
else
    # the whole-circuit step first: eager, CUDA graph and pyjuice are what issue 5 still
    # has to show; the layer benchmarks after it only re-measure earlier rows
    run circuits 200 python3 benchmarks/kernels_circuit_bench.py $pj --ks 16,64,256,1024 \
        --steps 20 --budget 110 --pyjuice-budget 60 --out "$out/circuits.md"
    run sq 60 python3 benchmarks/kernels_sq_bench.py --budget 40 --out "$out/sq.md"
    run cp 35 python3 benchmarks/kernels_cp_bench.py --ks 256,1024 --modes monotonic \
        --methods fused,gemm --no-sq --budget 20 --out "$out/cp.md"
fi
echo "device run: exit $status"
exit $status
