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
    x = torch.cat([torch.rand(n // 2, 1, generator=g) * 2 - 3, torch.rand(n - n // 2, 1, generator=g) * 2 + 1])
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
        gp.posterior(x_test), x_test, x_obs=x, y_obs=y, generator=torch.Generator().manual_seed(seed)
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


STEPS: dict[str, Callable[[Path, bool, int], dict[str, Any]]] = {
    "gaussian_process": _gaussian_process,
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
            entry = {"model": name, "data": "", "metrics": {}, "plots": [], "status": f"failed: {err}"}
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
            lines.append(f"| {head[0]} | {head[1]} | {metric} | {value:.4g} | {tail[0]} | {tail[1]} |")
    lines.append("")
    for e in entries:
        lines += [f"![{p}]({p})" for p in e["plots"]]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
