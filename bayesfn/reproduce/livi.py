"""Reproduction: Uppal, Stensbo-Smidt, Boomsma & Frellsen, "Implicit Variational
Inference for High-Dimensional Posteriors", NeurIPS 2023 (arXiv 2310.06643), LIVI.

The paper's tables could not be retrieved; the reference numbers are the outputs saved
in the official toy notebook (``UppalAnshuk/LIVI_neurips23`` at 57ea072,
``toy_posterior_testing.ipynb``): the learned observation noise sd is 0.274 with the
exact log-determinant and 0.313 with the ``s_min`` bound, for a true 0.3.

Experiments (``EXPERIMENTS``; :func:`run` runs the ones asked for):

* ``toy_gap``: 1-D regression with a gap in the inputs (:func:`toy_gap`).

Each experiment is ``fn(*, scale, seeds, device, out) -> {"rows": [...], "details":
{...}, "plots": [...]}``, with its own presets in ``fn.SCALES``, validated before any
work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bayesfn.reproduce.results import make_results, result_row

PAPER = (
    "Uppal, Stensbo-Smidt, Boomsma & Frellsen, Implicit Variational Inference for "
    "High-Dimensional Posteriors, NeurIPS 2023"
)

# the official toy notebook's learned noise sd (truth 0.3)
NOTEBOOK_NOISE = {"exact": 0.274, "bound": 0.313}
TRUE_NOISE = 0.3
NOTEBOOK = "official toy notebook (UppalAnshuk/LIVI_neurips23 toy_posterior_testing.ipynb)"


# ---------------------------------------------------------------- (a) toy gap
def toy_data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points, half in ``[-1.5, -0.5]`` and half in ``[0.5, 1.5]``, with
    ``y = sin(3x) + 0.3x + N(0, 0.3²)``: ``x (n, 1)``, ``y (n, 1)``. Our own data set
    (the notebook's could not be recovered), with the notebook's noise level."""
    g = torch.Generator().manual_seed(seed)
    half = n // 2
    x = torch.cat([torch.rand(half, generator=g) - 1.5, torch.rand(n - half, generator=g) + 0.5])
    x = x[:, None]
    return x, toy_function(x) + TRUE_NOISE * torch.randn(x.shape, generator=g)


def toy_function(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(3 * x) + 0.3 * x


_TOY_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "n": 40,
        "steps": {"exact": 60, "bound": 60},
        "weightings": ["official"],
        "num_samples": 3,
        "predict_samples": 200,
    },
    # what the shared CPU box allows: the notebook's objective, K = 10, 3000 steps each
    "cpu": {
        "n": 40,
        "steps": {"exact": 3000, "bound": 3000},
        "weightings": ["official"],
        "num_samples": 10,
        "predict_samples": 2000,
    },
    # the notebook's budgets: 7500 iterations exact, 8000 with the bound, K = 3
    "full": {
        "n": 40,
        "steps": {"exact": 7500, "bound": 8000},
        "weightings": ["official", "elbo"],
        "num_samples": 3,
        "predict_samples": 2000,
    },
}


def _toy_fit(x, y, entropy, weighting, cfg, seed, device):
    from bayesfn.bayesnn import BNN, MLP, GaussianLikelihood, ImplicitVI

    inference = ImplicitVI(
        generator="mlp",
        noise_dim=60,
        hidden=[105],
        activation="elu",
        output_noise=3e-3,
        entropy=entropy,
        num_samples=cfg["num_samples"],
        max_steps=cfg["steps"][entropy],
        lr=5e-3,
        weighting=weighting,
    )
    model = BNN(
        MLP(hidden=(7, 10), activation="elu"),
        likelihood=GaussianLikelihood(0.1, learn_noise=True, noise_prior=None),
        inference=inference,
        device=device,
    )
    return model.fit(x, y, seed=seed, progress_bar=False)


def toy_gap(
    *, scale: str, seeds: list[int], device: str = "cpu", out: str | Path = "."
) -> dict[str, Any]:
    """(a) 1-D regression with a gap: does LIVI's predictive band widen between the two
    clusters, and is the learned noise near the truth?

    The notebook's setting: a 1-7-10-1 ELU BNN (105 weights; ours ``sqrt(fan_in)``
    scaled with N(0, 1) priors), an MLP generator 60 → 105 → 105, σ = 3e-3, K = 3, the
    observation noise learned as a point estimate, with the exact log-determinant and
    with the ``s_min`` bound (5 solver iterations). ``weighting="official"`` is the
    notebook's objective (log prior × 0.1); ``"elbo"`` the exact ELBO (full scale).

    Rows per (entropy, weighting): the learned noise sd beside the notebook's, and the
    *gap ratio*: the predictive sd of f at x = 0 (the gap's centre) over its mean at the
    training inputs (> 1: the band widens in the gap).
    """
    if scale not in _TOY_SCALES:
        raise ValueError(f"scale must be one of {sorted(_TOY_SCALES)}; got {scale!r}")
    cfg = _TOY_SCALES[scale]
    out = Path(out)
    rows, details, fits = [], {}, {}
    for entropy in ("exact", "bound"):
        for weighting in cfg["weightings"]:
            key = f"{entropy}, {weighting}"
            noise, ratio, seconds = [], [], []
            for seed in seeds:
                x, y = toy_data(cfg["n"], seed)
                start = time.perf_counter()
                model = _toy_fit(x, y, entropy, weighting, cfg, seed, device)
                seconds.append(time.perf_counter() - start)
                log_noise = model.state_["extra"]["likelihood.log_noise"]
                noise.append(float(log_noise.exp().sqrt().cpu() * model.y_std_.cpu()))
                g = torch.Generator().manual_seed(seed)
                grid = torch.cat([torch.zeros(1, 1), x])
                post = model.posterior(grid, num_samples=cfg["predict_samples"], generator=g)
                sd = post.stddev[:, 0].cpu()
                ratio.append(float(sd[0] / sd[1:].mean()))
                fits[(key, seed)] = (model, x, y)
            rows.append(
                result_row(
                    f"toy gap, {key}",
                    "learned noise sd (truth 0.3)",
                    _mean(noise),
                    ours_std=_std(noise),
                    seeds=seeds,
                    **(
                        {"reference": NOTEBOOK_NOISE[entropy], "reference_source": NOTEBOOK}
                        if weighting == "official"
                        else {}
                    ),
                )
            )
            rows.append(
                result_row(
                    f"toy gap, {key}",
                    "predictive sd at the gap centre / at the data",
                    _mean(ratio),
                    ours_std=_std(ratio),
                    seeds=seeds,
                )
            )
            details[key] = {"noise_sd": noise, "gap_ratio": ratio, "seconds": seconds}
    plots = [_toy_plot(fits, seeds[0], cfg, out)]
    return {"rows": rows, "details": details, "plots": plots}


toy_gap.SCALES = _TOY_SCALES


def _toy_plot(fits, seed, cfg, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for (k, s) in fits if s == seed]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    grid = torch.linspace(-2.5, 2.5, 200)[:, None]
    for ax, key in zip(axes[0], keys, strict=True):
        model, x, y = fits[(key, seed)]
        g = torch.Generator().manual_seed(seed)
        post = model.posterior(grid, observation_noise=True, num_samples=400, generator=g)
        mean, sd = post.mean[:, 0].cpu(), post.stddev[:, 0].cpu()
        ax.fill_between(grid[:, 0], mean - 2 * sd, mean + 2 * sd, alpha=0.3, label="±2 sd")
        ax.plot(grid[:, 0], mean, label="mean")
        ax.plot(grid[:, 0], toy_function(grid)[:, 0], "k--", lw=1, label="truth")
        ax.plot(x[:, 0], y[:, 0], "k.", ms=4)
        ax.set_title(f"LIVI ({key})")
        ax.set_ylim(-3.5, 3.5)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "livi_toy_gap.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float | None:
    if len(v) < 2:
        return None
    m = _mean(v)
    return math.sqrt(sum((a - m) ** 2 for a in v) / (len(v) - 1))


# ---------------------------------------------------------------- registry
EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "toy_gap": toy_gap,
}
#: the presets every experiment accepts (what ``bayesfn reproduce livi --scale`` checks)
SCALES = sorted(set.intersection(*(set(e.SCALES) for e in EXPERIMENTS.values())))


def run(
    *,
    scale: str,
    seeds: list[int],
    device: str = "cpu",
    out: str | Path = ".",
    experiments: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``experiments`` (default all of ``EXPERIMENTS``) at ``scale`` and return the
    ``results.json`` payload; plots go into ``out``."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
    names = list(EXPERIMENTS) if experiments is None else list(experiments)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {sorted(EXPERIMENTS)}")
    for name in names:  # validate every preset before any work
        if scale not in EXPERIMENTS[name].SCALES:
            raise ValueError(
                f"experiment {name!r} has no scale {scale!r}; it has "
                f"{sorted(EXPERIMENTS[name].SCALES)}"
            )
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    rows, details, plots, seconds = [], {}, [], {}
    for name in names:
        start = time.perf_counter()
        part = EXPERIMENTS[name](scale=scale, seeds=list(seeds), device=device, out=out)
        seconds[name] = round(time.perf_counter() - start, 1)
        rows += part["rows"]
        details[name] = part["details"]
        plots += part["plots"]
    return make_results(
        PAPER,
        scale,
        list(seeds),
        rows,
        details=details,
        plots=plots,
        seconds=seconds,
        notes=[
            "The paper's tables could not be retrieved (no 'paper' numbers); 'reference' "
            "numbers are the official toy notebook's outputs (learned noise sd, official "
            "weighting).",
            "toy_gap uses our own gap data (the notebook's could not be recovered) and "
            "sqrt(fan_in)-scaled layers with N(0, 1) priors.",
        ],
    )
