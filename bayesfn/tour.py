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
    (NPC²), both with K = 2 and both fitted with their default starts."""
    import matplotlib.pyplot as plt

    from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
    from bayesfn.data import sample_rings_nd
    from bayesfn.plotting import plot_density_2d, save_figure

    n, steps = (400, 60) if smoke else (4000, 1500)
    x = sample_rings_nd(n, 2, radii=(1.0,), noise=0.3, seed=seed)
    x_test = sample_rings_nd(1000, 2, radii=(1.0,), noise=0.3, seed=seed + 1)
    fit = {"max_steps": steps, "batch_size": min(256, n), "seed": seed, "progress_bar": False}
    mpc = MonotonicCircuit(2, seed=seed).fit(x, **fit)
    npc = SquaredCircuit(2, seed=seed).fit(x, **fit)
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


def _operator_flow_matching(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    """OFM learns a Matérn-5/2 process from draws on a grid, then regresses on 5 noisy
    points; compared with the exact GP (prior covariance, posterior mean)."""
    import matplotlib.pyplot as plt

    from bayesfn.covariance import GPSampler
    from bayesfn.data import sample_functions
    from bayesfn.plotting import save_figure
    from bayesfn.processes import OperatorFlowMatching

    n, steps = (24, 30) if smoke else (48, 1500)
    x = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    fns = sample_functions(
        "matern52", 400 if smoke else 3000, n, x=x, lengthscale=0.3, variance=1.0, seed=seed
    )
    # smoke: a fixed-step solver, since a barely trained field can be stiff for dopri5
    ofm = OperatorFlowMatching(
        reference_lengthscale=0.1,
        ode_method="rk4" if smoke else "dopri5",
        ode_steps=4 if smoke else 10,
        seed=seed,
    ).fit(fns, max_steps=steps, lr=3e-3, seed=seed, progress_bar=not smoke)
    kernel = GPSampler("matern52", lengthscale=0.3)
    k = kernel.covariance(x)[0]
    draws = ofm.sample(x, 200 if smoke else 1000, generator=torch.Generator().manual_seed(seed))
    cov_err = float((torch.cov(draws[..., 0].double().T) - k).norm() / k.norm())
    g = torch.Generator().manual_seed(seed + 1)
    f = kernel.sample(x, 1, generator=g)[0]
    idx = torch.tensor([3, n // 3, n // 2 + 2, n - 5, n - 2])
    y = f[idx] + 0.1 * torch.randn(5, generator=g, dtype=torch.float64)
    mcmc = {"num_samples": 64, "burn_in": 20} if smoke else {"num_samples": 800, "burn_in": 400}
    post = ofm.posterior(x, context=(x[idx], y), noise=0.01, seed=seed, **mcmc)
    gain = torch.linalg.solve(k[idx][:, idx] + 0.01 * torch.eye(5, dtype=k.dtype), k[idx]).T
    exact_mean = gain @ y
    rmse = float((post.mean[:, 0].double() - exact_mean).square().mean().sqrt())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(x[:, 0], draws[:5, :, 0].T)
    axes[0].set_title("OFM prior draws (Matérn-5/2 data)")
    lo, hi = post.interval(0.95)
    axes[1].fill_between(x[:, 0], lo[:, 0], hi[:, 0], alpha=0.3, label="OFM 95 %")
    axes[1].plot(x[:, 0], post.mean[:, 0], label="OFM mean")
    axes[1].plot(x[:, 0], exact_mean, "k--", label="exact GP mean")
    axes[1].scatter(x[idx, 0], y, color="C3", zorder=3)
    axes[1].legend(fontsize=7)
    axes[1].set_title("regression: latent pCN posterior")
    save_figure(fig, out / "operator_flow_matching.png")
    plt.close(fig)
    return {
        "model": "OperatorFlowMatching(operator='fno')",
        "data": f"Matérn-5/2 draws on {n} points; 5 noisy observations",
        "metrics": {
            "prior covariance rel. error": cov_err,
            "posterior mean RMSE vs exact GP": rmse,
            "pCN acceptance": ofm.sampler_diagnostics_["accept"],
        },
        "plots": ["operator_flow_matching.png"],
    }


def _implicit_vi(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    """LIVI (an implicit posterior from a neural sampler) on the toy set with a gap: a
    1-7-10-1 ELU BNN with a learned noise level."""
    from bayesfn import metrics
    from bayesfn.bayesnn import BNN, MLP, GaussianLikelihood, ImplicitVI
    from bayesfn.plotting import plot_predictive_1d, save_figure

    x, y, x_test, y_test = (t.float() for t in _toy_regression(20 if smoke else 60, seed))
    model = BNN(
        MLP(hidden=(7, 10), activation="elu"),
        likelihood=GaussianLikelihood(0.1, learn_noise=True, noise_prior=None),
        inference=ImplicitVI(
            noise_dim=60,
            hidden=[105],
            output_noise=3e-3,
            num_samples=3,
            lr=5e-3,
            max_steps=40 if smoke else 3000,
            weighting="official",
        ),
    ).fit(x, y, seed=seed, progress_bar=not smoke)
    g = torch.Generator().manual_seed(seed)
    post = model.posterior(x_test, observation_noise=True, num_samples=200, generator=g)
    ax = plot_predictive_1d(
        model.posterior(x_test, num_samples=200, generator=g), x_test, x_obs=x, y_obs=y
    )
    ax.set_title("LIVI: latent posterior, 95 % band")
    save_figure(ax.figure, out / "implicit_vi.png")
    noise = model.state_["extra"]["likelihood.log_noise"].exp().sqrt() * model.y_std_
    return {
        "model": "BNN(MLP((7, 10), 'elu'), inference=ImplicitVI(...))",
        "data": f"1-D sinusoid with a gap, n={x.shape[0]}",
        "metrics": {
            "test RMSE": metrics.rmse(post, y_test),
            "test NLL": metrics.nll(post, y_test),
            "95% coverage": metrics.coverage(post, y_test, 0.95),
            "learned noise sd (truth 0.2)": float(noise),
        },
        "plots": ["implicit_vi.png"],
    }


def _exact_gp_posterior(x_c, y_c, x_t, lengthscale: float, noise: float):
    """Exact posterior of noisy values at ``x_t`` given ``(x_c, y_c)`` under the SE
    kernel with unit variance: ``(mean (n,), cov (n, n))`` in float64."""
    from bayesfn.covariance import GPSampler

    x = torch.cat([x_c, x_t]).double()
    k = GPSampler("rbf", lengthscale=lengthscale).covariance(x)[0]
    k = k + noise * torch.eye(x.shape[0], dtype=torch.float64)
    c = x_c.shape[0]
    sol = torch.linalg.solve(k[:c, :c], k[:c, c:])
    mean = sol.T @ y_c.double()[:, 0]
    cov = k[c:, c:] - k[:c, c:].T @ sol
    return mean, 0.5 * (cov + cov.T)


def _neural_diffusion_process(out: Path, smoke: bool, seed: int) -> dict[str, Any]:
    """An NDP learns a GP prior from function draws; its RePaint posterior given five
    points is compared with the exact GP posterior."""
    import matplotlib.pyplot as plt

    from bayesfn.data import FunctionSampler, sample_functions
    from bayesfn.plotting import plot_predictive_1d, save_figure
    from bayesfn.posterior import GaussianPosterior
    from bayesfn.processes import NeuralDiffusionProcess

    ls, noise_std = 0.5, 0.1
    data = FunctionSampler(
        "se", 16 if smoke else 32, (16, 24), lengthscale=ls, variance=1.0, noise_std=noise_std
    )
    ndp = NeuralDiffusionProcess(hidden=16, num_layers=2, num_heads=4, num_steps=50)
    ndp.fit(data, max_steps=150 if smoke else 4000, seed=seed, progress_bar=not smoke)
    task = sample_functions(
        "se", 1, 45, lengthscale=ls, variance=1.0, noise_std=noise_std, seed=seed + 1
    )
    x_c, y_c = task.x[0, :5], task.y[0, :5]
    x_t, y_t = task.x[0, 5:], task.y[0, 5:]
    post = ndp.posterior(x_t, context=(x_c, y_c), num_samples=32 if smoke else 256, seed=seed)
    mean, cov = _exact_gp_posterior(x_c, y_c, x_t, ls, noise_std**2)
    gp = GaussianPosterior(mean[:, None], cov)
    n = x_t.shape[0]
    ndp_ll = float(ndp.log_prob(x_t, y_t, context=(x_c, y_c), ode_steps=10 if smoke else 50))
    low, high = post.interval(0.95)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for ax, p, title in ((axes[0], post, "NDP (RePaint draws)"), (axes[1], gp, "exact GP")):
        plot_predictive_1d(p, x_t, x_obs=x_c, y_obs=y_c, ax=ax, num_samples=0)
        ax.set_title(f"{title}: 95 % band of y")
    save_figure(fig, out / "neural_diffusion_process.png")
    plt.close(fig)
    return {
        "model": "NeuralDiffusionProcess(hidden=16, num_layers=2, num_heads=4, num_steps=50)",
        "data": f"SE draws (lengthscale {ls}, noise {noise_std}); one task, 5 context points",
        "metrics": {
            "NDP exact log-lik per target (ODE)": ndp_ll / n,
            "exact GP log-lik per target": float(gp.log_prob(y_t.double())) / n,
            "NDP 95% coverage": float(((y_t >= low) & (y_t <= high)).float().mean()),
            "max |NDP mean - GP mean|": float((post.mean[:, 0].double() - mean).abs().max()),
        },
        "plots": ["neural_diffusion_process.png"],
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
    "operator_flow_matching": _operator_flow_matching,
    "implicit_vi": _implicit_vi,
    "neural_diffusion_process": _neural_diffusion_process,
    "functional_prior": _functional_prior,
}


def _cell(text: str) -> str:
    """A Markdown table cell: ``|`` escaped, line breaks flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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
            cells = [head[0], head[1], metric, f"{value:.4g}", tail[0], tail[1]]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    for e in entries:
        lines += [f"![{p}]({p})" for p in e["plots"]]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
