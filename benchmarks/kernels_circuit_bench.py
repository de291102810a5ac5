"""Whole-circuit training-step benchmark: torch vs Triton kernels, and pyjuice.

One training step = what :meth:`bayesfn.circuits.CircuitModel.fit` does per iteration:
forward ``log f(x)`` on a batch, the exact ``log Z`` (the matrix pass for squared
circuits), the loss ``-mean(log f(x) - log Z)``, backward, and one Adam step. It is timed
through the public API: inside one ``fit(..., warm_start=True)`` call, a callback
synchronises CUDA and reads the clock after the warm-up steps and again ``n`` steps later
(so ``fit``'s per-call set-up and final diagnostics are not counted; the runs before this
stop's change counted them, spread over the ``n`` steps), for

* ``MonotonicCircuit`` and ``SquaredCircuit`` (NPC², real weights), categorical leaves,
  on one fixed region graph (:func:`bayesfn.circuits.region_graph.random_binary_tree`,
  ``d`` variables, ``R`` replicas, seed 0), float32;
* kernel backends ``"torch"`` (pure-torch reference: cuBLAS GEMMs plus elementwise
  passes), ``"triton"`` (every CP and squared-mode layer on the Triton kernels) and
  ``"auto"`` (Triton only where the layer benchmarks measured it faster); and ``"auto"``
  with ``fit(cuda_graph=True)``, which replays each step's forward and backward as one
  recorded CUDA graph (its training is first checked against eager training).

pyjuice (``--pyjuice``, needs the ``pyjuice`` package and CUDA): the *same* monotonic
circuit structure built with pyjuice's node API from the same region graph (categorical
inputs with ``K`` nodes per variable, ``multiply`` = element-wise product of the two
children, ``summate`` = dense ``K x K`` sum, root = one sum node over the ``R`` replica
products), trained the pyjuice way: ``init_param_flows``, forward, ``backward`` of the
mean log-likelihood (parameter flows) and ``mini_batch_em``. pyjuice keeps its weights
normalised, so it needs no ``log Z``, and its update is EM, not Adam: the comparison is
time per training step of the same circuit on the same batch, each library with its
own training algorithm.

Before timing, each model's Triton log-likelihoods and ``log Z`` are checked against the
torch backend on the same parameters (float32 tolerance) and the script exits non-zero
on a mismatch.

    PYTHONPATH=. python benchmarks/kernels_circuit_bench.py --out circuits.md [--pyjuice]

``--tiny`` runs tiny shapes on CPU under Triton's interpreter (tests).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _fit_step_time(model, x, steps: int, device, cuda_graph: bool = False) -> float:
    """Seconds per steady-state training step inside one ``model.fit`` call (warm start,
    no progress bar): the wall clock from the end of the warm-up steps (one eager step;
    with ``cuda_graph`` the two eager steps and the recorded one) to the end of ``steps``
    more, CUDA-synchronised at both ends by a callback."""
    warm = 3 if cuda_graph else 1
    stamps: dict[int, float] = {}

    def clock(info) -> None:
        if info.step in (warm, warm + steps):
            _sync(device)
            stamps[info.step] = time.perf_counter()

    model.fit(
        x,
        max_steps=warm + steps,
        warm_start=True,
        progress_bar=False,
        callbacks=[clock],
        cuda_graph=cuda_graph,
    )
    return (stamps[warm + steps] - stamps[warm]) / steps


def _graph_mismatch(model, x, steps: int = 6) -> str | None:
    """Train two copies of ``model`` from its current parameters, eagerly and with
    ``cuda_graph=True``: ``None`` when their losses and parameters agree to float32
    rounding, else what differs."""
    import copy

    import torch

    runs = []
    for graphed in (False, True):
        twin = copy.deepcopy(model)
        twin.fit(x, max_steps=steps, warm_start=True, progress_bar=False, cuda_graph=graphed)
        runs.append((torch.tensor(twin.fit_result_.losses), list(twin.module_.parameters())))
    (l0, p0), (l1, p1) = runs
    if not torch.allclose(l0, l1, rtol=1e-4, atol=1e-5):
        return f"losses eager {l0.tolist()} vs graph {l1.tolist()}"
    for a, b in zip(p0, p1, strict=True):
        if not torch.allclose(a, b, rtol=1e-3, atol=1e-5):
            return f"parameters differ by {float((a - b).abs().max()):.2e}"
    return None


def _pyjuice_circuit(graph, k: int, num_states: int):
    """The monotonic circuit of ``graph`` in pyjuice's node API (see the module doc)."""
    import pyjuice as juice
    from pyjuice.nodes import distributions as dists

    bs = min(k, 64)
    children: dict[int, list] = {}
    for parent, left, right in graph.partitions:
        children.setdefault(parent, []).append((left, right))
    memo: dict[int, object] = {}
    with juice.set_block_size(bs):

        def region(r: int):
            if r in memo:
                return memo[r]
            if r not in children:  # leaf region: one variable
                (v,) = graph.scopes[r]
                ns = juice.inputs(v, num_node_blocks=k // bs, dist=dists.Categorical(num_states))
            else:
                (left, right), *rest = children[r]
                if rest:
                    raise ValueError("only the root may have several partitions here")
                ns = juice.summate(
                    juice.multiply(region(left), region(right)), num_node_blocks=k // bs
                )
            memo[r] = ns
            return ns

        prods = [juice.multiply(region(a), region(b)) for a, b in children[graph.root]]
        return juice.summate(*prods, num_node_blocks=1, block_size=1)


def _pyjuice_step_time(graph, k, num_states, x, steps, device, limit) -> tuple[float, float]:
    """(seconds per pyjuice training step, compile seconds); ``TimeoutError`` after
    ``limit`` seconds (pyjuice's compilation runs in pure Python without numba)."""
    import signal

    import pyjuice as juice

    def stop(signum, frame):
        raise TimeoutError(f"pyjuice took over {limit:.0f} s")

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(limit)))
    try:
        return _pyjuice_run(juice, graph, k, num_states, x, steps, device)
    finally:
        signal.alarm(0)


def _pyjuice_run(juice, graph, k, num_states, x, steps, device) -> tuple[float, float]:
    t0 = time.perf_counter()
    pc = juice.compile(_pyjuice_circuit(graph, k, num_states))
    pc.to(device)
    compile_s = time.perf_counter() - t0
    xl = x.long()

    def step():
        pc.init_param_flows(flows_memory=0.0)
        lls = pc(xl)
        lls.mean().backward()
        pc.mini_batch_em(step_size=0.1, pseudocount=0.01)

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / steps, compile_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="markdown file for the tables")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (interpreter)")
    parser.add_argument("--ks", default="16,64,256,1024", help="comma-separated K values")
    parser.add_argument("--d", type=int, default=32, help="number of variables")
    parser.add_argument("--replicas", type=int, default=2, help="R")
    parser.add_argument("--batch", type=int, default=512, help="training batch size")
    parser.add_argument("--states", type=int, default=4, help="categorical states")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--pyjuice", action="store_true", help="also time pyjuice")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds; then skip")
    parser.add_argument(
        "--pyjuice-budget", type=float, default=60.0, help="extra seconds for pyjuice"
    )
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        if not args.tiny:
            print("no CUDA GPU: run with --tiny to exercise the code path on CPU", file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"
    import triton  # noqa: F401

    from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
    from bayesfn.circuits.region_graph import random_binary_tree
    from bayesfn.kernels import use_backend

    device = torch.device("cuda" if cuda else "cpu")
    card = torch.cuda.get_device_name(device) if cuda else "CPU (Triton interpreter)"
    ks = [4] if args.tiny else [int(k) for k in args.ks.split(",")]
    d, reps, batch = (4, 2, 6) if args.tiny else (args.d, args.replicas, args.batch)
    steps = 1 if args.tiny else args.steps
    graph = random_binary_tree(d, num_replicas=reps, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.states, (batch, d), generator=g).float().to(device)
    t_start = time.perf_counter()
    failures: list[str] = []
    lines = [
        f"# Circuit training step on {card}",
        "",
        f"torch {torch.__version__}, triton {sys.modules['triton'].__version__}; float32; "
        f"random balanced binary region graph, d = {d}, R = {reps} replicas, categorical "
        f"leaves ({args.states} states), batch {batch}; ms per step (forward, log Z, "
        f"backward, Adam), mean of {steps} steady-state steps inside one fit call. "
        "'graph' = backend auto with fit(cuda_graph=True): the step's forward and "
        "backward replayed as one CUDA graph (checked against eager training first).",
        "",
        "| model | K | params | torch ms | triton ms | auto ms | graph ms | triton speed-up "
        "| auto speed-up | graph speed-up | max abs. diff log p (triton vs torch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    kinds = (("MonotonicCircuit", MonotonicCircuit), ("SquaredCircuit", SquaredCircuit))
    mono_ms: dict[int, dict[str, float]] = {}
    for (name, cls), k in [(kd, k) for k in ks for kd in kinds]:
        if time.perf_counter() - t_start > args.budget:
            lines.append(f"| {name} | {k} | skipped: time budget | | | | | | | | |")
            continue
        try:
            model = cls(
                k,
                region_graph=graph,
                input="categorical",
                num_states=args.states,
                dtype="float32",
                device=str(device),
            )
            with use_backend("torch"):
                model.fit(x, max_steps=1, progress_bar=False)
                ref = model.log_prob(x)
            with use_backend("triton"):
                got = model.log_prob(x)
            diff = float((got - ref).abs().max())
            tol = 1e-2 if k >= 256 else 1e-3  # float32, depth log2(d) of log-space sums
            if not diff <= tol:
                failures.append(f"{name} K={k}: triton log p differs from torch by {diff:.2e}")
            ms = {}
            for backend in ("torch", "triton", "auto"):
                with use_backend(backend):
                    ms[backend] = 1e3 * _fit_step_time(model, x, steps, device)
            ms["graph"] = math.nan
            if cuda:
                try:  # a failed recording must not cost the remaining rows
                    with use_backend("auto"):
                        bad = _graph_mismatch(model, x)
                        if bad is None:
                            ms["graph"] = 1e3 * _fit_step_time(model, x, steps, device, True)
                except RuntimeError as err:
                    bad = f"{type(err).__name__}: {str(err)[:300]}"
                if bad is not None:
                    failures.append(f"{name} K={k}: cuda_graph training: {bad}")
            n_par = sum(p.numel() for p in model.module_.parameters())
            if cls is MonotonicCircuit:
                mono_ms[k] = ms
            lines.append(
                f"| {name} | {k} | {n_par} | {ms['torch']:.2f} | {ms['triton']:.2f} | "
                f"{ms['auto']:.2f} | {ms['graph']:.2f} | {ms['torch'] / ms['triton']:.2f}x | "
                f"{ms['torch'] / ms['auto']:.2f}x | {ms['torch'] / ms['graph']:.2f}x | "
                f"{diff:.1e} |"
            )
        except torch.OutOfMemoryError:
            lines.append(f"| {name} | {k} | out of memory | | | | | | | | |")
        print(lines[-1], flush=True)
        model = None
        if cuda:
            torch.cuda.empty_cache()

    if args.pyjuice:
        lines += [
            "",
            "## Monotonic circuit: bayesfn vs pyjuice (same structure, same batch)",
            "",
            "| K | bayesfn torch ms | bayesfn triton ms | bayesfn auto ms | bayesfn graph ms "
            "| pyjuice ms | pyjuice compile s | pyjuice / bayesfn-auto | pyjuice / bayesfn-graph |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        try:
            import importlib.metadata

            import pyjuice  # noqa: F401

            lines.insert(-4, f"pyjuice {importlib.metadata.version('pyjuice')}")
            lines.insert(-4, "")
        except Exception as err:
            lines.append(f"pyjuice unavailable: {type(err).__name__}: {err}")
            ks_pj = []
        else:
            ks_pj = ks
        for k in ks_pj:
            if time.perf_counter() - t_start > args.budget + args.pyjuice_budget:
                lines.append(f"| {k} | skipped: time budget | | | | | | | |")
                continue
            if k not in mono_ms:
                lines.append(f"| {k} | no bayesfn timing | | | | | | | |")
                continue
            try:
                ms = mono_ms[k]
                left = args.budget + args.pyjuice_budget - (time.perf_counter() - t_start)
                pj_s, pj_compile = _pyjuice_step_time(graph, k, args.states, x, steps, device, left)
                lines.append(
                    f"| {k} | {ms['torch']:.2f} | {ms['triton']:.2f} | {ms['auto']:.2f} | "
                    f"{ms['graph']:.2f} | {1e3 * pj_s:.2f} | {pj_compile:.1f} | "
                    f"{1e3 * pj_s / ms['auto']:.2f} | {1e3 * pj_s / ms['graph']:.2f} |"
                )
            except Exception as err:
                msg = f"failed: {type(err).__name__}: {str(err)[:120]}"
                lines.append(f"| {k} | {msg} | | | | | | | |")
            print(lines[-1], flush=True)

    lines += ["", f"wall time {time.perf_counter() - t_start:.0f} s"]
    if failures:
        lines += ["", "## MISMATCHES", "", *[f"- {m}" for m in failures]]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
