"""What a circuit training step dispatches, and what it costs on CPU: this checkout
against an earlier revision, side by side.

On a GPU a small circuit's training step is bound by how many kernels it launches and
how often the host waits for the device, not by arithmetic (``RESULTS.md``, issue 5:
16-33 ms per step on an H200 whatever K, against 4-5 ms for pyjuice). Neither can be
timed without a GPU, but both can be counted on CPU: every kernel a step launches on
CUDA is one ATen operator through the dispatcher here, and every host synchronisation
is an ``aten._local_scalar_dense`` (``.item()``, ``float(t)``, ``bool(t)``). Counts are
exact and machine-independent; the CPU milliseconds beside them are noise-prone (shared
2-core box) and are medians of alternating runs.

One step = one iteration of ``CircuitModel.fit`` (forward ``log f(x)``, ``log Z``,
backward, Adam), measured through the public API: ops per step are the ops of
``fit(max_steps=1 + n)`` minus those of ``fit(max_steps=1)``, divided by ``n``; CPU time
is the wall clock between a callback after the first step and one after the last.
Setup as ``kernels_circuit_bench.py``: random binary tree, d = 32, R = 2, categorical
leaves with 4 states, batch 512, float32, torch backend, 1 thread. ``--ks 2 --batch 2``
leaves almost no arithmetic: its CPU time is the step's per-operator floor, the part a GPU
cannot take over.

    python benchmarks/circuits_step_overhead.py --against 330ab22 --out overhead.md

``--against REV`` checks ``REV`` out into a temporary git worktree and runs the same
measurement there in a subprocess, alternating with this checkout ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(ks: list[int], steps: int, batch: int = 512) -> list[dict]:
    """Per (model, K): dispatched ops and host syncs per step, and CPU ms per step."""
    import collections

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
    from bayesfn.circuits.region_graph import random_binary_tree

    torch.set_num_threads(1)

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: collections.Counter = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    graph = random_binary_tree(32, num_replicas=2, seed=0)
    x = torch.randint(0, 4, (batch, 32), generator=torch.Generator().manual_seed(0)).float()
    rows = []
    for name, cls in (("MonotonicCircuit", MonotonicCircuit), ("SquaredCircuit", SquaredCircuit)):
        for k in ks:
            model = cls(k, region_graph=graph, input="categorical", num_states=4, dtype="float32")
            model.fit(x, max_steps=1, progress_bar=False)
            counts = []
            for n in (1, 1 + steps):
                with Count() as c:
                    model.fit(x, max_steps=n, warm_start=True, progress_bar=False)
                counts.append(c.ops)
            per_step = {op: (counts[1][op] - counts[0][op]) / steps for op in counts[1]}
            stamps: dict[int, float] = {}

            def clock(info, stamps=stamps) -> None:
                if info.step in (1, 1 + steps):
                    stamps[info.step] = time.perf_counter()

            model.fit(
                x, max_steps=1 + steps, warm_start=True, progress_bar=False, callbacks=[clock]
            )
            rows.append(
                {
                    "model": name,
                    "K": k,
                    "ops": sum(per_step.values()),
                    "syncs": per_step.get("_local_scalar_dense", 0.0),
                    "ms": 1e3 * (stamps[1 + steps] - stamps[1]) / steps,
                }
            )
    return rows


def _run(checkout: Path, ks: str, steps: int, batch: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--ks", ks]
    cmd += ["--steps", str(steps), "--batch", str(batch)]
    out = subprocess.run(cmd, env=env, cwd=checkout, capture_output=True, text=True, check=True)
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(reply["package"]).resolve().parents[1] != checkout.resolve():
        raise RuntimeError(f"measured {reply['package']}, not the checkout {checkout}")
    return reply["rows"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", help="git revision to compare with (e.g. a commit)")
    parser.add_argument("--ks", default="16,64", help="comma-separated K values")
    parser.add_argument("--steps", type=int, default=10, help="steps per measurement")
    parser.add_argument(
        "--batch", type=int, default=512, help="batch size (2 with K=2: the per-step floor)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--out", help="markdown file for the table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import bayesfn

        rows = measure([int(k) for k in args.ks.split(",")], args.steps, args.batch)
        print(json.dumps({"package": bayesfn.__file__, "rows": rows}))
        return 0

    sides = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            old = Path(tmp) / "against"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against],
                check=True,
                capture_output=True,
            )
            sides = {args.against: old, **sides}
        try:
            runs: dict[str, list[list[dict]]] = {s: [] for s in sides}
            for _ in range(args.rounds):
                for side, path in sides.items():
                    runs[side].append(_run(path, args.ks, args.steps, args.batch))
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                    check=False,
                    capture_output=True,
                )
    names = list(sides)
    lines = [
        "| model | K | " + " | ".join(f"{s}: ops / syncs / CPU ms" for s in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for i, row in enumerate(runs[names[0]][0]):
        cells = []
        for s in names:
            ms = statistics.median(r[i]["ms"] for r in runs[s])
            first = runs[s][0][i]
            cells.append(f"{first['ops']:.0f} / {first['syncs']:.0f} / {ms:.1f}")
        lines.append(f"| {row['model']} | {row['K']} | " + " | ".join(cells) + " |")
    if len(names) == 2:
        lines += ["", "| model | K | ops ratio (old / new) | CPU time ratio (old / new) |"]
        lines.append("|---|---|---|---|")
        for i, row in enumerate(runs[names[0]][0]):
            old_r, new_r = runs[names[0]][0][i], runs[names[1]][0][i]
            old_ms = statistics.median(r[i]["ms"] for r in runs[names[0]])
            new_ms = statistics.median(r[i]["ms"] for r in runs[names[1]])
            lines.append(
                f"| {row['model']} | {row['K']} | {old_r['ops'] / new_r['ops']:.2f} | "
                f"{old_ms / new_ms:.2f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
