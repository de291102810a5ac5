"""``bayesfn tour``: fit every model the package has on small built-in data and write
a short report (a Markdown table, ``results.json`` and PNG plots) into a folder.

Each method adds one entry to ``STEPS``: a function ``(out, smoke, seed) -> dict``
returning ``{"model", "data", "metrics": {name: value}, "plots": [file names]}``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["STEPS", "run_tour"]


def _toy_regression(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A 1-D sinusoid with a gap in the inputs, so the bands visibly widen there."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [torch.rand(n // 2, 1, generator=g) * 2 - 3, torch.rand(n - n // 2, 1, generator=g) * 2 + 1]
    )
    f = lambda t: torch.sin(2 * t) + 0.3 * t  # noqa: E731
    y = f(x) + 0.2 * torch.randn(x.shape, generator=g)
    x_test = torch.linspace(-3.5, 3.5, 200).unsqueeze(-1)
    y_test = f(x_test) + 0.2 * torch.randn(x_test.shape, generator=g)
    return x.double(), y.double(), x_test.double(), y_test.double()


def _gaussian_process(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    from bayesfn import metrics
    from bayesfn.plotting import plot_predictive_1d, save_figure
    from bayesfn.processes import GaussianProcess

    x, y, x_test, y_test = _toy_regression(20 if smoke else 60, seed)
    gp = GaussianProcess(kernel="rbf").fit(
        x, y, max_steps=30 if smoke else 300, seed=seed, progress_bar=not smoke
    )
    post = gp.posterior(x_test, observation_noise=True)
    ax = plot_predictive_1d(
        gp.posterior(x_test),
        x_test,
        x_obs=x,
        y_obs=y,
        generator=torch.Generator().manual_seed(seed),
    )
    ax.set_title("Exact GP (RBF): latent posterior, 95 % band")
    save_figure(ax.figure, out / "gaussian_process.png")
    return {
        "model": "GaussianProcess(kernel='rbf')",
        "data": f"1-D sinusoid with a gap, n={x.shape[0]}",
        "metrics": {
            "test RMSE": metrics.rmse(post, y_test),
            "test NLL": metrics.nll(post, y_test),
            "95% coverage": metrics.coverage(post, y_test, 0.95),
            "log marginal likelihood": gp.fit_result_.diagnostics["log_marginal_likelihood"],
        },
        "plots": ["gaussian_process.png"],
    }


def _scale_mixture_nngp(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    """NNGP vs Student-t process (inverse-gamma last-layer variance) on 1-D data with
    Student-t(ν = 1.5) noise: the t process widens its bands where the data say so."""
    import matplotlib.pyplot as plt

    from bayesfn import metrics
    from bayesfn.bayesnn import ScaleMixtureNNGP
    from bayesfn.plotting import plot_predictive_1d, save_figure

    x, y, x_test, _ = _toy_regression(30 if smoke else 80, seed)
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    heavy = torch.from_numpy(0.15 * rng.standard_t(1.5, size=(x.shape[0] + x_test.shape[0], 1)))
    f = lambda t: torch.sin(2 * t) + 0.3 * t  # noqa: E731  (the toy set's function)
    y = f(x) + heavy[: x.shape[0]]
    y_test = f(x_test) + heavy[x.shape[0] :]
    steps = 30 if smoke else 200
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    found: dict[str, float] = {}
    pairs = [("point_mass", "NNGP"), ("inverse_gamma", "Student-t process")]
    for ax, (prior, title) in zip(axes, pairs, strict=True):
        model = ScaleMixtureNNGP(depth=2, prior=prior).fit(
            x, y, max_steps=steps, seed=seed, progress_bar=not smoke
        )
        post = model.posterior(x_test, observation_noise=True)
        found[f"{title} test NLL"] = metrics.nll(post, y_test)
        found[f"{title} 95% coverage"] = metrics.coverage(post, y_test, 0.95)
        plot_predictive_1d(post, x_test, x_obs=x, y_obs=y, ax=ax, num_samples=0)
        ax.set_title(f"{title}: predictive of y, 95 % band")
    axes[0].set_ylim(-4, 4)
    save_figure(fig, out / "scale_mixture_nngp.png")
    plt.close(fig)
    return {
        "model": "ScaleMixtureNNGP(prior='point_mass' | 'inverse_gamma')",
        "data": f"1-D sinusoid with Student-t(1.5) noise, n={x.shape[0]}",
        "metrics": found,
        "plots": ["scale_mixture_nngp.png"],
    }


def _squared_circuits(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    """One noisy ring: a monotonic circuit (MPC) against a squared non-monotonic one
    (NPC²), both with K = 2 and with a hand-set subtractive start for NPC²."""
    import matplotlib.pyplot as plt

    from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
    from bayesfn.data import sample_rings_nd
    from bayesfn.plotting import plot_density_2d, save_figure
    from bayesfn.reproduce.circuits import subtractive_ring_init

    n, steps = (400, 60) if smoke else (4000, 1500)
    x = sample_rings_nd(n, 2, radii=(1.0,), noise=0.3, seed=seed)
    x_test = sample_rings_nd(1000, 2, radii=(1.0,), noise=0.3, seed=seed + 1)
    fit = {"max_steps": steps, "batch_size": min(256, n), "seed": seed, "progress_bar": False}
    mpc = MonotonicCircuit(2, seed=seed).fit(x, **fit)
    npc = SquaredCircuit(2, seed=seed).fit(x, max_steps=0, progress_bar=False)
    subtractive_ring_init(npc, x)
    npc.fit(x, warm_start=True, **fit)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, (name, model) in zip(axes, (("MPC K=2", mpc), ("NPC² K=2", npc)), strict=True):
        plot_density_2d(
            model.log_prob,
            xlim=(-2, 2),
            ylim=(-2, 2),
            ax=ax,
            resolution=60 if smoke else 200,
            dtype=torch.float64,
        )
        ax.set_title(name)
    save_figure(fig, out / "squared_circuits.png")
    return {
        "model": "MonotonicCircuit(2) vs SquaredCircuit(2)",
        "data": f"one ring (radius 1, noise 0.3), n={n}",
        "metrics": {
            "MPC K=2 test log-lik": float(mpc.log_prob(x_test).mean()),
            "NPC² K=2 test log-lik": float(npc.log_prob(x_test).mean()),
        },
        "plots": ["squared_circuits.png"],
    }


def _functional_prior(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    """A 3-layer tanh BNN on the gap data under N(0, 1) weights (FG) and under a prior
    fitted to an RBF GP by Wasserstein distance (GPi-G), posteriors by SGHMC."""
    import matplotlib.pyplot as plt

    from bayesfn import metrics
    from bayesfn.bayesnn import BNN, MLP, SGHMC, GaussianPrior, fit_functional_prior
    from bayesfn.covariance import GPSampler
    from bayesfn.plotting import plot_predictive_1d, save_figure

    x, y, x_test, y_test = _toy_regression(30 if smoke else 60, seed)
    net = MLP(hidden=(20, 20) if smoke else (50, 50, 50))
    fitted = fit_functional_prior(
        net,
        GaussianPrior(),
        GPSampler("rbf", lengthscale=0.6),
        x,
        num_iterations=5 if smoke else 50,
        critic_steps=10 if smoke else 50,
        num_samples=32 if smoke else 128,
        seed=seed,
        progress_bar=not smoke,
    )
    sghmc = SGHMC(
        num_burn_in=50 if smoke else 1000,
        num_samples=5 if smoke else 20,
        thin=10 if smoke else 100,
        num_discard=0,
        num_chains=2,
    )
    found: dict[str, float] = {"W1 first": fitted.w1[0], "W1 last": fitted.w1[-1]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, (name, prior) in zip(
        axes, (("FG", GaussianPrior()), ("GPi-G", fitted.prior)), strict=True
    ):
        bnn = BNN(net, prior=prior, inference=sghmc).fit(x, y, seed=seed, progress_bar=not smoke)
        post = bnn.posterior(x_test, observation_noise=True)
        found[f"{name} test RMSE"] = metrics.rmse(post, y_test)
        found[f"{name} test NLL"] = metrics.nll(post, y_test)
        plot_predictive_1d(post, x_test.float(), x_obs=x, y_obs=y, ax=ax, num_samples=0)
        ax.set_title(f"{name}: predictive of y, 95 % band")
    save_figure(fig, out / "functional_prior.png")
    plt.close(fig)
    return {
        "model": "BNN(MLP, GaussianPrior | fit_functional_prior(...).prior, SGHMC)",
        "data": f"1-D sinusoid with a gap, n={x.shape[0]}",
        "metrics": found,
        "plots": ["functional_prior.png"],
    }


STEPS: dict[str, Callable[[Path, bool, int], dict[str, Any]]] = {
    "gaussian_process": _gaussian_process,
    "scale_mixture_nngp": _scale_mixture_nngp,
    "squared_circuits": _squared_circuits,
    "functional_prior": _functional_prior,
}


def run_tour(out: str | Path = "bayesfn-tour", *, smoke: bool = False, seed: int = 0) -> Path:
    """Run every step of the tour and write ``report.md`` and ``results.json`` to ``out``.

    A step that fails is reported in the table (with its error) instead of ending the
    tour, so one broken model does not hide the others.

    Returns:
        The path of ``report.md``.
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, step in STEPS.items():
        start = time.perf_counter()
        try:
            entry = step(out, smoke, seed)
            entry["status"] = "ok"
        except Exception as err:
            logger.exception("tour step %s failed", name)
            entry = {
                "model": name,
                "data": "",
                "metrics": {},
                "plots": [],
                "status": f"failed: {err}",
            }
        entry["seconds"] = time.perf_counter() - start
        entries.append(entry)
    with open(out / "results.json", "w") as f:
        json.dump({"smoke": smoke, "seed": seed, "steps": entries}, f, indent=2)
    lines = [
        "# bayesfn tour",
        "",
        f"Scale: {'smoke' if smoke else 'default'}; seed {seed}.",
        "",
        "| model | data | metric | value | fit + predict (s) | status |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        items = list(e["metrics"].items()) or [("-", math.nan)]
        for i, (metric, value) in enumerate(items):
            head = (e["model"], e["data"]) if i == 0 else ("", "")
            tail = (f"{e['seconds']:.1f}", e["status"]) if i == 0 else ("", "")
            lines.append(
                f"| {head[0]} | {head[1]} | {metric} | {value:.4g} | {tail[0]} | {tail[1]} |"
            )
    lines.append("")
    for e in entries:
        lines += [f"![{p}]({p})" for p in e["plots"]]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
