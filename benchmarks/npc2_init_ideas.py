"""Diagnostics behind NPC²'s default start (issue 16): why the previous default missed the
best solution on the thick ring and on two rings at K=2, and what fixed it.

Three measurements on the two ring configurations of ``npc2_init_rates.py`` that the
previous default (commit 9d9071a) failed most (``"ring r=1 noise=0.25"``, 85 %; ``"two
rings r=1,2 noise=0.15 K=2"``, 15 %), each start run alone, full batch, Adam lr 0.01:

- ``trajectories``: the four starts ``fit`` tries (``init="auto"``: start ``r`` of seed
  ``s`` is seeded ``s + 100003 r``, nested for even ``r``, data for odd ``r``), with the
  nested starts *unbalanced* as in the previous default (lowest-layer weights of
  magnitude ``U(0.5, 1)``: the narrow unit 4x the wide one's height per unit of weight),
  for ``--steps`` steps; the training log-likelihood at steps 100 ... 3000 and the
  held-out one at the end. From these: whether picking the best start after a trial of
  ``T`` steps reaches the best, for ``T`` = 250 ... 2000;
- ``balance``: the two nested starts of each seed, unbalanced against balanced (the
  current ``"centred"``: weight of unit ``i`` times ``s_i² / s_0²``), 1000 steps;
- ``from-mpc``: NPC² started from a fitted ``MonotonicCircuit(2)`` (its leaves, its
  weights ``exp(θ)`` plus ``N(0, (0.5 mean|w|)²)`` signed noise), 1000 + 1000 steps.

Each line of output is one JSON record. Commands (the numbers in RESULTS.md; one torch
thread each, on the shared 2-core machine)::

    python benchmarks/npc2_init_ideas.py trajectories --seeds 0 3 11 14 15 \\
        --config "ring r=1 noise=0.25" --steps 3000
    python benchmarks/npc2_init_ideas.py trajectories --seeds 0 1 2 3 4 \\
        --config "two rings r=1,2 noise=0.15 K=2" --steps 3000
    python benchmarks/npc2_init_ideas.py balance --seeds 0 1 2 3 4 11 14 15  # both configurations
    python benchmarks/npc2_init_ideas.py from-mpc --seeds 0 1 2 3

(seeds 11, 14 and 15 of the thick ring are three of the previous default's failures.)
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from npc2_init_rates import CONFIGS, _data

from bayesfn.circuits import MonotonicCircuit, SquaredCircuit

IDEAS = ("ring r=1 noise=0.25", "two rings r=1,2 noise=0.15 K=2")
CHECKS = (100, 250, 500, 1000, 2000, 3000)


def _start(k: int, x: torch.Tensor, seed: int, r: int, *, balanced: bool) -> SquaredCircuit:
    """Start ``r`` of seed ``seed`` as ``fit`` draws it, nested ones balanced or not."""
    init = "centred" if r % 2 == 0 else "data"
    model = SquaredCircuit(k, init=init, restarts=1, seed=seed + 100_003 * r)
    model.fit(x, max_steps=0, progress_bar=False)
    if init == "centred" and not balanced:
        scales = torch.logspace(0.0, math.log10(0.5), k, dtype=torch.float64)
        with torch.no_grad():  # undo the balance: magnitudes back to the U(0.5, 1) draw
            model.module_.weight[0].div_((scales / scales[0]).to(x) ** 2)
    return model


def _run(model, x, test, steps: int, seed: int) -> dict:
    traj: dict[int, float] = {}

    def record(info) -> None:
        if info.step in CHECKS:
            traj[info.step] = -info.loss

    t = time.perf_counter()
    model.fit(
        x, max_steps=steps, seed=seed, callbacks=(record,), warm_start=True, progress_bar=False
    )
    with torch.no_grad():
        held_out = float(model.log_prob(test).mean())
    return {"train": traj, "test": held_out, "seconds": time.perf_counter() - t}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("trajectories", "balance", "from-mpc"))
    parser.add_argument("--config", nargs="*", default=list(IDEAS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.config:
        x, test = _data(CONFIGS[name]["data"])
        k = CONFIGS[name]["k"]
        for seed in args.seeds:
            if args.what == "trajectories":
                for r in range(4):
                    model = _start(k, x, seed, r, balanced=False)
                    out = _run(model, x, test, args.steps, seed)
                    print(json.dumps({"config": name, "seed": seed, "start": r, **out}))
            elif args.what == "balance":
                for r in (0, 2):
                    for balanced in (False, True):
                        model = _start(k, x, seed, r, balanced=balanced)
                        out = _run(model, x, test, args.steps, seed)
                        rec = {"config": name, "seed": seed, "start": r, "balanced": balanced}
                        print(json.dumps({**rec, **out}))
            else:
                mpc = MonotonicCircuit(k, seed=seed).fit(x, max_steps=1000, progress_bar=False)
                npc = SquaredCircuit(k, seed=seed, init="data", restarts=1)
                npc.fit(x, max_steps=0, progress_bar=False)
                g = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    npc.module_.inputs.load_state_dict(mpc.module_.inputs.state_dict())
                    for wn, wm in zip(npc.module_.weight, mpc.module_.weight, strict=True):
                        base = wm.exp()
                        noise = torch.randn(base.shape, generator=g, dtype=base.dtype)
                        wn.copy_(base + 0.5 * base.abs().mean() * noise)
                out = _run(npc, x, test, 1000, seed)
                with torch.no_grad():
                    ll_mpc = float(mpc.log_prob(test).mean())
                print(json.dumps({"config": name, "seed": seed, "mpc": ll_mpc, **out}))


if __name__ == "__main__":
    main()
