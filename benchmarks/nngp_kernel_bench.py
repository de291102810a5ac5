"""NNGP kernels and the Student-t posterior: bayesfn against named peers, side by side.

What is timed (seconds per call; each library's median of ``--repeats`` calls after one
warm-up call, which includes neural-tangents' JIT compilation):

* ``fc``: the N x N NNGP of a depth-4 ReLU network (stax: 4 x [Dense(W_std=1.5,
  b_std=0.05), Relu], Dense(1.5, 0.05)), d = 16 inputs, N = ``--sizes``, ``K(x, x)``;
* ``cnn``: the NNGP of 3 x [Conv(3 x 3, SAME, W_std=1.5, b_std=0.05), Relu], Flatten,
  Dense(1.5, 0.05) on N = ``--cnn-sizes`` 28 x 28 x 1 images, in two cases that are
  reported apart: ``x2 = distinct`` (``K(x1, x2)`` for a second set of N images: the same
  N x N pairs on both sides) and ``x2 = None`` (``K(x, x)``, where bayesfn computes only
  the tiles on and above the diagonal, about half the pairs, and neural-tangents all);
* ``posterior``: the joint predictive (mean and full covariance, observation noise
  included) at ``--test-size`` points after conditioning on ``--posterior-size`` points,
  float64, depth-4 ReLU NNGP kernel: ``ScaleMixtureNNGP`` (inverse-gamma prior: Student-t
  process, Cholesky) against a GPyTorch ``ExactGP`` with the same ``NNGPKernel`` and
  Cholesky forced (``max_cholesky_size`` above N, ``fast_computations`` and
  ``fast_pred_var`` off). Their predictive means are the same ``K*(K + τ²I)⁻¹y`` and
  our scale matrix is GPyTorch's covariance times the Student-t factor
  ``(b + q/2) / (a + N/2)`` with ``q = yᵀ(K + τ²I)⁻¹y`` taken from GPyTorch's solve.

Fairness and checks:

* Both sides get the same inputs (NumPy ``default_rng`` draws cast to the dtype).
  Before a timing counts, the outputs are compared: every kernel call checks corner
  blocks of the two N x N matrices (``rtol`` 1e-9 in float64, 1e-4 in float32) and the
  output dtype on both sides (neural-tangents runs with ``jax_enable_x64`` only for
  float64, so its float32 rows are float32); the posterior check asserts that the means and the
  covariances agree to 1e-7 (relative to the largest entry, after the Student-t factor;
  measured: 6e-9 and 3e-9 at N = 4,000), which GPyTorch's conjugate gradients (relative
  residual 0.01 in prediction by default) would not meet.
* Every setting runs ``--rounds`` rounds; the library that runs first alternates from
  round to round, and the ratio (peer / bayesfn) is taken within each round, so load on
  the shared machine hits both alike. The table shows both medians and every round's
  ratio.
* Threads: each setting runs at every ``--threads`` value (default: 1 and all cores).
  At ``k`` threads torch gets ``k`` intra-op threads and the process (with the
  neural-tangents subprocess, which inherits it) is bound to the first ``k`` cores, so
  XLA is held to the same cores; at one thread XLA's Eigen pool is also switched off.
  The CPU seconds per wall second of each side are printed as ``cpu/wall``. bayesfn's
  kernels build their matrices at one thread by default whatever torch's setting
  (``nngp_kernel(threads=1)``, ``cnn_kernel(tile_threads=1)``; see
  ``benchmarks/nngp_threads_study.py``); ``--kernel-threads torch`` passes ``None``
  instead, so that they use all of torch's threads.

Setup. The script runs in bayesfn's environment (torch, gpytorch, numpy and bayesfn: from
the repository root, ``pip install torch==2.13.0 -e .``). neural-tangents runs in a
subprocess from its own virtual environment, because it needs jax 0.4 with NumPy < 2;
that environment needs neither torch nor bayesfn::

    python -m venv /work/nt-venv
    /work/nt-venv/bin/pip install "jax[cpu]==0.4.23" "jaxlib==0.4.23" "numpy<2" "scipy<1.13"
    /work/nt-venv/bin/pip install neural-tangents==0.6.5 --no-deps
    /work/nt-venv/bin/pip install frozendict typing_extensions

(``--no-deps`` skips neural-tangents' TensorFlow-only dependency ``tf2jax``; the script
stubs out ``neural_tangents.experimental``, the one module that imports TensorFlow.)

Run (the peer's interpreter is ``--nt-python`` or the ``BAYESFN_NT_PYTHON`` variable;
without either, or when it cannot import neural_tangents, the script exits with an
error before timing anything)::

    BAYESFN_NT_PYTHON=/work/nt-venv/bin/python python benchmarks/nngp_kernel_bench.py \\
        --json /tmp/nngp_bench.json

``--sizes``/``--cnn-sizes`` with no value skip those rows, ``--posterior-size 0`` the
posterior; ``--posterior-size`` alone (``--sizes --cnn-sizes``) needs no peer venv.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import time

NT_ENV = "BAYESFN_NT_PYTHON"
CORNER = 8  # side of the corner blocks compared between the libraries
RTOL = {"float64": 1e-9, "float32": 1e-4}
CORES = sorted(os.sched_getaffinity(0))  # the cores this process may use at start

# Runs in the neural-tangents venv: argv = arch, n, x2 mode, dtype, repeats, threads.
NT_SCRIPT = r"""
import sys, types, json, os, time, statistics
arch, n, x2_mode, dtype, repeats, threads = sys.argv[1:7]
n, repeats, threads = int(n), int(repeats), int(threads)
if threads == 1:
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
# neural_tangents.experimental imports TensorFlow, which the benchmark does not need
sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")
import jax
jax.config.update("jax_enable_x64", dtype == "float64")  # float32 rows stay float32
import jax.numpy as jnp
import numpy as np
from neural_tangents import stax
layers = []
if arch == "fc":
    for _ in range(4):
        layers += [stax.Dense(512, 1.5, 0.05), stax.Relu()]
    shape = (n, 16)
else:
    for _ in range(3):
        layers += [stax.Conv(32, (3, 3), padding="SAME", W_std=1.5, b_std=0.05), stax.Relu()]
    layers += [stax.Flatten()]
    shape = (n, 28, 28, 1)
layers += [stax.Dense(1, 1.5, 0.05)]
kernel_fn = jax.jit(stax.serial(*layers)[2], static_argnames=("get",))
x1 = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(dtype))
x2 = None
if x2_mode == "distinct":
    x2 = jnp.asarray(np.random.default_rng(1).normal(size=shape).astype(dtype))
out = kernel_fn(x1, x2, get="nngp").block_until_ready()
if str(out.dtype) != dtype or x1.dtype != out.dtype:
    sys.exit(f"neural-tangents returned {out.dtype} for {dtype} inputs")
times, cpu = [], 0.0
for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    kernel_fn(x1, x2, get="nngp").block_until_ready()
    times.append(time.perf_counter() - t)
    cpu += time.process_time() - c
k = np.asarray(out, dtype=np.float64)
c = CORNER_SIDE
print(json.dumps({
    "median": statistics.median(times), "times": times, "cpu_per_wall": cpu / sum(times),
    "dtype": str(out.dtype), "jax": jax.__version__,
    "corners": [k[:c, :c].tolist(), k[-c:, -c:].tolist()],
}))
""".replace("CORNER_SIDE", str(CORNER))


def peer_error(python: str | None) -> str | None:
    """None when ``python`` can import neural_tangents, else a one-line reason."""
    how = f"pass --nt-python PATH or set {NT_ENV} (setup: this script's docstring)"
    if not python:
        return f"no neural-tangents interpreter given: {how}"
    probe = (
        "import sys, types; "
        "sys.modules['neural_tangents.experimental'] = types.ModuleType('x'); "
        "import neural_tangents"
    )
    try:
        subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    except FileNotFoundError:
        return f"--nt-python {python} does not exist: {how}"
    except subprocess.CalledProcessError as err:
        last = (err.stderr.strip().splitlines() or ["exit status " + str(err.returncode)])[-1]
        return f"--nt-python {python} cannot import neural_tangents ({last}): {how}"
    return None


def _inputs(arch: str, n: int, x2_mode: str, dtype: str):
    import numpy as np
    import torch

    shape = (n, 16) if arch == "fc" else (n, 28, 28, 1)
    t = getattr(torch, dtype)
    x1 = torch.from_numpy(np.random.default_rng(0).normal(size=shape).astype(dtype)).to(t)
    x2 = None
    if x2_mode == "distinct":
        x2 = torch.from_numpy(np.random.default_rng(1).normal(size=shape).astype(dtype)).to(t)
    return x1, x2


def _time_calls(fn, repeats: int) -> tuple[object, list[float], float]:
    """One warm-up call, then ``repeats`` timed ones: (first output, times, cpu/wall)."""
    out = fn()
    times, cpu = [], 0.0
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu += time.process_time() - c
    return out, times, cpu / sum(times)


def time_ours(
    arch: str, n: int, x2_mode: str, dtype: str, repeats: int, kernel_threads: str
) -> dict:
    import torch

    from bayesfn.bayesnn import nngp_kernel
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    x1, x2 = _inputs(arch, n, x2_mode, dtype)
    kw = dict(activation="relu", w_std=1.5, b_std=0.05, w_std_last=1.5, b_std_last=0.05)
    if kernel_threads == "torch":
        kw["threads" if arch == "fc" else "tile_threads"] = None
    if arch == "fc":
        fn = lambda: nngp_kernel(x1, x2, depth=4, **kw)  # noqa: E731
    else:
        fn = lambda: cnn_kernel(x1, x2, depth=3, filter_size=3, **kw)  # noqa: E731
    with torch.no_grad():
        out, times, cpu = _time_calls(fn, repeats)
    if out.dtype != x1.dtype:
        raise AssertionError(f"bayesfn returned {out.dtype} for {x1.dtype} inputs")
    k = out.double()
    return {
        "median": statistics.median(times),
        "times": times,
        "cpu_per_wall": cpu,
        "dtype": str(out.dtype).removeprefix("torch."),
        "corners": [k[:CORNER, :CORNER].tolist(), k[-CORNER:, -CORNER:].tolist()],
    }


def time_nt(python: str, arch: str, n: int, x2_mode: str, dtype: str, repeats: int, threads: int):
    out = subprocess.run(
        [python, "-c", NT_SCRIPT, arch, str(n), x2_mode, dtype, str(repeats), str(threads)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"neural-tangents run failed ({arch}, N={n}, {dtype}): {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_same_kernel(ours: dict, nt: dict, dtype: str) -> float:
    """Largest corner difference relative to the largest entry; raises past ``RTOL``."""
    import numpy as np

    if ours["dtype"] != dtype or nt["dtype"] != dtype:
        raise AssertionError(f"dtypes: bayesfn {ours['dtype']}, neural-tangents {nt['dtype']}")
    a, b = np.asarray(ours["corners"]), np.asarray(nt["corners"])
    err = float(np.abs(a - b).max() / np.abs(b).max())
    if not err <= RTOL[dtype]:
        raise AssertionError(f"kernels differ by {err:.2e} (relative) in {dtype}")
    return err


def posterior_pair(n: int, n_test: int):
    """Two closures giving ``(mean, covariance)``, and a check that they agree."""
    import gpytorch
    import numpy as np
    import torch

    from bayesfn.bayesnn import NNGPKernel, ScaleMixtureNNGP

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(n, 16)))
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * torch.from_numpy(rng.normal(size=(n, 1)))
    xs = torch.from_numpy(rng.normal(size=(n_test, 16)))
    net = dict(w_std=1.5, b_std=0.05, w_std_last=1.0, b_std_last=0.0)
    noise = 0.1
    model = ScaleMixtureNNGP(depth=4, noise=noise, standardize=False, **net)

    def ours():
        model.fit(x, y, max_steps=0, progress_bar=False)
        post = model.posterior(xs, observation_noise=True)
        return post.mean[:, 0], post.covariance_matrix

    class GP(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(x, y[:, 0], gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = NNGPKernel(4, "relu", **net)

        def forward(self, t):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(t), self.covar_module(t)
            )

    exact = (  # Cholesky at every size, no Lanczos variances, no CG
        gpytorch.settings.max_cholesky_size(10**9),
        gpytorch.settings.fast_computations(False, False, False),
        gpytorch.settings.fast_pred_var(False),
        gpytorch.settings.skip_posterior_variances(False),
    )

    def theirs():
        gp = GP().double()
        gp.likelihood.noise = noise
        gp.eval()
        with torch.no_grad(), exact[0], exact[1], exact[2], exact[3]:
            pred = gp.likelihood(gp(xs))
            mean, cov = pred.mean, pred.covariance_matrix
            q = float(y[:, 0] @ gp.prediction_strategy.mean_cache)  # yᵀ(K + τ²I)⁻¹y
        return mean, cov, q

    def check(o, t) -> dict:
        (m1, c1), (m2, c2, q) = o, t
        h = model.hyperparameters()
        # StudentTPosterior.covariance_matrix is the scale matrix (no df / (df - 2))
        factor = (h["b"] + q / 2) / (h["a"] + n / 2)
        mean_err = float((m1 - m2).abs().max() / m2.abs().max())
        cov_err = float((c1 - factor * c2).abs().max() / (factor * c2).abs().max())
        if not (mean_err <= 1e-7 and cov_err <= 1e-7):
            raise AssertionError(
                f"posteriors differ: mean {mean_err:.2e}, covariance {cov_err:.2e} (relative)"
            )
        return {"mean_err": mean_err, "cov_err": cov_err, "t_factor": factor}

    return ours, theirs, check


def _bind(threads: int) -> None:
    """``threads`` torch threads, and this process (with the subprocesses it starts)
    bound to the first ``threads`` of the cores it was started with."""
    import torch

    os.sched_setaffinity(0, CORES[:threads])
    torch.set_num_threads(threads)


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _rounds(rounds: int, first_ours: bool, run_ours, run_peer) -> list[tuple[dict, dict]]:
    """``rounds`` (ours, peer) pairs; who runs first alternates, starting with ours when
    ``first_ours``."""
    pairs = []
    for r in range(rounds):
        if (r % 2 == 0) == first_ours:
            o = run_ours()
            p = run_peer()
        else:
            p = run_peer()
            o = run_ours()
        pairs.append((o, p))
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nt-python",
        default=os.environ.get(NT_ENV),
        help=f"python of the neural-tangents venv (default: ${NT_ENV})",
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--cnn-sizes", type=int, nargs="*", default=[200])
    parser.add_argument(
        "--cnn-x2", nargs="+", choices=["distinct", "none"], default=["distinct", "none"]
    )
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--posterior-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, len(CORES)}))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--posterior-repeats", type=int, default=1)
    parser.add_argument(
        "--kernel-threads",
        choices=["default", "torch"],
        default="default",
        help="bayesfn kernels' own thread option (nngp_kernel threads, cnn_kernel "
        "tile_threads): 'default' leaves it at its default (1), 'torch' passes None, so "
        "the kernels use all of torch's threads",
    )
    parser.add_argument("--json", default=None, help="write every measurement here")
    args = parser.parse_args(argv)
    jobs = [("fc", n, "none") for n in args.sizes] + [
        ("cnn", n, mode) for n in args.cnn_sizes for mode in args.cnn_x2
    ]
    if jobs:
        reason = peer_error(args.nt_python)
        if reason:
            raise SystemExit(f"nngp_kernel_bench: {reason}")
    available = len(CORES)
    if any(t < 1 or t > available for t in args.threads):
        raise SystemExit(f"nngp_kernel_bench: --threads must lie in 1..{available}")
    import gpytorch
    import torch

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, torch {torch.__version__}, gpytorch "
        f"{gpytorch.__version__}; load average at start {_load()}"
    )
    records = []
    header = (
        "| kernel | N | x2 | dtype | threads | bayesfn (s) | neural-tangents (s) "
        "| NT / bayesfn per round | median ratio | cpu/wall ours, NT | load | max rel diff |"
    )
    if jobs:
        print(header)
        print("|" + "---|" * 12)
    first_ours = True
    for arch, n, mode in jobs:
        for dtype in args.dtypes:
            for threads in args.threads:
                _bind(threads)
                load = _load()
                pairs = _rounds(
                    args.rounds,
                    first_ours,
                    functools.partial(
                        time_ours, arch, n, mode, dtype, args.repeats, args.kernel_threads
                    ),
                    functools.partial(
                        time_nt, args.nt_python, arch, n, mode, dtype, args.repeats, threads
                    ),
                )
                first_ours = not first_ours
                err = max(check_same_kernel(o, p, dtype) for o, p in pairs)
                ratios = [p["median"] / o["median"] for o, p in pairs]
                ours_s = statistics.median(o["median"] for o, _ in pairs)
                nt_s = statistics.median(p["median"] for _, p in pairs)
                cpu_o = statistics.median(o["cpu_per_wall"] for o, _ in pairs)
                cpu_p = statistics.median(p["cpu_per_wall"] for _, p in pairs)
                label = "FC depth 4" if arch == "fc" else "CNN depth 3, 28x28x1"
                print(
                    f"| {label} | {n} | {mode} | {dtype} | {threads} | {ours_s:.3f} | "
                    f"{nt_s:.3f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                    f"{statistics.median(ratios):.2f} | {cpu_o:.2f}, {cpu_p:.2f} | {load} | "
                    f"{err:.1e} |",
                    flush=True,
                )
                for o, p in pairs:
                    o.pop("corners"), p.pop("corners")
                records.append(
                    dict(arch=arch, n=n, x2=mode, dtype=dtype, threads=threads, load=load)
                    | {"ours": [o for o, _ in pairs], "nt": [p for _, p in pairs]}
                )
    if args.posterior_size:
        ours, theirs, check = posterior_pair(args.posterior_size, args.test_size)
        print(
            f"\n| posterior (N={args.posterior_size}, {args.test_size} test points) | threads "
            "| bayesfn (s) | GPyTorch (s) | GPyTorch / bayesfn per round | median ratio "
            "| load | max rel diff (mean, cov) |"
        )
        print("|" + "---|" * 8)
        for threads in args.threads:
            _bind(threads)
            load = _load()
            stats: dict[str, list] = {"ours": [], "gpytorch": [], "check": []}

            def run_ours(stats=stats):
                out, times, _ = _time_calls(ours, args.posterior_repeats)
                stats["ours"].append(statistics.median(times))
                return out

            def run_theirs(stats=stats):
                out, times, _ = _time_calls(theirs, args.posterior_repeats)
                stats["gpytorch"].append(statistics.median(times))
                return out

            pairs = _rounds(args.rounds, first_ours, run_ours, run_theirs)
            first_ours = not first_ours
            stats["check"] = [check(o, t) for o, t in pairs]
            ratios = [g / o for o, g in zip(stats["ours"], stats["gpytorch"], strict=True)]
            mean_err = max(c["mean_err"] for c in stats["check"])
            cov_err = max(c["cov_err"] for c in stats["check"])
            print(
                f"| Student-t (ScaleMixtureNNGP) vs ExactGP, Cholesky | {threads} | "
                f"{statistics.median(stats['ours']):.3f} | "
                f"{statistics.median(stats['gpytorch']):.3f} | "
                f"{', '.join(f'{r:.2f}' for r in ratios)} | {statistics.median(ratios):.2f} | "
                f"{load} | {mean_err:.1e}, {cov_err:.1e} |",
                flush=True,
            )
            records.append(dict(arch="posterior", n=args.posterior_size, threads=threads) | stats)
    print(f"load average at end {_load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
