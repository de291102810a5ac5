"""One GPU-machine run of the NNGP regression table under the paper protocol, full size.

Usage: ``BAYESFN_DATA=<folder holding uci_regression/> python reproductions/nngp_device_run.py
DEADLINE_S``. The device copies only the repository: copy ``../shared/data/uci_regression``
into a folder that ``.git/info/exclude`` ignores (e.g. ``.device_data/``), name it in
``carry`` and point ``BAYESFN_DATA`` at it (default: this script's folder).

The GPU process takes the three large sets at full size; CPU worker processes take the
small sets (full grid, full training sets), replicate by replicate. Every finished unit
is written to a scratch folder and merged into the one file $OUT/all_units.json after
every GPU unit and every second while waiting (the device returns only a few files per
call, so one file holds everything); nothing runs past the deadline.
"""

import json
import multiprocessing as mp
import os
import sys
import time
import traceback

T0 = time.time()
DEADLINE = float(sys.argv[1]) if len(sys.argv) > 1 else 260.0
ROOT = os.environ.get("BAYESFN_DATA", os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("OUT", "/tmp/out")
UNITS = os.path.join("/tmp", "nngp_units")
os.makedirs(UNITS, exist_ok=True)
os.makedirs(OUT, exist_ok=True)
os.environ["BAYESFN_DATA"] = ROOT
sys.path.insert(0, os.getcwd())

SMALL = ["synthetic_a", "yacht", "boston", "energy", "synthetic_b", "concrete", "wine"]
BIG = ["kin8nm", "power", "naval"]


def log(*args):
    print(f"[{time.time() - T0:6.1f}s]", *args, flush=True)


def write(name, seed, res, device):
    res = dict(res, dataset=name, shuffle_seed=seed, device=device)
    with open(os.path.join(UNITS, f"{name}_{seed}.json"), "w") as f:
        json.dump(res, f, default=float)


def merge():
    merged = {}
    for fname in sorted(os.listdir(UNITS)):
        with open(os.path.join(UNITS, fname)) as f:
            merged[fname[:-5]] = json.load(f)
    tmp = os.path.join(OUT, "all_units.json.tmp")
    with open(tmp, "w") as f:
        json.dump(merged, f)
    os.replace(tmp, os.path.join(OUT, "all_units.json"))


def unit(args):
    name, seed, device, max_train = args
    import torch

    torch.set_num_threads(1)
    from bayesfn.reproduce import nngp

    cfg = dict(nngp.SCALES["full"], max_train=max_train)
    t = time.time()
    try:
        res = nngp.run_one_paper(name, seed, cfg, device)
    except Exception:
        return name, seed, traceback.format_exc()
    res["seconds"] = time.time() - t
    write(name, seed, res, device)
    return name, seed, None


def main():
    try:
        import torch

        import bayesfn.bayesnn  # noqa: F401

        log("torch", torch.__version__, "cuda", torch.cuda.is_available(), os.cpu_count(), "cpus")
    except Exception:
        log("import failed:\n" + traceback.format_exc())
        return
    ctx = mp.get_context("spawn")
    workers = int(os.environ.get("WORKERS", max(1, min(13, (os.cpu_count() or 2) - 3))))
    pool = ctx.Pool(workers)
    # the paper's seed (10) for every small set first, then more replicates
    small_units = [(n, s, "cpu", None) for s in range(10, 15) for n in SMALL]
    pending = [pool.apply_async(unit, (u,)) for u in small_units]
    big_device = "cuda" if torch.cuda.is_available() else "cpu"
    cap = None if big_device == "cuda" else 2000
    if big_device == "cuda":
        name, seed, err = unit(("yacht", 99, "cuda", 60))  # a tiny check that cuda works
        if err:
            log("cuda check failed, big sets go to the CPU capped at 2000:\n" + err)
            big_device, cap = "cpu", 2000
        else:
            log("cuda check ok")
    for seed in range(10, 15):
        for name in BIG:
            if time.time() - T0 > DEADLINE - 60:
                break
            if big_device == "cpu":
                pending.append(pool.apply_async(unit, ((name, seed, "cpu", cap),)))
                continue
            name, seed, err = unit((name, seed, "cuda", cap))
            log("gpu", name, seed, "done" if not err else err)
            merge()
    while time.time() - T0 < DEADLINE and not all(p.ready() for p in pending):
        merge()
        time.sleep(1)
    merge()
    done = 0
    for p in pending:
        if p.ready():
            name, seed, err = p.get()
            done += 1
            if err:
                log("cpu unit failed", name, seed, err)
    log(f"{done}/{len(pending)} cpu units finished; stopping")
    pool.terminate()


if __name__ == "__main__":
    main()
