"""Our squared and monotonic circuits against cirkit (PyPI ``libcirkit``), side by side.

Both libraries run in ONE process, on the SAME region graph (ours, converted node for node
into a cirkit ``RegionGraph``-shaped symbolic circuit), with the SAME parameters (ours
copied into cirkit through ``ConstantTensorInitializer``), the same ``K``, input layers
(Gaussian or categorical), CP layers ``y = W (a ∘ b)`` (cirkit's Hadamard-then-dense
layer, what its templates call ``"cp-t"``), float32 and the same batch. Before any timing,
each configuration checks that the two libraries give the same log-likelihoods.

Models (``R = 1`` replica, so both libraries square the same single circuit):

* ``mpc``  — ``MonotonicCircuit()``: ``log c(x) - log ∫ c``; cirkit: ``lse-sum`` semiring,
  ``W = exp(θ)``, ``Z`` by ``integrate(c)``.
* ``mpc2`` — ``MonotonicCircuit(squared=True)``: ``2 log c(x) - log ∫ c²``; cirkit:
  ``lse-sum``, ``Z`` by ``integrate(multiply(c, c))``.
* ``npc2`` — ``SquaredCircuit()``: real weights; cirkit: ``complex-lse-sum`` semiring (its
  way of carrying signs in log space), ``2 Re log c(x) - Re log ∫ c²``.

For the squared models cirkit evaluates ``c(x)`` once and doubles it (the cheap way,
not the product circuit ``c·c`` on the batch), so the data term costs the same algorithm
in both libraries; only ``Z`` goes through the squared circuit, in both libraries.

What is timed (median of ``--repeats`` after ``--warmup``; ours and cirkit alternate every
repeat so that load on the shared machine hits both alike):

* ``train``: zero_grad + forward + backward + ``torch.optim.Adam`` step on the exact NLL of
  the batch, ``Z`` recomputed every step (also for ``mpc``, as ``fit`` does);
* ``eval``: log-likelihood of the batch under ``torch.no_grad()``, ``Z`` included.

Ours is timed through ``model._log_prob`` (what ``fit``'s loss calls), not the public
``log_prob``, to leave out input validation that cirkit does not do.

Peak memory: each (library, model, K, mode) runs in a FRESH subprocess that builds the
model, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), records its resident
set size (RSS), runs 3 steps and reports ``VmHWM - RSS before the steps``. This is the
process's peak RSS growth (activations, gradients, Adam state, allocator slack), not exact
tensor bytes; PyTorch CPU tensors are
invisible to ``tracemalloc``, so it is not used.

Setup (a separate venv, because libcirkit 0.3.1 pins scipy ~= 1.14)::

    python -m venv /tmp/cirkit-venv
    /tmp/cirkit-venv/bin/pip install torch==2.13.0
    /tmp/cirkit-venv/bin/pip install libcirkit==0.3.1
    /tmp/cirkit-venv/bin/pip install scipy==1.14.1 numpy==2.2.6 pyro-ppl gpytorch arviz \\
        tqdm matplotlib safetensors
    /tmp/cirkit-venv/bin/pip install -e /work/main --no-deps

Reproduce (2-core machine; one thread)::

    timeout 3000 /tmp/cirkit-venv/bin/python benchmarks/circuits_vs_cirkit_bench.py \\
        --threads 1 --sizes 16 64 256 --out /tmp/circ_bench.json

Other runs reported: ``--graph quad --d 64`` (8x8 quad-tree), ``--input categorical
--states 8``, ``--threads 2`` (meaningless on an oversubscribed 2-core machine), each with
``--repeats 9 --budget 25``; ``--no-memory`` skips the memory subprocesses.
``--check-only`` runs just the equivalence checks (float64 and float32).

Before/after comparisons of our code: the benchmark imports ``bayesfn`` from the first
``PYTHONPATH`` entry that has it, so an older commit checked out with
``git worktree add /tmp/ref <commit>`` runs as
``PYTHONPATH=/tmp/ref /tmp/cirkit-venv/bin/python benchmarks/circuits_vs_cirkit_bench.py ...``
(the venv's editable install of /work/main comes after ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

import numpy as np
import torch

from bayesfn.circuits import MonotonicCircuit, RegionGraph, SquaredCircuit
from bayesfn.circuits.region_graph import quad_tree, random_binary_tree

MODELS = ("mpc", "mpc2", "npc2")


# ---------------------------------------------------------------- our side
def make_graph(name: str, d: int, seed: int) -> RegionGraph:
    """The region graph both libraries use: ``"random"`` (one random balanced binary tree
    over ``d`` variables) or ``"quad"`` (the structured quad-tree of a ``√d x √d`` image)."""
    if name == "random":
        return random_binary_tree(d, num_replicas=1, seed=seed)
    side = round(d**0.5)
    if side * side != d:
        raise ValueError(f"--graph quad needs a square number of variables; got d={d}")
    return quad_tree(side, side)


def make_data(n: int, d: int, input_kind: str, states: int, seed: int) -> torch.Tensor:
    """``(n, d)`` float data: standard normal, or uniform states ``0 .. states-1``."""
    g = torch.Generator().manual_seed(seed)
    if input_kind == "gaussian":
        return torch.randn(n, d, generator=g)
    return torch.randint(0, states, (n, d), generator=g).float()


def build_ours(
    model: str,
    k: int,
    graph: RegionGraph,
    x: torch.Tensor,
    input_kind: str,
    states: int,
    dtype: str,
):
    """Build and initialise one of our models on ``x`` (one Adam step of ``fit``)."""
    cls = SquaredCircuit if model == "npc2" else MonotonicCircuit
    # one data start for every model: the timed work is the same for any start, and the
    # recorded tables were measured from this one (NPC²'s default nested signed starts
    # cancel more in float32, so the float32 agreement check would test the start)
    kw = {"init": "data", "restarts": 1}
    if model != "npc2":
        kw["squared"] = model == "mpc2"
    extra = {"num_states": states} if input_kind == "categorical" else {}
    m = cls(k, region_graph=graph, input=input_kind, dtype=dtype, seed=0, **kw, **extra)
    return m.fit(x.numpy(), max_steps=1, progress_bar=False)


def ours_fns(m, x: torch.Tensor) -> tuple[Callable[[], None], Callable[[], torch.Tensor]]:
    """(train step, eval) closures for our model on the batch ``x``."""
    module = m.module_
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        loss = -m._log_prob(x).mean()
        loss.backward()
        opt.step()

    def evaluate() -> torch.Tensor:
        with torch.no_grad():
            return m._log_prob(x)

    return train, evaluate


# ---------------------------------------------------------------- cirkit side
def to_cirkit(m, np_dtype=np.float32):
    """A cirkit symbolic circuit computing exactly our ``m.module_``'s ``c(x)``.

    Each of our partitions ``(parent, left, right)`` becomes a Hadamard layer over the two
    children followed by a dense ``(K_out, K_in)`` sum layer holding our weights of that
    fold (``exp(θ)`` through an ``ExpParameter`` for monotonic circuits); each leaf region
    becomes a Gaussian (mean, ``exp(log σ)``), categorical (log-softmax of our logits) or,
    for NPC²'s signed tables, embedding layer with our values.
    """
    from cirkit.symbolic.circuit import Circuit
    from cirkit.symbolic.initializers import ConstantTensorInitializer
    from cirkit.symbolic.layers import (
        CategoricalLayer,
        EmbeddingLayer,
        GaussianLayer,
        HadamardLayer,
        SumLayer,
    )
    from cirkit.symbolic.parameters import (
        ExpParameter,
        LogSoftmaxParameter,
        Parameter,
        TensorParameter,
    )
    from cirkit.utils.scope import Scope

    def const(t: torch.Tensor, op=None):
        arr = t.detach().cpu().double().numpy().astype(np_dtype)
        tp = TensorParameter(*arr.shape, initializer=ConstantTensorInitializer(arr))
        return Parameter.from_input(tp) if op is None else Parameter.from_unary(op(arr.shape), tp)

    mod = m.module_
    g, k = mod.graph, mod.num_units
    if g.num_replicas != 1:
        raise ValueError("to_cirkit: only single-replica graphs (R = 1) are converted")
    inp = mod.inputs
    layers, ins, node = [], {}, {}
    for r in g.leaves:
        row = mod.leaf_slots[r]  # our input layer's row of leaf region r
        scope = Scope([g.scopes[r][0]])
        if hasattr(inp, "mu"):
            lay = GaussianLayer(
                scope,
                k,
                mean=const(inp.mu[row]),
                stddev=const(inp.log_sigma[row], ExpParameter),
            )
        elif getattr(inp, "signed", False):  # NPC²'s signed tables: cirkit's embeddings
            lay = EmbeddingLayer(
                scope, k, num_states=inp.coef.shape[-1], weight=const(inp.coef[row])
            )
        else:
            lay = CategoricalLayer(
                scope,
                k,
                num_categories=inp.logits.shape[-1],
                logits=const(inp.logits[row], LogSoftmaxParameter),
            )
        layers.append(lay)
        node[r] = lay
    heights = g.heights()
    for q in sorted(g.partitions, key=lambda q: heights[q[0]]):
        p, a, b = q
        li, f = mod.slots[q]
        w = mod.weight[li][f]  # (K_out, K_in)
        had = HadamardLayer(k, arity=2)
        op = ExpParameter if mod.weights_kind == "log" else None
        dense = SumLayer(k, w.shape[0], arity=1, weight=const(w, op))
        layers += [had, dense]
        ins[had] = [node[a], node[b]]
        ins[dense] = [had]
        node[p] = dense
    return Circuit(layers, ins, [node[g.root]])


def compile_cirkit(sc, model: str):
    """Compiled ``(c, Z-circuit)`` sharing parameters, folded and optimised (cirkit's
    defaults)."""
    from cirkit.pipeline import PipelineContext

    semiring = "complex-lse-sum" if model == "npc2" else "lse-sum"
    ctx = PipelineContext(backend="torch", semiring=semiring, fold=True, optimize=True)
    with ctx:
        c = ctx.compile(sc)
        z = ctx.integrate(ctx.multiply(c, c)) if model != "mpc" else ctx.integrate(c)
    return c, z


def cirkit_fns(c, z, model: str, x: torch.Tensor):
    """(train step, eval) closures for the compiled cirkit circuits on ``x``."""
    params = list({id(p): p for p in [*c.parameters(), *z.parameters()]}.values())
    opt = torch.optim.Adam(params, lr=1e-3)
    scale = 1.0 if model == "mpc" else 2.0

    def log_prob() -> torch.Tensor:
        # (B, 1, 1) outputs; complex under complex-lse-sum, where Re log c = log |c|
        return scale * c(x).real.reshape(-1) - z().real.reshape(())

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        loss = -log_prob().mean()
        loss.backward()
        opt.step()

    def evaluate() -> torch.Tensor:
        with torch.no_grad():
            return log_prob()

    return train, evaluate


# ---------------------------------------------------------------- checks and timing
def check_equal(
    model: str,
    k: int,
    graph: RegionGraph,
    x: torch.Tensor,
    input_kind: str,
    states: int,
    dtype: str,
) -> float:
    """Max |ours - cirkit| of the log-likelihoods of ``x`` for the same parameters."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == "float64" else torch.float32)
    try:
        xx = x.to(torch.get_default_dtype())
        m = build_ours(model, k, graph, xx, input_kind, states, dtype)
        if model == "npc2":  # make the weights signed so cancellations are exercised
            with torch.no_grad():
                for w in m.module_.weight:
                    w.sub_(0.5)
        c, z = compile_cirkit(to_cirkit(m, np.float64 if dtype == "float64" else np.float32), model)
        _, ours_eval = ours_fns(m, xx)
        _, theirs_eval = cirkit_fns(c, z, model, xx)
        a, b = ours_eval(), theirs_eval()
        if a.dtype != b.dtype:
            raise AssertionError(f"dtypes differ: ours {a.dtype}, cirkit {b.dtype}")
        return float((a - b).abs().max())
    finally:
        torch.set_default_dtype(old)


def time_pair(fa, fb, warmup: int, repeats: int, budget_s: float) -> tuple[float, float, int]:
    """Median seconds of ``fa`` and ``fb``, alternating; stops early past ``budget_s``."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    start = time.perf_counter()
    for i in range(repeats):
        for f, acc in ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta)):
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(ta) >= 3:
            break
    return statistics.median(ta), statistics.median(tb), len(ta)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(args) -> None:
    """Run in a fresh process: peak RSS growth of 3 steps of one configuration."""
    torch.set_num_threads(args.threads)
    graph = make_graph(args.graph, args.d, 0)
    x = make_data(args.batch, args.d, args.input, args.states, 0)
    m = build_ours(args.mem_model, args.mem_k, graph, x, args.input, args.states, "float32")
    if args.mem_lib == "ours":
        train, evaluate = ours_fns(m, x)
    else:
        c, z = compile_cirkit(to_cirkit(m), args.mem_model)
        train, evaluate = cirkit_fns(c, z, args.mem_model, x)
        del m
    fn = train if args.mem_mode == "train" else evaluate
    import gc

    gc.collect()
    # hand freed heap pages back to the OS, so that the steps cannot hide inside memory
    # that building left resident
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    # reset the kernel's peak-RSS mark (VmHWM) so that building the models does not count
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kb("VmRSS")
    for _ in range(3):
        fn()
    peak = _status_kb("VmHWM")
    print(json.dumps({"peak_delta_mb": (peak - base) / 1024, "base_mb": base / 1024}))


def measure_memory(args, lib: str, model: str, k: int, mode: str) -> float | None:
    cmd = [
        sys.executable, __file__, "--memory-child", "--mem-lib", lib, "--mem-model", model,
        "--mem-k", str(k), "--mem-mode", mode, "--threads", str(args.threads),
        "--graph", args.graph, "--d", str(args.d), "--batch", str(args.batch),
        "--input", args.input, "--states", str(args.states),
    ]  # fmt: skip
    try:
        # a fixed mmap threshold: every large tensor is its own mapping, returned on free,
        # so RSS follows the live tensors instead of glibc's heap high-water mark
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.mem_timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        print(f"  memory child failed ({lib} {model} K={k} {mode}): {out.stderr[-300:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_delta_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--graph", default="random", choices=("random", "quad"))
    ap.add_argument("--d", type=int, default=16, help="number of variables")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--input", default="gaussian", choices=("gaussian", "categorical"))
    ap.add_argument("--states", type=int, default=8, help="categories of categorical leaves")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--budget", type=float, default=40.0, help="seconds per timed pair")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--mem-timeout", type=float, default=300.0)
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mem-lib", help=argparse.SUPPRESS)
    ap.add_argument("--mem-model", help=argparse.SUPPRESS)
    ap.add_argument("--mem-k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mem-mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    graph = make_graph(args.graph, args.d, 0)
    print(
        f"torch {torch.__version__}, libcirkit {version('libcirkit')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"threads={args.threads}, graph={args.graph} d={args.d}, batch={args.batch}, "
        f"input={args.input}"
    )
    # equivalence on a tiny problem, float64 and float32, signed weights for npc2
    xs = make_data(64, args.d, args.input, args.states, 1)
    checks = {}
    for model in args.models:
        for dt in ("float64", "float32"):
            err = check_equal(model, 4, graph, xs, args.input, args.states, dt)
            checks[f"{model}/{dt}"] = err
            print(f"check {model} {dt}: max |ll_ours - ll_cirkit| = {err:.2e}")
        if checks[f"{model}/float64"] > 1e-9:
            raise AssertionError(f"{model}: libraries disagree in float64 ({checks})")
    if args.check_only:
        return
    x = make_data(args.batch, args.d, args.input, args.states, 0)
    rows = []
    for k in args.sizes:
        for model in args.models:
            m = build_ours(model, k, graph, x, args.input, args.states, "float32")
            c, z = compile_cirkit(to_cirkit(m), model)
            o_train, o_eval = ours_fns(m, x)
            c_train, c_eval = cirkit_fns(c, z, model, x)
            err32 = float((o_eval() - c_eval()).abs().max())
            row = {"model": model, "K": k, "max_abs_ll_diff_f32": err32}
            for mode, fa, fb in (("train", o_train, c_train), ("eval", o_eval, c_eval)):
                ta, tb, n = time_pair(fa, fb, args.warmup, args.repeats, args.budget)
                row[f"{mode}_ours_ms"], row[f"{mode}_cirkit_ms"] = 1e3 * ta, 1e3 * tb
                row[f"{mode}_speedup"] = tb / ta
                row[f"{mode}_n"] = n
            if not args.no_memory:
                for mode in ("train", "eval"):
                    for lib in ("ours", "cirkit"):
                        row[f"{mode}_{lib}_peak_mb"] = measure_memory(args, lib, model, k, mode)
            rows.append(row)
            print(json.dumps(row), flush=True)
            del m, c, z, o_train, o_eval, c_train, c_eval
    meta = {
        "torch": torch.__version__,
        "cirkit": version("libcirkit"),
        "argv": sys.argv,
        "checks": checks,
    }
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
