"""DEBD to convergence (issue 16, item 4): MPC and NPC² at K=16, R=4 without the 400 s
cap of ``bayesfn reproduce circuits``, beside HCLT.

One run per call, one JSON per run::

    python reproductions/circuits_debd_converge_run.py run SET MODEL SEED \
        [--patience EPOCHS] [--max-epochs 5000] [--deadline-utc 21:22]
    python reproductions/circuits_debd_converge_run.py merge
    python reproductions/circuits_debd_converge_run.py time [--epochs 2] [--sets ...]

``run`` fits one (set, model, seed) and writes
``reproductions/circuits_debd_converge/<set>_<model>_seed<seed>.json`` as soon as it ends;
``merge`` joins every run file into ``reproductions/circuits_debd_converge_results.json``
(rows: mean and spread of the test log-likelihood over the seeds that ran, HCLT under
``reference``; ``runs``: every run's record). ``time`` measures the CPU seconds per epoch
of every (set, model) (after one warm-up step, ``--epochs`` epochs with the per-epoch
validation check), to plan and cost runs, and writes
``circuits_debd_converge/epoch_cost.json``.

The model is the reproduction's DEBD circuit (``bayesfn.reproduce.circuits``: random
binary trees, K=16 units, R=4 replicas, Bernoulli leaves, float32, one data-driven start,
``init="data", restarts=1``), trained with its recipe (Adam, lr 5e-3, batch 512) on the
full training split. Convergence: the validation log-likelihood is checked once per
epoch; the fit stops after ``--patience`` epochs without improvement and keeps the best
epoch's parameters (the reproduction's rule, counted in epochs), or at ``--max-epochs``
(a safety bound). The patience is 100 epochs on every set and model. An earlier rule
(25 epochs, at least 200 Adam steps; its runs are kept in ``circuits_debd_converge/patience25/``,
not merged) stopped NPC² on plants early: its validation curve drops by 0.5-1.2 nats
between consecutive epochs, so 2 of 3 seeds stopped on a dip near epoch 75 (-16.4 and
-17.1), while with patience 100 the same seeds passed -13.6 by epoch 580. A first pair of
nltcs runs with patience 10 (``circuits_debd_converge/patience10/``, not merged) stopped
MPC on a plateau: its validation curve improves in steps after plateaus of 10-20 epochs.
Every run checkpoints every 10 epochs to ``circuits_debd_converge/checkpoints/<run>/``
(parameters, Adam state, best epoch, curve: :func:`bayesfn.training.optimize`'s exact
resume), and the same command resumes it there: a run cut by the deadline or a crash
goes on in a later session from its last checkpoint, its CPU and wall seconds summed over
the sessions (``segments`` in its record). ``kill -TERM`` ends a run the same way as the
deadline (it can then be resumed). The checkpoint is removed when the run ends.
``--deadline-utc HH:MM`` stops a fit at that wall-clock time (UTC) instead; such a run is
recorded with ``"converged": false`` and its test log-likelihood at the best epoch so far
(its checkpoint stays, for the run to be resumed).

Each record holds the epochs and steps run, the best validation epoch, CPU seconds
(``time.process_time``, this process, one torch thread) and wall seconds, the CPU seconds
per epoch, the validation curve (one value per epoch) and the test log-likelihood (mean
per example, nats). Timings come from the shared 2-core development machine under load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

from bayesfn.data import load_debd
from bayesfn.reproduce import circuits
from bayesfn.reproduce.results import make_results, result_row

torch.set_num_threads(1)

SETS = ("nltcs", "plants", "jester", "dna")
MODELS = ("MPC", "NPC2")
UNITS, REPLICAS, BATCH, LR = 16, 4, 512, 5e-3
HERE = Path(__file__).resolve().parent
RUNS = HERE / "circuits_debd_converge"
RESULTS = HERE / "circuits_debd_converge_results.json"


PATIENCE = 100  # epochs, every set and model: see the module docstring
CHECKPOINT_EPOCHS = 10


def _deadline(text: str | None) -> float | None:
    """``time.time()`` of the next ``HH:MM`` UTC (``None`` without one): a time already
    past today means tomorrow, so a run started before midnight can end after it."""
    if text is None:
        return None
    try:
        hh, mm = (int(v) for v in text.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    except ValueError as err:
        raise SystemExit(f"--deadline-utc must be HH:MM (UTC); got {text!r}") from err
    if at < now:
        at += dt.timedelta(days=1)
    return at.timestamp()


def run_one(name: str, kind: str, seed: int, patience: int, max_epochs: int, deadline) -> dict:
    """Fit one circuit to convergence and return its record (also written to disk)."""
    data = load_debd(name, dtype=torch.float64)
    tr, va, te = data.train, data.valid, data.test
    model = circuits._model(
        kind,
        UNITS,
        seed,
        "cpu",
        input="bernoulli",
        num_replicas=REPLICAS,
        dtype="float32",
    )
    epoch = math.ceil(tr.shape[0] / BATCH)
    # SIGTERM ends the fit at the next step like the deadline: checkpoint kept, segment
    # recorded, so a run can be preempted and resumed later without losing its CPU account
    interrupted = []
    signal.signal(signal.SIGTERM, lambda signum, frame: interrupted.append(signum))

    def stop(info) -> bool:
        return bool(interrupted) or (deadline is not None and time.time() > deadline)

    tag = f"{name}_{kind}_seed{seed}"
    ckpt = RUNS / "checkpoints" / tag
    segments_file = ckpt / "segments.json"
    segments = json.loads(segments_file.read_text()) if segments_file.is_file() else []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model.fit(
        tr,
        validation=va,
        max_steps=max_epochs * epoch,
        batch_size=BATCH,
        lr=LR,
        patience=patience,
        val_every=epoch,
        seed=seed,
        progress_bar=False,
        callbacks=(stop,),
        checkpoint_dir=ckpt,
        checkpoint_every=CHECKPOINT_EPOCHS * epoch,
    )
    res = model.fit_result_
    segments.append(
        {
            "from_step": res.resumed_from or 0,
            "to_step": res.num_steps,
            "cpu_seconds": round(time.process_time() - cpu0, 1),
            "wall_seconds": round(time.perf_counter() - wall0, 1),
            "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    cpu = sum(g["cpu_seconds"] for g in segments)
    wall = sum(g["wall_seconds"] for g in segments)
    steps = res.num_steps
    epochs = steps / epoch
    best_epoch = None if res.best_step is None else res.best_step / epoch
    hit_max = steps >= max_epochs * epoch
    with torch.no_grad():
        test = float(model.log_prob(te).mean())
        val = float(model.log_prob(va).mean())
    record = {
        "set": name,
        "model": kind,
        "seed": seed,
        "units": UNITS,
        "replicas": REPLICAS,
        "batch": BATCH,
        "lr": LR,
        "patience_epochs": patience,
        "max_epochs": max_epochs,
        "steps_per_epoch": epoch,
        "steps": steps,
        "epochs": round(epochs, 3),
        "best_epoch": best_epoch,
        "stopped_early": bool(res.stopped_early),
        # converged: early stopping ended it (not the epoch bound, not the deadline)
        "converged": bool(res.stopped_early),
        "hit_max_epochs": bool(hit_max and not res.stopped_early),
        # cut before convergence by the deadline or SIGTERM: resumable from its checkpoint
        "hit_deadline": bool(not res.stopped_early and not hit_max),
        "interrupted_by_signal": bool(interrupted),
        "cpu_seconds": round(cpu, 1),
        "segments": segments,
        "wall_seconds": round(wall, 1),
        "cpu_seconds_per_epoch": round(cpu / max(epochs, 1e-9), 3),
        "val_ll": val,
        "test_ll": test,
        "hclt": circuits.HCLT[name],
        "val_curve": [[int(s) // epoch, -v] for s, v in res.val_history],
        "torch_threads": torch.get_num_threads(),
        "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    RUNS.mkdir(parents=True, exist_ok=True)
    path = RUNS / f"{tag}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    if record["hit_deadline"]:
        segments_file.write_text(json.dumps(segments, indent=1) + "\n")
    else:
        shutil.rmtree(ckpt, ignore_errors=True)
    print(
        f"{name} {kind} seed {seed}: {epochs:.0f} epochs ({steps} steps), best epoch "
        f"{best_epoch}, {cpu:.0f} CPU s, {wall:.0f} wall s, test {test:.3f} "
        f"(HCLT {circuits.HCLT[name]}) -> {path}"
    )
    return record


def time_epochs(epochs: int, sets=SETS) -> dict:
    """CPU and wall seconds per epoch of every (set, model) of ``sets``, one by one."""
    costs = {}
    for name in sets:
        data = load_debd(name, dtype=torch.float64)
        epoch = math.ceil(data.train.shape[0] / BATCH)
        for kind in MODELS:
            model = circuits._model(
                kind, UNITS, 0, "cpu", input="bernoulli", num_replicas=REPLICAS, dtype="float32"
            )
            model.fit(data.train, max_steps=1, batch_size=BATCH, lr=LR, progress_bar=False)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            model.fit(
                data.train,
                validation=data.valid,
                max_steps=epochs * epoch,
                batch_size=BATCH,
                lr=LR,
                patience=None,
                val_every=epoch,
                progress_bar=False,
                warm_start=True,
            )
            cpu = (time.process_time() - cpu0) / epochs
            wall = (time.perf_counter() - wall0) / epochs
            costs[f"{name}/{kind}"] = {
                "steps_per_epoch": epoch,
                "cpu_seconds_per_epoch": round(cpu, 3),
                "wall_seconds_per_epoch": round(wall, 3),
            }
            print(f"{name} {kind}: {epoch} steps/epoch, {cpu:.2f} CPU s, {wall:.2f} wall s")
    RUNS.mkdir(parents=True, exist_ok=True)
    record = {
        "epochs_timed": epochs,
        "torch_threads": torch.get_num_threads(),
        "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "costs": costs,
    }
    (RUNS / "epoch_cost.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def merge() -> dict:
    """Join every run record into ``RESULTS``; returns the payload."""
    # only the runs directly in RUNS (patience10/, patience25/, patience100/ keep superseded runs)
    records = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*_seed*.json"))]
    if not records:
        raise SystemExit(f"no run records in {RUNS}")
    rows, seeds = [], sorted({r["seed"] for r in records})
    for name in SETS:
        for kind in MODELS:
            done = sorted(
                (r for r in records if (r["set"], r["model"]) == (name, kind)),
                key=lambda r: r["seed"],
            )
            if not done:
                continue
            tests = [r["test_ll"] for r in done]
            mean = sum(tests) / len(tests)
            std = (
                math.sqrt(sum((t - mean) ** 2 for t in tests) / (len(tests) - 1))
                if len(tests) > 1
                else None
            )
            setting = f"debd/{name}/{kind} K={UNITS} R={REPLICAS} to convergence"
            if not all(r["converged"] for r in done):
                setting += " [not all seeds converged: see runs]"
            rows.append(
                result_row(
                    setting,
                    "test log-likelihood",
                    mean,
                    ours_std=std,
                    seeds=[r["seed"] for r in done],
                    reference=circuits.HCLT[name],
                    reference_source=circuits.HCLT_SOURCE,
                )
            )
            for metric, key in (("epochs", "epochs"), ("CPU seconds", "cpu_seconds")):
                vals = [r[key] for r in done]
                rows.append(
                    result_row(
                        setting,
                        metric,
                        sum(vals) / len(vals),
                        seeds=[r["seed"] for r in done],
                    )
                )
    payload = make_results(
        circuits.PAPER,
        "full",
        seeds,
        rows,
        notes=[
            "DEBD at K=16, R=4 (the circuit of bayesfn reproduce circuits' DEBD rows) "
            "without its 400 s cap: early stopping on the validation split with the "
            "patience in each run's record (in epochs), or the epoch bound; the reference "
            "column is HCLT, not a number of the squared-circuits paper.",
            "Timings: the shared 2-core development machine, one torch thread per run, two "
            "runs at a time, other engineers' jobs running.",
        ],
        runs=[{k: v for k, v in r.items() if k != "val_curve"} for r in records],
        val_curves={f"{r['set']}/{r['model']}/seed{r['seed']}": r["val_curve"] for r in records},
        regenerable=True,
        provenance=(
            "python reproductions/circuits_debd_converge_run.py run SET MODEL SEED "
            "[--patience P --max-epochs E] for each run, then "
            "python reproductions/circuits_debd_converge_run.py merge"
        ),
    )
    RESULTS.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {RESULTS} ({len(records)} runs)")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="fit one (set, model, seed)")
    one.add_argument("set", choices=SETS)
    one.add_argument("model", choices=MODELS)
    one.add_argument("seed", type=int)
    one.add_argument("--patience", type=int, default=PATIENCE, help="epochs (default %(default)s)")
    one.add_argument("--max-epochs", type=int, default=5000, help="(default %(default)s)")
    one.add_argument("--deadline-utc", default=None, help="HH:MM UTC: stop the fit then")
    sub.add_parser("merge", help="join the run records into the results file")
    timing = sub.add_parser("time", help="CPU seconds per epoch of every (set, model)")
    timing.add_argument("--epochs", type=int, default=2)
    timing.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    args = parser.parse_args(argv)
    if args.command == "merge":
        merge()
        return 0
    if args.command == "time":
        if args.epochs < 1:
            parser.error("--epochs must be at least 1")
        time_epochs(args.epochs, args.sets)
        return 0
    if args.patience < 1 or args.max_epochs < 1:
        parser.error("--patience and --max-epochs must be at least 1")
    deadline = _deadline(args.deadline_utc)
    if deadline is not None and time.time() > deadline - 60:
        print(f"{args.set} {args.model} seed {args.seed}: not started, past the deadline")
        return 0
    run_one(
        args.set,
        args.model,
        args.seed,
        args.patience,
        args.max_epochs,
        deadline,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
