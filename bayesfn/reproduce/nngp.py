"""Reproduction: Lee, Yun, Yang & Lee, "Scale Mixtures of Neural Network Gaussian
Processes", ICLR 2022 (arXiv 2107.01408): the regression table.

Test NLL of three infinite-width networks that differ only in the prior on the
last-layer variance σ²: a point mass (the NNGP), an inverse gamma (the Student-t
process) and a Burr XII (a heavy-tailed process by quadrature), on eight UCI sets and two
synthetic sets.

``protocol="paper"`` (default) follows the authors' code of the pre-ICLR version
(``yuneg11/Scale-Mixtures-of-NNGP`` at 596a233, ``experiments/regression.py`` and
``experiments/data.py``; grid from ``reg.sh`` and selection from ``opt.py`` at edba223):

* one split: the rows permuted with NumPy ``RandomState(10)``, the first 80 % train,
  the next 10 % validation, the rest test; x and y standardised with the first 80 %'s
  mean and (population) std; then train and validation re-shuffled together with the
  run's seed (10 in the paper; replicates use 10, 11, ...), the test set staying fixed.
  Their loaders read ``yacht`` and ``naval`` with a header row, which drops the first
  data row; we drop it too. Synthetic sets: ``x = linspace(−n/2, n/2, n)``, an RBF
  (ℓ = 1) GP draw from ``RandomState(829)`` (A, n = 100, + 0.2·N(0, 1)) or
  ``RandomState(761)`` (B, n = 300, + 0.8·t₁), drawn as they are.
* a grid over depth {1, 4, 16}, activation {erf, ReLU}, σ_w² {1, 2, 4}, σ_b² {0, 0.09,
  1} and the jitter ``ε = 10^(−6 + e/2)``, e ∈ {5, ..., 9}, *relative* to mean diag K̄
  (neural-tangents' ``diag_reg``); per method: NNGP readout variance {1, 4}, inverse
  gamma a, b ∈ {0.5, 1, 1.5, 2, 4, 8}, Burr XII c, d ∈ {1, 2, 3}; each method picks
  its own best point by validation NLL.
* the NLL is the mean per-point NLL on standardised y of the predictive of the
  *latent* f (their ``gradient_descent_mse_ensemble(..., get="nngp",
  compute_cov=True)`` covariance carries no observation noise). We report it, and
  beside it the standard NLL of the predictive of y (noise included) and both in the
  original units (``+ log y_std``).

Remaining differences: their Burr XII σ² posterior is importance-sampled with 1,000
prior draws and a fixed absolute jitter 1e-4 in its likelihood; ours is the exact
Gauss–Legendre posterior under the same ``K̄ + τ²I`` as the predictive. Their
inverse-gamma ``q`` uses ``(b/a)K̄ + εI`` with an absolute ε; ours ``K̄ + τ²I``. The
former decouples the noise inside ``q`` from the model's through ``a/b`` and so can
inflate the latent predictive's scale; with it, a seed-10 experiment moves concrete's
inverse-gamma NLL from 0.87 to 0.44 and power's from 0.55 to 0.07 (paper 0.44 and
−0.13). We keep the consistent Student-t process.

``protocol="ml"`` is our own: Hernández-Lobato & Adams splits, a 2-hidden-layer ReLU
NNGP, the NNGP and Student-t hyperparameters by exact marginal likelihood, Burr XII
(c, d) by validation NLL; synthetic sets from the issue's description (x ~ U(−3, 3)).
Training sets larger than ``max_train`` are subsampled (recorded in ``results.json``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayesfn.reproduce.results import make_results, result_row

logger = logging.getLogger(__name__)

PAPER = "Lee, Yun, Yang & Lee, Scale Mixtures of Neural Network Gaussian Processes, ICLR 2022"

# test NLL, NNGP / inverse gamma / Burr XII (pre-ICLR version of the paper)
PAPER_NLL: dict[str, tuple[float, float, float]] = {
    "boston": (1.14, 1.08, 1.06),
    "concrete": (0.44, 0.44, 0.38),
    "energy": (-1.30, -1.45, -1.41),
    "kin8nm": (0.11, 0.11, 0.11),
    "naval": (-3.82, -3.49, -3.53),
    "power": (-0.05, -0.13, -0.07),
    "wine": (0.16, 0.15, 0.19),
    "yacht": (-1.35, -1.38, -1.36),
    "synthetic_a": (2.40, 1.01, 1.66),
    "synthetic_b": (2.06, 1.77, 1.96),
}
METHODS = ("nngp", "inverse_gamma", "burr12")

PAPER_GRID: dict[str, list] = {
    "depth": [1, 4, 16],
    "activation": ["erf", "relu"],
    "w_var": [1.0, 2.0, 4.0],
    "b_var": [0.0, 0.09, 1.0],
    "relative_noise": [10 ** (-6 + e / 2) for e in (5, 6, 7, 8, 9)],
    "nngp": {"value": [1.0, 4.0]},
    "inverse_gamma": {"a": [0.5, 1.0, 1.5, 2.0, 4.0, 8.0], "b": [0.5, 1.0, 1.5, 2.0, 4.0, 8.0]},
    "burr12": {"c": [1.0, 2.0, 3.0], "d": [1.0, 2.0, 3.0]},
}

SCALES: dict[str, dict[str, Any]] = {
    # protocol "paper"
    "smoke": {
        "datasets": ["yacht", "boston", "synthetic_b"],
        "replicates": 1,
        "max_train": 120,
        "max_valid": 60,
        "grid": {
            **PAPER_GRID,
            "depth": [1],
            "activation": ["relu"],
            "w_var": [1.0, 2.0],
            "b_var": [0.09],
            "relative_noise": [1e-3, 1e-2],
            "inverse_gamma": {"a": [1.0, 2.0], "b": [1.0, 2.0]},
            "burr12": {"c": [1.0, 2.0], "d": [1.0, 2.0]},
        },
    },
    # the CPU run we could afford: the paper's grid without depth 16, big sets subsampled
    "cpu": {
        "datasets": list(PAPER_NLL),
        "replicates": 2,
        "max_train": 1000,
        "max_valid": 500,
        "grid": {**PAPER_GRID, "depth": [1, 4]},
    },
    # the paper's full grid and training sets
    "full": {
        "datasets": list(PAPER_NLL),
        "replicates": 5,
        "max_train": None,
        "max_valid": None,
        "grid": PAPER_GRID,
    },
}

# protocol "ml" (ours)
ML_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "datasets": ["yacht", "boston", "synthetic_b"],
        "splits": 1,
        "max_train": 120,
        "max_test": 100,
        "steps": 15,
        "burr_grid": {"c": [1.0, 3.0], "d": [1.0]},
    },
    "full": {
        "datasets": list(PAPER_NLL),
        "splits": 20,
        "max_train": 1000,
        "max_test": None,
        "steps": 150,
        "burr_grid": {"c": [0.5, 1.0, 2.0, 4.0], "d": [0.5, 1.0, 2.0, 4.0]},
    },
}
ML_SCALES["cpu"] = ML_SCALES["full"]

# the authors' loaders read these files with a header row, losing the first data row
_HEADER_DROPS_FIRST_ROW = {"yacht", "naval"}


def paper_raw(name: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows in the authors' order: ``x (n, d)``, ``y (n,)``, unstandardised.

    UCI sets come from the Hernández-Lobato & Adams copies of the UCI files (the same
    row order as the originals); synthetic sets are drawn as in the authors' loader.
    """
    if name in ("synthetic_a", "synthetic_b"):
        n, seed = (100, 829) if name == "synthetic_a" else (300, 761)
        rs = np.random.RandomState(seed)
        x = np.linspace(-n / 2, n / 2, n)[:, None]
        cov = np.exp(-0.5 * (x - x.T) ** 2)
        f = rs.multivariate_normal(mean=np.zeros(n), cov=cov, size=1).ravel()
        noise = rs.standard_normal(n) * 0.2 if n == 100 else rs.standard_t(1, size=n) * 0.8
        return x, f + noise
    if name not in PAPER_NLL:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(PAPER_NLL)}")
    from bayesfn.data import load_uci_rows

    x, y = load_uci_rows(name, root)
    if name in _HEADER_DROPS_FIRST_ROW:
        x, y = x[1:], y[1:]
    return x, y


def paper_split(name: str, seed: int = 10, root: str | Path | None = None) -> dict[str, Any]:
    """The authors' split (see the module docstring): ``x_train, y_train, x_valid,
    y_valid, x_test, y_test`` as float64 tensors (``y`` as ``(n, 1)``), standardised with
    the first 80 %'s statistics, and ``y_std`` (float)."""
    x, y = paper_raw(name, root)
    perm = np.random.RandomState(10).permutation(x.shape[0])
    x, y = x[perm], y[perm]
    n_train, n_valid = int(0.8 * len(x)), int(0.1 * len(x))
    x_mean, x_std = x[:n_train].mean(0), x[:n_train].std(0)
    y_mean, y_std = y[:n_train].mean(), y[:n_train].std()
    with np.errstate(divide="ignore", invalid="ignore"):
        # constant columns become NaN there and are then zeroed, as in their loader
        x = np.nan_to_num((x - x_mean) / x_std)
    y = (y - y_mean) / y_std
    trval = np.random.RandomState(seed).permutation(n_train + n_valid)
    x_tv, y_tv = x[: n_train + n_valid][trval], y[: n_train + n_valid][trval]
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)  # noqa: E731
    return {
        "x_train": t(x_tv[:n_train]),
        "y_train": t(y_tv[:n_train, None]),
        "x_valid": t(x_tv[n_train:]),
        "y_valid": t(y_tv[n_train:, None]),
        "x_test": t(x[n_train + n_valid :]),
        "y_test": t(y[n_train + n_valid :, None]),
        "y_std": float(y_std),
    }


def synthetic(name: str, seed: int) -> tuple[torch.Tensor, ...]:
    """Synthetic set A (100 points, 0.2·N(0, 1) noise) or B (300 points, 0.8·Cauchy
    noise) on an RBF-GP draw (lengthscale 1, variance 1) over x ~ U(−3, 3); 80 % / 20 %
    train / test, both standardised with the training statistics.

    Returns:
        ``x_train (n, 1), y_train (n, 1), x_test (n*, 1), y_test (n*, 1)``.
    """
    n, noise = (100, "gauss") if name == "synthetic_a" else (300, "cauchy")
    rng = np.random.default_rng(1000 + seed)
    x = rng.uniform(-3, 3, size=(n, 1))
    k = np.exp(-0.5 * (x - x.T) ** 2) + 1e-8 * np.eye(n)
    f = np.linalg.cholesky(k) @ rng.standard_normal(n)
    eps = 0.2 * rng.standard_normal(n) if noise == "gauss" else 0.8 * rng.standard_cauchy(n)
    y = (f + eps)[:, None]
    perm = rng.permutation(n)
    tr, te = perm[: int(0.8 * n)], perm[int(0.8 * n) :]
    xm, xs = x[tr].mean(0), x[tr].std(0)
    ym, ys = y[tr].mean(0), y[tr].std(0)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return t((x[tr] - xm) / xs), t((y[tr] - ym) / ys), t((x[te] - xm) / xs), t((y[te] - ym) / ys)


def _load(name: str, split: int, seed: int) -> tuple[torch.Tensor, ...]:
    if name.startswith("synthetic"):
        return synthetic(name, seed + split)
    from bayesfn.data import load_uci

    s = load_uci(name, split)
    return s.x_train, s.y_train, s.x_test, s.y_test


def _subsample(x, y, limit, generator):
    if limit is None or x.shape[0] <= limit:
        return x, y
    idx = torch.randperm(x.shape[0], generator=generator)[:limit]
    return x[idx], y[idx]


def _test_nll(model, x, y, chunk: int = 250, observation_noise: bool = True) -> float:
    """Mean per-point predictive NLL (of y, or of the latent f when
    ``observation_noise=False``), in chunks of test points."""
    total = 0.0
    for start in range(0, x.shape[0], chunk):
        post = model.posterior(x[start : start + chunk], observation_noise=observation_noise)
        target = y[start : start + chunk].to(device=post.device, dtype=post.dtype)
        total -= float(post.marginal_log_prob(target).sum())
    return total / x.shape[0]


def run_one(
    name: str, split: int, seed: int, cfg: dict[str, Any], device: str = "cpu"
) -> dict[str, float]:
    """Protocol ``"ml"``: fit the three processes on one split and return their test
    NLLs (predictive of y, standardised)."""
    from bayesfn.bayesnn import ScaleMixtureNNGP

    g = torch.Generator().manual_seed(seed * 1000 + split)
    x_tr, y_tr, x_te, y_te = _load(name, split, seed)
    x_tr, y_tr = _subsample(x_tr, y_tr, cfg["max_train"], g)
    x_te, y_te = _subsample(x_te, y_te, cfg["max_test"], g)
    perm = torch.randperm(x_tr.shape[0], generator=g)
    n_val = max(1, x_tr.shape[0] // 10)
    val, fit = perm[:n_val], perm[n_val:]
    common = {
        "depth": 2,
        "activation": "relu",
        "w_std": 1.5,
        "b_std": 0.1,
        "noise": 0.1,
        "device": device,
    }
    fit_kw = {"max_steps": cfg["steps"], "lr": 0.05, "seed": seed, "progress_bar": False}
    out = {}
    nngp = ScaleMixtureNNGP(prior="point_mass", **common).fit(x_tr[fit], y_tr[fit], **fit_kw)
    out["nngp"] = _test_nll(nngp, x_te, y_te)
    t = ScaleMixtureNNGP(prior="inverse_gamma", **common).fit(x_tr[fit], y_tr[fit], **fit_kw)
    out["inverse_gamma"] = _test_nll(t, x_te, y_te)
    h = nngp.fit_result_.diagnostics["hyperparameters"]
    burr = ScaleMixtureNNGP(
        prior="burr12",
        depth=2,
        activation="relu",
        w_std=h["w_std"],
        b_std=h["b_std"],
        w_std_last=h["w_std_last"],
        noise=h["noise"],
        learn=(),
        device=device,
    ).fit(
        x_tr[fit],
        y_tr[fit],
        method="grid",
        grid=cfg["burr_grid"],
        validation=(x_tr[val], y_tr[val]),
        progress_bar=False,
    )
    out["burr12"] = _test_nll(burr, x_te, y_te)
    out["burr12_quadrature_error"] = burr.fit_result_.diagnostics.get("quadrature_error", math.nan)
    return out


_PRIORS = {"nngp": "point_mass", "inverse_gamma": "inverse_gamma", "burr12": "burr12"}


def _grid_fit(method, x_tr, y_tr, x_va, y_va, grid, device):
    """The paper's selection for one method: every (depth, activation) model searched
    over its grid; the lowest validation NLL (latent-f predictive) wins."""
    from bayesfn.bayesnn import ScaleMixtureNNGP

    best = None
    for depth in grid["depth"]:
        for act in grid["activation"]:
            model = ScaleMixtureNNGP(
                depth=depth,
                activation=act,
                prior=_PRIORS[method],
                learn=(),
                w_std_last=1.0,
                b_std_last=0.0,
                device=device,
            )
            model.fit(
                x_tr,
                y_tr,
                method="grid",
                grid={
                    "w_std": [math.sqrt(v) for v in grid["w_var"]],
                    "b_std": [math.sqrt(v) for v in grid["b_var"]],
                    "relative_noise": grid["relative_noise"],
                    **grid[method],
                },
                validation=(x_va, y_va),
                score_observation_noise=False,
                progress_bar=False,
            )
            score = model.fit_result_.diagnostics["grid"]["best_val_nll"]
            if best is None or score < best[0]:
                best = (score, model, depth, act)
    return best


def run_one_paper(name: str, seed: int, cfg: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Protocol ``"paper"`` on one replicate (train/validation shuffle ``seed``).

    Returns per method: test NLL of the latent-f predictive (the paper's scale) and of
    the y predictive, both standardised; the chosen settings; and the sizes used.
    """
    data = paper_split(name, seed)
    g = torch.Generator().manual_seed(seed)
    x_tr, y_tr = _subsample(data["x_train"], data["y_train"], cfg["max_train"], g)
    x_va, y_va = _subsample(data["x_valid"], data["y_valid"], cfg["max_valid"], g)
    x_te, y_te = data["x_test"], data["y_test"]
    out: dict[str, Any] = {
        "n_train": int(x_tr.shape[0]),
        "n_train_available": int(data["x_train"].shape[0]),
        "n_valid": int(x_va.shape[0]),
        "n_test": int(x_te.shape[0]),
        "log_y_std": math.log(data["y_std"]),
    }
    for method in METHODS:
        score, model, depth, act = _grid_fit(method, x_tr, y_tr, x_va, y_va, cfg["grid"], device)
        out[method] = _test_nll(model, x_te, y_te, observation_noise=False)
        out[f"{method}_y"] = _test_nll(model, x_te, y_te, observation_noise=True)
        chosen = {"depth": depth, "activation": act, "val_nll": score}
        chosen.update(model.fit_result_.diagnostics["grid"]["best"])
        out[f"{method}_chosen"] = chosen
        if method == "burr12":
            out["burr12_quadrature_error"] = model.fit_result_.diagnostics["quadrature_error"]
    return out


def run(
    *,
    scale: str = "full",
    seeds=(0,),
    device: str = "cpu",
    out: str | Path = "results/nngp",
    protocol: str = "paper",
    datasets: list[str] | None = None,
    mnist: bool | None = None,
) -> dict:
    """Run the regression table and the MNIST robustness table, and plot them.

    Args:
        scale: ``"smoke"``, ``"cpu"`` (the paper's grid without depth 16, training sets
            capped at 1,000 points, 2 replicates) or ``"full"`` (the paper's grid and
            full training sets, 5 replicates).
        seeds: each seed ``s`` runs replicates with shuffle seeds ``10 + s·R + r``,
            ``r < R`` (seed 0, replicate 0 is the paper's seed 10).
        device: torch device.
        out: folder for the plot.
        protocol: ``"paper"`` (the authors' split, grid and latent-f NLL) or ``"ml"``
            (our marginal-likelihood protocol on the Hernández-Lobato & Adams splits).
        datasets: a subset of the scale's data sets.
        mnist: also run the classification robustness table
            (:func:`bayesfn.reproduce.nngp_mnist.run_mnist`, first seed; its smoke size at
            ``scale="smoke"``, the paper's size otherwise). Default: on unless ``datasets``
            picks a subset of the regression sets.
    """
    if protocol not in ("paper", "ml"):
        raise ValueError(f"protocol must be 'paper' or 'ml'; got {protocol!r}")
    table = SCALES if protocol == "paper" else ML_SCALES
    if scale not in table:
        raise ValueError(f"scale must be one of {sorted(table)}; got {scale!r}")
    cfg = table[scale]
    names = list(cfg["datasets"]) if datasets is None else list(datasets)
    for name in names:
        if name not in PAPER_NLL:
            raise ValueError(f"unknown data set {name!r}; choose from {sorted(PAPER_NLL)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    per_set: dict[str, dict[str, list[float]]] = {}
    extra_rows: dict[str, dict[str, list[float]]] = {}
    details: dict[str, list[dict[str, Any]]] = {}
    quad_errors = []
    for name in names:
        per_set[name] = {m: [] for m in METHODS}
        extra_rows[name] = {}
        details[name] = []
        for seed in seeds:
            reps = range(cfg["replicates"]) if protocol == "paper" else range(cfg["splits"])
            for r in reps:
                t0 = time.perf_counter()
                if protocol == "paper":
                    shuffle = 10 + seed * cfg["replicates"] + r
                    res = run_one_paper(name, shuffle, cfg, device)
                    res["shuffle_seed"] = shuffle
                    for m in METHODS:
                        for key, value in (
                            (f"latent, original units ({m})", res[m] + res["log_y_std"]),
                            (f"y predictive ({m})", res[f"{m}_y"]),
                            (
                                f"y predictive, original units ({m})",
                                res[f"{m}_y"] + res["log_y_std"],
                            ),
                        ):
                            extra_rows[name].setdefault(key, []).append(value)
                else:
                    res = run_one(name, r, seed, cfg, device)
                res["seconds"] = time.perf_counter() - t0
                for m in METHODS:
                    per_set[name][m].append(res[m])
                quad_errors.append(res["burr12_quadrature_error"])
                details[name].append(res)
                logger.info("%s replicate %d seed %d: %s", name, r, seed, res)

    def stats(vals):
        vals = np.asarray(vals, dtype=float)
        se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else None
        return float(vals.mean()), se

    rows = []
    for name, res in per_set.items():
        for i, m in enumerate(METHODS):
            mean, se = stats(res[m])
            rows.append(
                result_row(name, f"test NLL ({m})", mean, paper=PAPER_NLL[name][i], ours_std=se)
            )
    for name, res in extra_rows.items():
        for key, vals in res.items():
            mean, se = stats(vals)
            rows.append(result_row(name, f"test NLL, {key}", mean, ours_std=se))
    _plot(per_set, out / "nngp_regression_nll.png")
    plots = ["nngp_regression_nll.png"]
    classification = None
    if mnist if mnist is not None else datasets is None:
        from bayesfn.reproduce.nngp_mnist import run_mnist

        classification = run_mnist(
            scale="smoke" if scale == "smoke" else "full",
            seed=next(iter(seeds)),
            device=device,
            out=out,
        )
        rows.extend(classification.pop("rows"))
        plots.extend(classification.pop("plots"))
    if protocol == "paper":
        description = (
            "the authors' pre-ICLR protocol: RandomState(10) 80/10/10 split, test fixed, "
            "train/validation re-shuffled per replicate; grid over depth, activation, "
            "sigma_w^2, sigma_b^2, relative jitter and prior parameters, each method "
            "selected by validation NLL; 'test NLL (method)' is the mean per-point NLL "
            "of the latent-f predictive on standardised y (the paper's scale)"
        )
    else:
        description = (
            "ours: 2-hidden-layer ReLU NNGP; NNGP and Student-t by marginal likelihood, "
            "Burr XII (c, d) by validation NLL; predictive of y; standardised targets"
        )
    return make_results(
        PAPER,
        scale,
        list(seeds),
        rows,
        protocol=protocol,
        protocol_description=description,
        settings={k: v for k, v in cfg.items() if k != "datasets"},
        datasets=names,
        details=details,
        max_burr_quadrature_error=float(np.nanmax(quad_errors)) if quad_errors else None,
        mnist=classification,
        seconds=time.perf_counter() - start,
        plots=plots,
    )


def _plot(per_set: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayesfn.plotting import save_figure

    names = list(per_set)
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.2))
    width = 0.27
    for i, m in enumerate(METHODS):
        ours = [np.mean(per_set[n][m]) for n in names]
        paper = [PAPER_NLL[n][i] for n in names]
        pos = np.arange(len(names)) + (i - 1) * width
        ax.bar(pos, ours, width, label=f"{m} (ours)")
        ax.scatter(
            pos, paper, marker="_", s=200, color="k", zorder=3, label="paper" if i == 0 else None
        )
    ax.set_xticks(np.arange(len(names)), names, rotation=30)
    ax.set_ylabel("test NLL (standardised y)")
    ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)
