"""Does holding out part of ``X`` (``fit(x, holdout=h)``) stop NPC² from overfitting, and
what does it cost where NPC² did not overfit?

Issue 16 asks that the default NPC² (``SquaredCircuit(K)``) be never worse than MPC
(``MonotonicCircuit(K)``) at equal ``K`` on average. With ``fit(x)`` training on all of
``x`` (no hold-out, the default until this study), three spline-leaf rows of
``benchmarks/npc2_init_rates.py`` fail it by overfitting: NPC² is above MPC on the
training data and below it on held-out data (``benchmarks/npc2_banana_spline_check.py``).
A hold-out (a random share ``h`` of ``x`` as validation data: it scores the restarts and
the checks and stops the fit early) is the usual remedy; it also takes ``h`` of the data
away from training, which could cost the rows that did not overfit, and the rings, where
NPC² has to find a subtractive solution.

For each configuration of ``benchmarks/npc2_init_rates.py`` (same data draw, same held-out
test points, same seeds) this fits NPC² and MPC with their defaults and ``holdout=h``
(``--holdout``), seed by seed, alternating which model runs first, and writes every run
as it ends. ``--merge`` puts these runs beside the same seeds' runs without a hold-out
(read from ``benchmarks/npc2_init_rates.json``, the final code's ``after`` and ``MPC``
runs; identical code paths, since ``holdout=None`` is the fit before this option) and
writes a table: per configuration and hold-out, the mean held-out log-likelihood of NPC²
and MPC (over their seeds: the stored MPC runs of the last three rings have 10), their
paired difference (mean ± standard error over the seeds both have), and the share of NPC²
seeds within 0.05 nats of the best NPC² run of the configuration (any method of either
file, any hold-out).

Commands (one torch thread per process; ``benchmarks/npc2_holdout.json`` and ``.md``
came from these)::

    S=benchmarks/npc2_holdout.py; O=benchmarks/npc2_holdout_runs
    python $S --holdout 0.1 --part 0/2 --out $O/h10_0.json &
    python $S --holdout 0.1 --part 1/2 --out $O/h10_1.json &
    wait
    python $S --holdout 0.1 --only "nltcs bernoulli K=4" --out $O/h10_nltcs.json
    python $S --merge $O/h10_0.json $O/h10_1.json $O/h10_nltcs.json \
        --out benchmarks/npc2_holdout.json

``--check SEEDS --out benchmarks/npc2_holdout_check.json`` refits the first ``SEEDS``
seeds of every configuration without a hold-out and with ``holdout=0.1``, side by side
in one process, and reports per configuration the largest difference from the stored
runs of the same seeds (the reuse of the no-hold-out runs assumes they agree) and the
wall time of the two NPC² fits (the stored runs' times come from other loads and are not
compared).

``--small-n 60 100 200 --seeds 10 --out benchmarks/npc2_holdout_small_n.json`` trains
NPC² and MPC of a ring (Gaussian leaves, K=2) and of banana (spline leaves, K=4) on the
first ``n`` training points, with and without the hold-out (which then holds out 6-20
points), scored on the same 2000 test points.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch
from npc2_init_rates import CONFIGS, TOLERANCE, _data, run_config  # benchmarks/ is its folder

from bayesfn.circuits import MonotonicCircuit, SquaredCircuit

STORED = Path(__file__).resolve().parent / "npc2_init_rates.json"
NAMES = [n for n in CONFIGS if not n.startswith("nltcs")]  # the 2-D sets and the rings
SEEDS = 20


def run(names: list[str], holdout: float | None, seeds: int, first: int, out: str) -> list:
    results: list[dict[str, Any]] = []
    for name in names:
        t = time.perf_counter()
        done = list(results)
        r = run_config(
            name,
            ("after", "MPC"),
            on_seed=lambda p, d=done: _write(out, d + [p], holdout),
            first_seed=first,
            seeds=seeds,
            fit_extra={"holdout": holdout},
        )
        results.append(r)
        _write(out, results, holdout)
        print(f"{name} holdout {holdout}: {time.perf_counter() - t:.0f} s", flush=True)
    return results


def _write(out: str, results: list, holdout: float | None) -> None:
    meta = {
        "command": "python benchmarks/npc2_holdout.py (see its docstring)",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), shared",
        "torch": torch.__version__,
        "holdout": holdout,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))


def _stored() -> dict[str, dict[str, list[dict]]]:
    """The no-hold-out runs of the final code, by configuration and model."""
    rows = json.loads(STORED.read_text())["results"]
    return {
        r["config"]: {"NPC2": r["runs"].get("after", []), "MPC": r["runs"].get("MPC", [])}
        for r in rows
    }


def merge(files: list[str], out: str) -> dict:
    """Pool the run files with the stored no-hold-out runs and write ``out`` (+ ``.md``)."""
    runs: dict[str, dict[str, dict[str, dict[int, dict]]]] = {}
    for name, by_model in _stored().items():
        for model, vs in by_model.items():
            cell = runs.setdefault(name, {}).setdefault("none", {}).setdefault(model, {})
            cell.update({v["seed"]: v for v in vs})
    for f in files:
        payload = json.loads(Path(f).read_text())
        h = payload["meta"]["holdout"]
        key = "none" if h is None else str(h)
        for r in payload["results"]:
            for method, model in (("after", "NPC2"), ("MPC", "MPC")):
                cell = runs.setdefault(r["config"], {}).setdefault(key, {}).setdefault(model, {})
                cell.update({v["seed"]: v for v in r["runs"].get(method, [])})
    stored_best = {r["config"]: r["best NPC2"] for r in json.loads(STORED.read_text())["summary"]}
    rows = []
    for name in CONFIGS:
        if name not in runs or len(runs[name]) < 2:
            continue
        best = max(
            [stored_best.get(name, -math.inf)]
            + [v["test"] for cell in runs[name].values() for v in cell.get("NPC2", {}).values()]
        )
        for key, cell in runs[name].items():
            npc, mpc = cell.get("NPC2", {}), cell.get("MPC", {})
            paired = sorted(set(npc) & set(mpc))
            diffs = [npc[s]["test"] - mpc[s]["test"] for s in paired]
            rows.append(
                {
                    "config": name,
                    "holdout": key,
                    "seeds NPC2": len(npc),
                    "seeds MPC": len(mpc),
                    "seeds paired": len(paired),
                    "mean NPC2": _mean([v["test"] for v in npc.values()]),
                    "mean MPC": _mean([v["test"] for v in mpc.values()]),
                    "NPC2 - MPC": _mean(diffs),
                    "NPC2 - MPC s.e.": _se(diffs),
                    "best NPC2": best,
                    "reached": _mean([v["test"] >= best - TOLERANCE for v in npc.values()]),
                    # wall seconds under each run's own load: the no-hold-out runs ran
                    # under heavier load; --check times the two side by side
                    "seconds NPC2": _mean([v["seconds"] for v in npc.values()]),
                    "seconds MPC": _mean([v["seconds"] for v in mpc.values()]),
                }
            )
    payload = {
        "meta": {
            "command": "python benchmarks/npc2_holdout.py --merge FILES (see its docstring)",
            "tolerance_nats": TOLERANCE,
            "no_holdout_runs": str(STORED.name),
        },
        "summary": rows,
        "runs": {
            name: {k: {m: list(c.values()) for m, c in cell.items()} for k, cell in v.items()}
            for name, v in runs.items()
        },
    }
    Path(out).write_text(json.dumps(payload, indent=1) + "\n")
    Path(out).with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))
    return payload


def _mean(vals: list) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def _se(vals: list[float]) -> float:
    if len(vals) < 2:
        return math.nan
    m = _mean(vals)
    return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1) / len(vals))


def markdown(rows: list[dict]) -> str:
    head = (
        "| configuration | hold-out | seeds NPC² / MPC | mean NPC² | mean MPC "
        "| NPC² − MPC, paired (± s.e.) | reached |\n|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['config']} | {r['holdout']} | {r['seeds NPC2']} / {r['seeds MPC']} "
        f"| {r['mean NPC2']:.3f} | {r['mean MPC']:.3f} "
        f"| {r['NPC2 - MPC']:+.3f} ± {r['NPC2 - MPC s.e.']:.3f} "
        f"| {100 * r['reached']:.0f} % |\n"
        for r in rows
    )
    return head + body


def check(seeds: int, out: str) -> dict:
    """Refit ``seeds`` seeds of every configuration without a hold-out and with
    ``holdout=0.1``, side by side (alternating which runs first), and compare each with
    the stored run of the same seed (the no-hold-out runs of ``npc2_init_rates.json``, the
    ``0.1`` runs of ``npc2_holdout_runs/``): the largest absolute difference, and the wall
    time of the two fits, per configuration."""
    stored = _stored()
    runs_dir = Path(__file__).resolve().parent / "npc2_holdout_runs"
    h10: dict[str, dict[str, dict[int, float]]] = {}
    for f in sorted(runs_dir.glob("h10_*.json")):
        for r in json.loads(f.read_text())["results"]:
            for method in ("after", "MPC"):
                cell = h10.setdefault(r["config"], {}).setdefault(method, {})
                cell.update({v["seed"]: v["test"] for v in r["runs"].get(method, [])})
    rows = []
    for i, name in enumerate(NAMES):
        order = (None, 0.1) if i % 2 == 0 else (0.1, None)
        got = {
            h: run_config(name, ("after", "MPC"), seeds=seeds, fit_extra={"holdout": h})
            for h in order
        }
        worst, seconds = 0.0, {}
        for h, r in got.items():
            for method, model in (("after", "NPC2"), ("MPC", "MPC")):
                if h is None:
                    old = {v["seed"]: v["test"] for v in stored[name][model]}
                else:
                    old = h10.get(name, {}).get(method, {})
                for v in r["runs"][method]:
                    if v["seed"] in old:
                        worst = max(worst, abs(v["test"] - old[v["seed"]]))
            seconds[str(h)] = sum(v["seconds"] for v in r["runs"]["after"])
        rows.append(
            {
                "config": name,
                "largest difference from the stored runs": worst,
                "NPC2 seconds, no hold-out": seconds["None"],
                "NPC2 seconds, holdout 0.1": seconds["0.1"],
            }
        )
        print(rows[-1], flush=True)
    payload = {
        "meta": {
            "command": f"python benchmarks/npc2_holdout.py --check {seeds}",
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), shared",
            "seeds": list(range(seeds)),
        },
        "rows": rows,
        "time ratio (holdout 0.1 / none), NPC2": sum(r["NPC2 seconds, holdout 0.1"] for r in rows)
        / sum(r["NPC2 seconds, no hold-out"] for r in rows),
    }
    Path(out).write_text(json.dumps(payload, indent=1) + "\n")
    return payload


SMALL = ("ring r=1 noise=0.1", "banana spline K=4")


def small_n(sizes: list[int], seeds: int, out: str) -> dict:
    """NPC² and MPC of two configurations trained on the first ``n`` points of their
    training draw, with ``holdout=0.1`` and without, scored on the same held-out test
    points: what the hold-out does where it holds out few points."""
    rows = []
    for name in SMALL:
        cfg = CONFIGS[name]
        x_all, test = _data(cfg["data"])
        settings = {"input": cfg.get("input", "gaussian")}
        for n in sizes:
            x = x_all[:n]
            for cls, label in ((SquaredCircuit, "NPC2"), (MonotonicCircuit, "MPC")):
                vals: dict[str, list[float]] = {"none": [], "0.1": []}
                for seed in range(seeds):
                    for h in (None, 0.1) if seed % 2 == 0 else (0.1, None):
                        model = cls(cfg["k"], seed=seed, **settings)
                        model.fit(x, holdout=h, progress_bar=False)
                        with torch.no_grad():
                            ll = model.log_prob(test)
                        # spline leaves are zero outside the knots of these n points
                        ll = ll[torch.isfinite(ll)]
                        vals[str(h) if h else "none"].append(float(ll.mean()))
                diffs = [a - b for a, b in zip(vals["0.1"], vals["none"], strict=True)]
                rows.append(
                    {
                        "config": name,
                        "n": n,
                        "model": label,
                        "mean none": _mean(vals["none"]),
                        "mean holdout 0.1": _mean(vals["0.1"]),
                        "holdout - none": _mean(diffs),
                        "holdout - none s.e.": _se(diffs),
                        "runs": vals,
                    }
                )
                r = rows[-1]
                print(
                    f"{name} n={n} {label}: none {r['mean none']:.3f}, 0.1 "
                    f"{r['mean holdout 0.1']:.3f} ({r['holdout - none']:+.3f} ± "
                    f"{r['holdout - none s.e.']:.3f})",
                    flush=True,
                )
    payload = {
        "meta": {
            "command": f"python benchmarks/npc2_holdout.py --small-n {' '.join(map(str, sizes))}"
            f" --seeds {seeds} --out {out}",
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), shared",
            "note": "test points outside a spline model's knots (set by its n training "
            "points) are left out of its mean",
        },
        "rows": rows,
    }
    Path(out).write_text(json.dumps(payload, indent=1) + "\n")
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", type=float, help="the share of x held out")
    parser.add_argument("--part", default="0/1", help="i/n: every n-th configuration")
    parser.add_argument("--only", nargs="*", help="configuration names to run")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--merge", nargs="*", help="run files to merge into --out")
    parser.add_argument("--check", type=int, metavar="SEEDS")
    parser.add_argument("--small-n", type=int, nargs="*", metavar="N")
    parser.add_argument("--out", default="benchmarks/npc2_holdout.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.merge:
        merge(args.merge, args.out)
        return
    if args.check:
        check(args.check, args.out)
        return
    if args.small_n:
        small_n(args.small_n, args.seeds, args.out)
        return
    if args.holdout is None:
        parser.error("give --holdout H (a share in (0, 0.5]), --merge or --check")
    i, n = (int(v) for v in args.part.split("/"))
    names = args.only or NAMES[i::n]
    run(names, args.holdout, args.seeds, args.first_seed, args.out)


if __name__ == "__main__":
    main()
