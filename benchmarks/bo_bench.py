"""Bayesian optimisation with bayesfn models through the BoTorch bridge, against
BoTorch's own ``SingleTaskGP``.

Problems (maximised as their negatives, searched in ``[-1, 1]^d`` mapped onto the
usual domain, BoTorch's definitions of the test functions):

* ``branin``: Branin (d = 2), noise-free;
* ``hartmann6``: Hartmann-6 (d = 6), noise-free;
* ``branin_heavy``: Branin observed with heavy-tailed noise, Student-t with 2 degrees
  of freedom and scale 5 (Branin's values span about 0.4–300), so that a few
  observations are wild outliers.

Methods (one candidate per step, ``qLogExpectedImprovement`` with ``best_f`` the
largest posterior mean at the evaluated points, 128 Sobol base samples,
``optimize_acqf`` with 2 restarts from 128 raw samples and at most 50 L-BFGS-B
iterations: a small budget, chosen to fit a loaded, shared 2-core machine):

* ``botorch_gp``: BoTorch's ``SingleTaskGP`` with its defaults (RBF with
  dimension-scaled priors, ``Normalize`` inputs, ``Standardize`` outcomes), fitted by
  ``fit_gpytorch_mll``: the named peer;
* ``bayesfn_gp``: ``bayesfn.processes.GaussianProcess("rbf")`` on standardised
  targets, wrapped by ``bayesfn.integrations.botorch.BoTorchModel``;
* ``bayesfn_tp``: ``ScaleMixtureNNGP(depth=2, prior="inverse_gamma")``, the Student-t
  process of Lee et al. (ICLR 2022), wrapped the same way (its posterior carries no
  input gradient, so its acquisition is optimised gradient-free: L-BFGS-B on
  finite differences);
* ``bayesfn_tp_lownoise``: the same Student-t process with its noise variance fixed
  at 1e-3 (in standardised units) instead of learned; added after ``bayesfn_tp`` was
  seen to stall (its fitted noise absorbed most of the signal).

Each (problem, method, seed) shares its initial design (scrambled Sobol, seeded) and
its noise stream across methods. The metric is the simple regret ``f* − max_i f(x_i)``
of the noise-free function over all evaluated points.

Run (this is the command behind benchmarks/RESULTS.md; on the shared 2-core machine,
one thread, it took the time stated there)::

    python benchmarks/bo_bench.py --seeds 10 --out benchmarks/bo_results
    python benchmarks/bo_bench.py --plot --out benchmarks/bo_results

Results go to ``OUT/<problem>_<method>_<seed>.json`` (one file per run, so an
interrupted sweep resumes) and ``OUT/summary.json`` / ``OUT/bo_regret.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import torch

PROBLEMS = {
    "branin": {"dim": 2, "n_init": 4, "iters": 10, "noise_df": None, "noise_scale": 0.0},
    "hartmann6": {"dim": 6, "n_init": 8, "iters": 10, "noise_df": None, "noise_scale": 0.0},
    "branin_heavy": {"dim": 2, "n_init": 4, "iters": 10, "noise_df": 2.0, "noise_scale": 5.0},
}
METHODS = ("botorch_gp", "bayesfn_gp", "bayesfn_tp", "bayesfn_tp_lownoise")


def _function(problem: str):
    from botorch.test_functions import Branin, Hartmann

    if problem.startswith("branin"):
        return Branin(negate=True).to(torch.float64)
    return Hartmann(dim=6, negate=True).to(torch.float64)


def _to_domain(fn, x: torch.Tensor) -> torch.Tensor:
    """Map ``[-1, 1]^d`` onto the function's box."""
    lo, hi = fn.bounds[0], fn.bounds[1]
    return lo + (x + 1) / 2 * (hi - lo)


def _observe(fn, x, spec, gen):
    f = fn(_to_domain(fn, x))
    if spec["noise_df"] is None:
        return f, f
    from scipy import stats

    # one uniform per observation through the t quantile: a seeded noise stream
    u = torch.rand(f.shape, generator=gen, dtype=torch.float64)
    noise = torch.as_tensor(stats.t.ppf(u.numpy(), spec["noise_df"]), dtype=torch.float64)
    return f + spec["noise_scale"] * noise, f


def _bayesfn_model(method: str, x, y_std):
    from bayesfn.bayesnn import ScaleMixtureNNGP
    from bayesfn.processes import GaussianProcess

    if method == "bayesfn_gp":
        return GaussianProcess("rbf").fit(x, y_std, max_steps=100, progress_bar=False)
    if method == "bayesfn_tp_lownoise":  # noise fixed small, the rest learned
        tp = ScaleMixtureNNGP(
            depth=2, prior="inverse_gamma", noise=1e-3, learn=("w_std", "b_std", "a", "b")
        )
        return tp.fit(x, y_std, max_steps=60, progress_bar=False)
    return ScaleMixtureNNGP(depth=2, prior="inverse_gamma").fit(
        x, y_std, max_steps=60, progress_bar=False
    )


def _next_point(method: str, x, y, dim: int, seed: int):
    from botorch.acquisition import qLogExpectedImprovement
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    bounds = torch.stack([-torch.ones(dim), torch.ones(dim)]).to(torch.float64)
    options = {"maxiter": 50}
    if method == "botorch_gp":
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = SingleTaskGP(
            x,
            y.unsqueeze(-1),
            input_transform=Normalize(dim, bounds=bounds),
            outcome_transform=Standardize(1),
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    else:
        from bayesfn.integrations.botorch import BoTorchModel

        y_std = (y - y.mean()) / y.std()
        model = BoTorchModel(_bayesfn_model(method, x, y_std))
        if method.startswith("bayesfn_tp"):
            options["with_grad"] = False
    with torch.no_grad():
        best = model.posterior(x.unsqueeze(-2)).mean.max()
    acqf = qLogExpectedImprovement(
        model, best_f=best, sampler=SobolQMCNormalSampler(torch.Size([128]), seed=seed)
    )
    cand, _ = optimize_acqf(acqf, bounds, q=1, num_restarts=2, raw_samples=128, options=options)
    return cand.detach()


def run_one(problem: str, method: str, seed: int) -> dict:
    spec = PROBLEMS[problem]
    fn, dim = _function(problem), spec["dim"]
    torch.manual_seed(seed)
    sobol = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    x = sobol.draw(spec["n_init"], dtype=torch.float64) * 2 - 1
    gen = torch.Generator().manual_seed(10_000 + seed)
    y, f = _observe(fn, x, spec, gen)
    start = time.perf_counter()
    for it in range(spec["iters"]):
        cand = _next_point(method, x, y, dim, seed * 1000 + it)
        y_new, f_new = _observe(fn, cand, spec, gen)
        x, y, f = torch.cat([x, cand]), torch.cat([y, y_new]), torch.cat([f, f_new])
    best_so_far = torch.cummax(f, 0).values
    regret = (fn.optimal_value - best_so_far).clamp_min(0)
    return {
        "problem": problem,
        "method": method,
        "seed": seed,
        "n_init": spec["n_init"],
        "regret": regret.tolist(),
        "seconds": time.perf_counter() - start,
    }


def sweep(problems, methods, seeds, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    jobs = [(p, m, s) for s in seeds for p in problems for m in methods]
    for p, m, s in tqdm(jobs, desc="BO runs"):
        path = out / f"{p}_{m}_{s}.json"
        if path.exists():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BoTorch's fit / optimiser notices
            result = run_one(p, m, s)
        path.write_text(json.dumps(result))


def summarise(out: Path) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*_*_*.json"))]
    runs = [r for r in runs if "regret" in r]
    table: dict = {}
    for r in runs:
        table.setdefault(r["problem"], {}).setdefault(r["method"], []).append(r)
    summary = {}
    for problem, by_method in table.items():
        summary[problem] = {}
        for method, rs in by_method.items():
            final = torch.tensor([math.log10(max(r["regret"][-1], 1e-12)) for r in rs])
            curves = torch.tensor([[math.log10(max(v, 1e-12)) for v in r["regret"]] for r in rs])
            summary[problem][method] = {
                "seeds": sorted(r["seed"] for r in rs),
                "final_log10_regret_mean": float(final.mean()),
                "final_log10_regret_se": float(final.std() / math.sqrt(len(rs)))
                if len(rs) > 1
                else None,
                "final_regret_median": float(torch.tensor([r["regret"][-1] for r in rs]).median()),
                "curve_mean": curves.mean(0).tolist(),
                "curve_se": (curves.std(0) / math.sqrt(len(rs))).tolist() if len(rs) > 1 else None,
                "n_init": rs[0]["n_init"],
                "seconds_mean": float(sum(r["seconds"] for r in rs) / len(rs)),
            }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def plot(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(4.2 * len(summary), 3.4))
    axes = [axes] if len(summary) == 1 else list(axes)
    for ax, (problem, by_method) in zip(axes, sorted(summary.items()), strict=True):
        for method, s in sorted(by_method.items()):
            mean = torch.tensor(s["curve_mean"])
            n = torch.arange(1, len(mean) + 1)
            (line,) = ax.plot(n, mean, label=f"{method} ({len(s['seeds'])} seeds)")
            if s["curve_se"] is not None:
                se = torch.tensor(s["curve_se"])
                band = (mean - 1.96 * se, mean + 1.96 * se)  # 95 % band of the seed mean
                ax.fill_between(n, *band, alpha=0.2, color=line.get_color())
        ax.axvline(next(iter(by_method.values()))["n_init"], color="grey", lw=0.5, ls=":")
        ax.set_title(problem)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("log10 simple regret")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bo_regret.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1")
    parser.add_argument("--iters", type=int, default=None, help="override every budget")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/bo_results"))
    parser.add_argument("--plot", action="store_true", help="only summarise and plot")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.iters is not None:
        for spec in PROBLEMS.values():
            spec["iters"] = args.iters
    if not args.plot:
        start = time.perf_counter()
        sweep(args.problems, args.methods, range(args.seeds), args.out)
        print(f"sweep took {time.perf_counter() - start:.0f} s")
    summary = summarise(args.out)
    plot(summary, args.out)
    for problem, by_method in sorted(summary.items()):
        for method, s in sorted(by_method.items()):
            se = s["final_log10_regret_se"]
            print(
                f"{problem:13s} {method:11s} seeds={len(s['seeds']):2d} "
                f"final log10 regret {s['final_log10_regret_mean']:+.2f}"
                + (f" ± {se:.2f}" if se is not None else "")
                + f"  median regret {s['final_regret_median']:.3g}"
                + f"  {s['seconds_mean']:.0f} s/run"
            )


if __name__ == "__main__":
    main()
