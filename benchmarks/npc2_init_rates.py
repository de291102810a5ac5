"""How often the default fit of a squared circuit (NPC²) reaches its best solution.

For each configuration (a data set, a leaf family, ``K``) the script fits, over seeds:

- ``before``: ``SquaredCircuit(K, init="data", restarts=1).fit(x)``, the default fit before
  ``init=`` / ``restarts=`` existed (leaf means at random data points, ``U(0, 1)``
  weights, one start);
- ``after``: ``SquaredCircuit(K).fit(x)``, today's default (``init="auto"``,
  ``restarts=4``: two nested height-balanced sign-alternating starts and two data starts,
  a quarter of ``max_steps`` each, scored at their best training-likelihood check; the
  best continues);
- ``previous default`` (read from ``benchmarks/npc2_init_rates_previous.json``, the
  ``after`` runs of commit 9d9071a): the same but with unbalanced nested starts (the
  narrow unit 2-8x higher than the wide one at the data mean) and trials scored at their
  last step;
- ``MPC``: ``MonotonicCircuit(K).fit(x)`` at the same ``K``;
- references for the best NPC² solution, each on a few seeds: ``long Adam`` (the new
  default with 3x the steps; 2x for the 2-D and DEBD sets), ``L-BFGS`` (rings only: full
  batch, strong Wolfe, from ``"centred"`` and ``"data"`` starts) and, for Gaussian K=2
  rings, the hand-set subtractive start
  (:func:`bayesfn.reproduce.circuits.subtractive_ring_init`) followed by long Adam.

Every fit sees the same data of its configuration (one fixed draw: training, and a
held-out test set); seeds change only the initialisation. A seed *reaches* the best when
its held-out mean log-likelihood is within 0.05 nats of the best held-out value of any
NPC² run of that configuration (all methods, all seeds, all merged files). The default
fit is called as a user would, ``fit(x)`` with no validation set (its restarts are then
picked on the training likelihood). Wall times are per fit, ``before`` and ``after``
alternating in order from seed to seed in one process, at one torch thread. Spline
leaves are zero outside their knots (the training range padded by 10 %), so spline rows
average over the held-out points inside the knots (the same points for every model of
the row); ``test_points_outside_support`` in the JSON counts the others.

Commands (benchmarks/npc2_init_rates.json, .md and the RESULTS.md section came from
these processes run side by side at one torch thread each, then merged)::

    names=("ring r=1 noise=0.1" "ring r=1 noise=0.25" "ring r=0.5 noise=0.05"
           "ring r=3 noise=0.5 at (4,-2)" "two rings r=1,2 noise=0.15 K=2"
           "two rings r=1,2 noise=0.15 K=4")
    for i in 0 1 2 3 4 5; do
        # seeds 0-9: before / after / MPC side by side (these were started with 20 seeds
        # and stopped after seed 9); seeds 10-19: after only
        python benchmarks/npc2_init_rates.py --only "${names[$i]}" --seeds 10 \
            --methods before after MPC --out /tmp/npc2_rings_$i.json &
        python benchmarks/npc2_init_rates.py --only "${names[$i]}" --first-seed 10 \
            --seeds 10 --methods after --out /tmp/npc2_rings_b_$i.json &
    done
    for i in 0 1 2; do  # the 2-D sets and nltcs: after, MPC and the long-Adam reference
        python benchmarks/npc2_init_rates.py --skip-rings --part $i/3 --seeds 6 \
            --methods after MPC refs --out /tmp/npc2_toy_$i.json &
    done  # stopped at the deadline: the seeds in the table
    python benchmarks/npc2_init_rates.py --only "banana gaussian K=4" --methods after \
        --first-seed 3 --seeds 1 --out /tmp/npc2_fix_e.json
    python benchmarks/npc2_init_rates.py --merge benchmarks/npc2_init_rates_previous.json \
        /tmp/npc2_rings_*.json /tmp/npc2_toy_*.json /tmp/npc2_fix_*.json \
        /tmp/npc2_final_*.json --out benchmarks/npc2_init_rates.json

The merge pools each method's runs by seed (a later file's run of a seed replaces an
earlier one, kept in the JSON as ``"<method>, earlier run"``). The ``after`` runs of
``/tmp/npc2_rings_*.json`` ran beside ``before`` for the time ratio and were then
replaced by a rerun of all twenty seeds with the final code (the fit returning to its
kept start when the continued run ends below that start's trial), as follows, merged
last::

    for i in 0 1 2 3 4 5; do for f in 0 10; do
        python benchmarks/npc2_init_rates.py --only "${names[$i]}" --methods after \
            --first-seed $f --seeds 10 --out /tmp/npc2_final_${i}_$f.json &
    done; done

``before`` and ``MPC`` of ring seeds 10-19 (first three rings only) come from the previous
file, as do the ring reference runs (long Adam, L-BFGS, hand-set; run with the code of
commit 9d9071a or earlier, whose long Adam and centred L-BFGS starts were unbalanced).
The previous file's ``before`` runs predate the best training-likelihood check: on seeds
0-9, where both exist, 4 of 60 differ (late Adam spikes the check now undoes); MPC runs
agree. The time ratio and s/fit use only the seeds whose ``before`` and ``after`` ran in
one process.

The 2-D rows and nltcs were then rerun with the final code (``after`` and ``MPC``; the
earlier ``after`` runs of the same seeds, which predate the return to the kept start, stay
in the JSON as ``"after, earlier run"``), and ``refs`` (one long-Adam fit) run for the
rows that had no earlier NPC² runs. Unlike the earlier /tmp files, these per-run files
are committed in ``benchmarks/npc2_runs/``, and the merge starts from the record as
commit 6d11e9b left it (a merged JSON read back keeps its runs' ``"file"`` ids and
earlier runs, so re-merging it alone reproduces it)::

    S=benchmarks/npc2_init_rates.py; O=benchmarks/npc2_runs
    for k in 2 4 8; do for set in banana spiral; do  # seeds 0-19
        python $S --only "$set gaussian K=$k" --seeds 20 --methods after MPC \
            --out $O/${set}_gaussian_k$k.json
    done; done  # spiral K=8 ran as --seeds 5 (_k8.json) and --first-seed 5 --seeds 15 (_k8_b)
    for k in 2 4 8; do  # spiral spline: seeds 0-4 with the reference, then 5-9, 10-19
        python $S --only "spiral spline K=$k" --seeds 5 --methods after MPC refs \
            --out $O/spiral_spline_k$k.json
        python $S --only "spiral spline K=$k" --first-seed 5 --seeds 5 --methods after MPC \
            --out $O/spiral_spline_k${k}_b.json
        python $S --only "spiral spline K=$k" --first-seed 10 --seeds 10 --methods after MPC \
            --out $O/spiral_spline_k${k}_c.json
    done
    python $S --only "banana spline K=8" --seeds 5 --methods after MPC refs \
        --out $O/banana_spline_k8.json  # then --first-seed 5 --seeds 5 (_b), 10 / 10 (_c)
    for k in 2 4; do  # seeds 0-9, then 10-19
        python $S --only "banana spline K=$k" --seeds 10 --methods after MPC \
            --out $O/banana_spline_k$k.json
        python $S --only "banana spline K=$k" --first-seed 10 --seeds 10 --methods after MPC \
            --out $O/banana_spline_k${k}_b.json
    done
    python $S --only "nltcs bernoulli K=4" --seeds 5 --methods after MPC --out $O/nltcs_k4.json
    python $S --only "nltcs bernoulli K=4" --first-seed 5 --seeds 15 --methods after MPC \
        --out $O/nltcs_k4_b.json
    git show 6d11e9b:benchmarks/npc2_init_rates.json > /tmp/npc2_record_6d11e9b.json
    python $S --merge /tmp/npc2_record_6d11e9b.json $O/*.json \
        --out benchmarks/npc2_init_rates.json

(two processes at a time, one torch thread each). Why banana with spline leaves averages
below MPC at K=4 and K=8 is measured by ``benchmarks/npc2_banana_spline_check.py``.

nltcs ``before`` (the old single start) was then run on all twenty seeds (it had 2), to
test whether the restarts cost nltcs at 300 steps (they do not: -7.372 against -7.378)::

    python $S --only "nltcs bernoulli K=4" --seeds 20 --methods before \
        --out $O/nltcs_k4_before.json
    cp benchmarks/npc2_init_rates.json /tmp/npc2_record_prev.json
    python $S --merge /tmp/npc2_record_prev.json $O/nltcs_k4_before.json \
        --out benchmarks/npc2_init_rates.json

**Every run in ``npc2_init_rates.json`` trained on all of ``x``**: they predate
``fit(holdout="auto")``, which since then holds out 10 % of ``x`` for validation when no
validation set is given, so ``after`` and ``MPC`` run today mean the same models with that
hold-out. ``benchmarks/npc2_holdout.py`` reruns every configuration with it (20 seeds)
and sets the two side by side; it reads this file's runs as its no-hold-out column.

``--quick`` runs 2 seeds of two ring configurations (a check that the script works).
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

from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
from bayesfn.data import load_debd, sample_rings_nd, sample_toy2d
from bayesfn.reproduce.circuits import subtractive_ring_init

TOLERANCE = 0.05  # nats of held-out mean log-likelihood
STEPS = 1000  # the fit's default max_steps

# name -> settings; "seeds" for before / after / MPC, "ref_seeds" for long Adam and
# hand-set starts, "lbfgs" L-BFGS starts
CONFIGS: dict[str, dict[str, Any]] = {
    "ring r=1 noise=0.1": {"data": ("ring", (1.0,), 0.1, (0.0, 0.0)), "k": 2},
    "ring r=1 noise=0.25": {"data": ("ring", (1.0,), 0.25, (0.0, 0.0)), "k": 2},
    "ring r=0.5 noise=0.05": {"data": ("ring", (0.5,), 0.05, (0.0, 0.0)), "k": 2},
    "ring r=3 noise=0.5 at (4,-2)": {"data": ("ring", (3.0,), 0.5, (4.0, -2.0)), "k": 2},
    "two rings r=1,2 noise=0.15 K=2": {"data": ("ring", (1.0, 2.0), 0.15, (0.0, 0.0)), "k": 2},
    "two rings r=1,2 noise=0.15 K=4": {"data": ("ring", (1.0, 2.0), 0.15, (0.0, 0.0)), "k": 4},
}
# the 2-D sets: Gaussian and spline leaves at K = 2, 4, 8
for _set in ("banana", "spiral"):
    for _leaf in ("gaussian", "spline"):
        for _k in (2, 4, 8):
            CONFIGS[f"{_set} {_leaf} K={_k}"] = {
                "data": ("toy", _set),
                "k": _k,
                "input": _leaf,
                "seeds": 10,
                "ref_seeds": 1,
                "lbfgs": 0,
                "long": 2,
            }
CONFIGS["nltcs bernoulli K=4"] = {
    "data": ("debd", "nltcs"),
    "k": 4,
    "input": "bernoulli",
    "seeds": 2,
    "ref_seeds": 1,
    "lbfgs": 0,
    "long": 2,
    "fit": {"batch_size": 512, "max_steps": 300},
}
_DEFAULTS = {
    "seeds": 20,
    "ref_seeds": 2,
    "lbfgs": 3,
    "long": 3,
    "input": "gaussian",
    "num_replicas": 1,
}


def _data(spec: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Training ``(n, d)`` and held-out test ``(m, d)`` data of a configuration."""
    g = torch.Generator().manual_seed(2024)
    if spec[0] == "ring":
        _, radii, noise, shift = spec
        x = sample_rings_nd(3000, 2, radii=radii, noise=noise, generator=g)
        x = x + torch.tensor(shift, dtype=x.dtype)
        return x[:1000], x[1000:]
    if spec[0] == "toy":
        x = sample_toy2d(spec[1], 3000, generator=g)
        return x[:1000], x[1000:]
    data = load_debd(spec[1], dtype=torch.float64)
    return data.train, data.test


def _settings(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"input": cfg["input"], "num_replicas": cfg["num_replicas"]}


def _timed_fit(model, x, **fit) -> tuple[Any, float]:
    t = time.perf_counter()
    model.fit(x, progress_bar=False, **fit)
    return model, time.perf_counter() - t


def lbfgs_polish(model, x: torch.Tensor) -> None:
    """Full-batch L-BFGS (strong Wolfe, 400 iterations) on the training NLL of a fitted
    circuit, in place, from its current parameters."""
    opt = torch.optim.LBFGS(
        list(model.module_.parameters()),
        lr=1,
        max_iter=400,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
    )

    def closure():
        opt.zero_grad()
        loss = -model._log_prob(x).mean()
        loss.backward()
        return loss

    opt.step(closure)


def _lbfgs(cfg, x, start: int) -> Any:
    """Full-batch L-BFGS from a single ``"centred"`` (even start) or ``"data"`` start."""
    init = "centred" if start % 2 == 0 else "data"
    model = SquaredCircuit(cfg["k"], init=init, restarts=1, seed=start, **_settings(cfg))
    model.fit(x, max_steps=0, progress_bar=False)
    lbfgs_polish(model, x)
    return model


def run_config(
    name: str,
    methods: tuple[str, ...] = ("before", "after", "MPC", "refs"),
    on_seed=None,
    first_seed: int = 0,
    seeds: int | None = None,
    fit_extra: dict[str, Any] | None = None,
) -> dict:
    """Fit ``methods`` (``"refs"``: the reference runs) on configuration ``name`` for
    seeds ``first_seed, ..., first_seed + seeds - 1`` (``seeds``: the configuration's
    count unless given); ``on_seed(partial_result)`` after each seed (to save partial
    results). ``fit_extra``: more ``fit`` arguments for the ``before`` / ``after`` /
    ``MPC`` fits (not the references), e.g. ``{"holdout": 0.1}``."""
    cfg = {**_DEFAULTS, **CONFIGS[name]}
    if seeds is not None:
        cfg["seeds"] = seeds
    x, test = _data(cfg["data"])
    fit = {"max_steps": STEPS, **cfg.get("fit", {})}
    fit_runs = {**fit, **(fit_extra or {})}
    k, settings = cfg["k"], _settings(cfg)
    runs: dict[str, list[dict[str, float]]] = {
        m: [] for m in ("before", "after", "MPC") if m in methods
    }

    # spline leaves are zero outside their knots (the training range padded by 10 %):
    # held-out points past them have log-likelihood -inf under every spline model of the
    # configuration (the knots depend on the training data only), so the score averages
    # over the held-out points inside the knots and the result says how many were left out
    inside = torch.ones(test.shape[0], dtype=torch.bool)
    if cfg["input"] == "spline":
        probe = SquaredCircuit(k, restarts=1, **settings).fit(x, max_steps=0, progress_bar=False)
        leaves = probe.module_.inputs
        p, m = leaves.degree, leaves.num_bases
        for leaf, var in enumerate(leaves.variables.tolist()):
            lo = float(leaves.t0[leaf] + p * leaves.h[leaf])
            hi = float(leaves.t0[leaf] + m * leaves.h[leaf])
            inside &= (test[:, var] > lo) & (test[:, var] < hi)
    scored = test[inside]

    def score(model) -> float:
        with torch.no_grad():
            ll = float(model.log_prob(scored).mean())
        return ll if math.isfinite(ll) else -math.inf

    for seed in range(first_seed, first_seed + cfg["seeds"]):
        order = ("before", "after") if seed % 2 == 0 else ("after", "before")
        for method in (m for m in order if m in methods):
            extra = {"init": "data", "restarts": 1} if method == "before" else {}
            model, wall = _timed_fit(
                SquaredCircuit(k, seed=seed, **settings, **extra), x, **fit_runs
            )
            runs[method].append({"seed": seed, "test": score(model), "seconds": wall})
        if "MPC" in methods:
            model, wall = _timed_fit(MonotonicCircuit(k, seed=seed, **settings), x, **fit_runs)
            runs["MPC"].append({"seed": seed, "test": score(model), "seconds": wall})
        if on_seed is not None:
            on_seed({"config": name, "runs": runs, "refs": {}})
    refs: dict[str, list[float]] = {"long Adam": [], "L-BFGS": [], "hand-set": []}
    if "refs" not in methods:
        cfg = {**cfg, "ref_seeds": 0, "lbfgs": 0}
    long_fit = {**fit, "max_steps": cfg["long"] * fit["max_steps"]}
    for seed in range(cfg["ref_seeds"]):
        model, _ = _timed_fit(SquaredCircuit(k, seed=100 + seed, **settings), x, **long_fit)
        refs["long Adam"].append(score(model))
        if cfg["data"][0] == "ring" and k == 2 and cfg["input"] == "gaussian":
            model = SquaredCircuit(k, seed=seed, init="data", restarts=1, **settings)
            model.fit(x, max_steps=0, progress_bar=False)
            subtractive_ring_init(model, x)
            model.fit(x, warm_start=True, progress_bar=False, **long_fit)
            refs["hand-set"].append(score(model))
    for start in range(cfg["lbfgs"]):
        try:
            refs["L-BFGS"].append(score(_lbfgs(cfg, x, start)))
        except (FloatingPointError, RuntimeError):
            refs["L-BFGS"].append(-math.inf)
    return {
        "config": name,
        "settings": {**cfg, "data": list(cfg["data"])},
        "runs": runs,
        "refs": refs,
        "test_points_scored": int(inside.sum()),
        "test_points_outside_support": int((~inside).sum()),
    }


def _combine(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per configuration: the runs of a method are pooled by seed, a later
    file's run of a seed replacing an earlier file's (each run keeps ``"file"``, its
    file's index, so that the time ratio uses only seeds whose ``before`` and ``after``
    ran side by side in one process); the reference runs of all files are pooled (the data
    of a configuration are the same draw in every run)."""
    by: dict[str, dict[str, Any]] = {}
    # runs read back from an earlier merged JSON keep their "file" (and its earlier runs
    # stay earlier runs), so that merging that JSON with new files keeps who ran beside
    # whom; the other runs are numbered after the largest "file" already there
    base = 1 + max(
        (run["file"] for r in results for v in r["runs"].values() for run in v if "file" in run),
        default=-1,
    )
    for index, r in enumerate(results):
        name = r["config"]
        if name not in by:
            by[name] = {**r, "runs": {}, "refs": {}}
        old = by[name]
        for key in ("test_points_scored", "test_points_outside_support"):
            if key in r:
                old[key] = r[key]
        for m, v in r["runs"].items():
            if m.endswith(", earlier run"):
                earlier = {run["seed"]: run for run in old["runs"].get(m, [])}
                earlier.update({run["seed"]: run for run in v})
                old["runs"][m] = [earlier[seed] for seed in sorted(earlier)]
                continue
            pooled = {run["seed"]: run for run in old["runs"].get(m, [])}
            earlier = {run["seed"]: run for run in old["runs"].get(f"{m}, earlier run", [])}
            for run in v:
                if run["seed"] in pooled:
                    earlier[run["seed"]] = pooled[run["seed"]]
                pooled[run["seed"]] = {**run, "file": run.get("file", base + index)}
            old["runs"][m] = [pooled[seed] for seed in sorted(pooled)]
            if earlier:
                old["runs"][f"{m}, earlier run"] = [earlier[seed] for seed in sorted(earlier)]
        for m, v in r["refs"].items():
            old["refs"][m] = old["refs"].get(m, []) + v
    return list(by.values())


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        npc = [
            v["test"]
            for m, vs in r["runs"].items()
            if m.startswith(("before", "after", "previous"))
            for v in vs
        ]
        best = max(npc + [v for vs in r["refs"].values() for v in vs])

        def rate(method: str, r=r, best=best) -> float:
            vals = [v["test"] for v in r["runs"].get(method, [])]
            return sum(v >= best - TOLERANCE for v in vals) / len(vals) if vals else math.nan

        def mean(method: str, key: str = "test", r=r) -> float:
            vals = [v[key] for v in r["runs"].get(method, [])]
            return sum(vals) / len(vals) if vals else math.nan

        rows.append(
            {
                "config": r["config"],
                "seeds": len(r["runs"].get("after", [])),
                "seeds before": len(r["runs"].get("before", [])),
                "best NPC2": best,
                "best reference": {m: max(v) if v else None for m, v in r["refs"].items()},
                "rate before": rate("before"),
                "rate after": rate("after"),
                "seeds previous default": len(r["runs"].get("previous default", [])),
                "rate previous default": rate("previous default"),
                "mean before": mean("before"),
                "mean after": mean("after"),
                "mean MPC": mean("MPC"),
                # wall seconds per fit over the seeds timed side by side
                "seconds before": _pair_mean(r, 0),
                "seconds after": _pair_mean(r, 1),
                "seeds timed side by side": len(_side_by_side(r)),
                "time ratio": _time_ratio(r),
            }
        )
    return rows


def _side_by_side(r: dict[str, Any]) -> list[tuple[float, float]]:
    """``(before, after)`` wall seconds of the seeds whose two fits ran in one process
    (the ``after`` fit of a seed may be one a later file replaced)."""
    before = {v["seed"]: v for v in r["runs"].get("before", [])}
    pairs = {}
    for v in r["runs"].get("after, earlier run", []) + r["runs"].get("after", []):
        b = before.get(v["seed"])
        if b is not None and b.get("file") == v.get("file"):
            pairs[v["seed"]] = (b["seconds"], v["seconds"])
    return [pairs[seed] for seed in sorted(pairs)]


def _pair_mean(r: dict[str, Any], which: int) -> float:
    pairs = _side_by_side(r)
    return sum(p[which] for p in pairs) / len(pairs) if pairs else math.nan


def _time_ratio(r: dict[str, Any]) -> float:
    pairs = _side_by_side(r)
    if not pairs:
        return math.nan
    return sum(a for _, a in pairs) / sum(b for b, _ in pairs)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| configuration | seeds | best NPC² | reached before | reached previous default "
        "(seeds) | reached after | mean before | mean after | mean MPC | s/fit before "
        "| s/fit after | time ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )

    def pct(v: float) -> str:
        return "–" if math.isnan(v) else f"{100 * v:.0f} %"

    lines = [
        f"| {r['config']} | {r['seeds']} | {r['best NPC2']:.3f} | {pct(r['rate before'])} "
        f"| {pct(r['rate previous default'])} ({r['seeds previous default']}) "
        f"| {pct(r['rate after'])} | {r['mean before']:.3f} | {r['mean after']:.3f} "
        f"| {r['mean MPC']:.3f} | {r['seconds before']:.1f} | {r['seconds after']:.1f} "
        f"| {r['time ratio']:.2f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="0/1", help="i/n: run every n-th configuration")
    parser.add_argument("--only", nargs="*", help="configuration names to run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only-rings", action="store_true")
    parser.add_argument(
        "--methods", nargs="*", default=["before", "after", "MPC", "refs"], help="what to fit"
    )
    parser.add_argument("--seeds", type=int, help="override the seeds of before/after/MPC")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed to run")
    parser.add_argument("--skip-rings", action="store_true")
    parser.add_argument("--merge", nargs="*", help="part files to merge into --out")
    parser.add_argument("--out", default="benchmarks/npc2_init_rates.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.merge:
        results = _combine(
            [r for p in args.merge for r in json.loads(Path(p).read_text())["results"]]
        )
        order = list(CONFIGS)
        results.sort(key=lambda r: order.index(r["config"]) if r["config"] in order else 99)
    else:
        i, n = (int(v) for v in args.part.split("/"))
        names = [
            c
            for c in CONFIGS
            if not (args.only_rings and CONFIGS[c]["data"][0] != "ring")
            and not (args.skip_rings and CONFIGS[c]["data"][0] == "ring")
        ]
        names = args.only or names[i::n]
        if args.quick:
            for name in ("ring r=1 noise=0.25", "two rings r=1,2 noise=0.15 K=4"):
                CONFIGS[name].update(seeds=2, ref_seeds=1, lbfgs=1)
            names = ["ring r=1 noise=0.25", "two rings r=1,2 noise=0.15 K=4"]
        if args.seeds:
            for name in names:
                CONFIGS[name]["seeds"] = args.seeds
        results = []
        for name in names:
            t = time.perf_counter()
            done = list(results)
            results.append(
                run_config(
                    name,
                    tuple(args.methods),
                    on_seed=lambda p, d=done: _write(args.out, d + [p]),
                    first_seed=args.first_seed,
                )
            )
            _write(args.out, results)
            rows = summarise(results[-1:])
            print(markdown(rows).splitlines()[-1], f"({time.perf_counter() - t:.0f} s)", flush=True)
            _write(args.out, results)
    _write(args.out, results)
    print(markdown(summarise(results)))


def _write(out: str, results: list[dict[str, Any]]) -> None:
    meta = {
        "command": "python benchmarks/npc2_init_rates.py (see its docstring)",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), shared",
        "torch": torch.__version__,
        "tolerance_nats": TOLERANCE,
    }
    summary = summarise(results)
    payload = {"meta": meta, "summary": summary, "results": results}
    Path(out).write_text(json.dumps(payload, indent=1, default=float))
    Path(out).with_suffix(".md").write_text(markdown(summary))


if __name__ == "__main__":
    main()
