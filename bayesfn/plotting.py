"""Matplotlib helpers for posteriors, densities and calibration.

Matplotlib is imported inside each function, so ``import bayesfn`` never pulls it in.
Every function draws on the ``ax`` it is given (or on a new ``plt.subplots()`` figure)
and returns that Axes; nothing calls ``plt.show()``. Save and close a figure with
:func:`save_figure`::

    ax = plot_predictive_1d(model.posterior(x), x, x_obs=X, y_obs=y)
    save_figure(ax.figure, "out/predictive.png")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "plot_density_2d",
    "plot_predictive_1d",
    "plot_reliability_diagram",
    "save_figure",
]


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.float64)
        return value.numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a torch.Tensor or array-like; got {type(value).__name__}"
        ) from err


def _column(value: Any, name: str, length: int | None = None) -> np.ndarray:
    """Accept ``(k,)`` or ``(k, 1)``; return a finite ``(k,)`` float array."""
    arr = _numpy(value, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (k, 1) or (k,); got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(
            f"{name} must have {length} entries to match the other argument; got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr.astype(np.float64)


def plot_predictive_1d(
    posterior: Any,
    x: Any,
    *,
    y_obs: Any = None,
    x_obs: Any = None,
    num_samples: int = 5,
    level: float = 0.95,
    ax: Any = None,
    generator: torch.Generator | None = None,
    label: str | None = None,
) -> Any:
    """Plot a 1-D predictive: mean line, central interval band, sample paths, data.

    Args:
        posterior: a posterior with ``batch_shape == ()`` and ``event_shape == (n, 1)``.
        x: the ``(n, 1)`` inputs the posterior was computed at (any order; the curves are
            drawn sorted by ``x``).
        y_obs: optional observations, each ``(k, 1)`` or ``(k,)``; give both or
            neither.
        x_obs: see ``y_obs``.
        num_samples: sample paths to draw (0 for none).
        level: probability of the shaded central interval ``posterior.interval(level)``.
        ax: the Axes to draw on; a new figure is made when ``None``.
        generator: randomness for the sample paths.
        label: legend label of the mean line (default ``"mean"``).

    Returns:
        The Axes.
    """
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1; got {level}")
    num_samples = int(num_samples)
    if num_samples < 0:
        raise ValueError(f"num_samples must be non-negative; got {num_samples}")
    if (y_obs is None) != (x_obs is None):
        given = "y_obs" if y_obs is not None else "x_obs"
        missing = "x_obs" if y_obs is not None else "y_obs"
        raise ValueError(f"{given} was given without {missing}; give both or neither")

    x_arr = _numpy(x, "x")
    if x_arr.ndim != 2 or x_arr.shape[1] != 1:
        raise ValueError(f"x must have shape (n, 1) for a 1-D plot; got shape {x_arr.shape}")
    n = x_arr.shape[0]
    batch = tuple(posterior.batch_shape)
    event = tuple(posterior.event_shape)
    if batch != () or event != (n, 1):
        raise ValueError(
            f"posterior must have batch_shape () and event_shape ({n}, 1) to match x of "
            f"shape {x_arr.shape}; got batch_shape {batch} and event_shape {event}"
        )
    x_line = _column(x_arr, "x")
    order = np.argsort(x_line, kind="stable")
    x_line = x_line[order]

    with torch.no_grad():
        mean = _numpy(posterior.mean, "posterior.mean")[:, 0][order]
        lower, upper = posterior.interval(float(level))
        lower = _numpy(lower, "lower")[:, 0][order]
        upper = _numpy(upper, "upper")[:, 0][order]
        paths = None
        if num_samples > 0:
            paths = _numpy(posterior.sample((num_samples,), generator=generator), "samples")
            paths = paths[:, :, 0][:, order]

    ax = _axes(ax)
    line = ax.plot(x_line, mean, linewidth=2, label=label if label is not None else "mean")[0]
    color = line.get_color()
    ax.fill_between(
        x_line,
        lower,
        upper,
        color=color,
        alpha=0.25,
        linewidth=0,
        label=f"{float(level):.0%} interval",
    )
    if paths is not None:
        for i, path in enumerate(paths):
            ax.plot(
                x_line,
                path,
                color=color,
                linewidth=0.8,
                alpha=0.6,
                label="samples" if i == 0 else None,
            )
    if y_obs is not None:
        xo = _column(x_obs, "x_obs")
        yo = _column(y_obs, "y_obs", length=xo.shape[0])
        ax.scatter(xo, yo, s=12, color="black", zorder=3, label="observed")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="best", fontsize="small")
    return ax


def _limits(value: Any, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair (low, high) of numbers; got {value!r}") from err
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} must be finite with low < high; got ({lo}, {hi})")
    return lo, hi


def plot_density_2d(
    log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    xlim: Sequence[float],
    ylim: Sequence[float],
    resolution: int = 200,
    ax: Any = None,
    samples: Any = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 65536,
    cmap: str = "viridis",
) -> Any:
    """Heatmap of a 2-D density ``exp(log_prob_fn(points))`` on a regular grid.

    Args:
        log_prob_fn: maps a ``(k, 2)`` tensor of points to ``(k,)`` log densities
            (``-inf`` allowed for zero density; NaN is an error). Called under
            ``torch.no_grad`` on chunks of at most ``batch_size`` points.
        xlim: ``(low, high)`` ranges of the grid.
        ylim: see ``xlim``.
        resolution: grid points per axis (at least 2).
        ax: the Axes to draw on; a new figure is made when ``None``.
        samples: optional ``(s, 2)`` points drawn on top (e.g. model samples).
        dtype: of the grid passed to ``log_prob_fn`` (default: torch's default
            dtype, CPU).
        device: see ``dtype``.
        batch_size: largest chunk passed to ``log_prob_fn`` at once.
        cmap: matplotlib colormap name.

    Returns:
        The Axes.
    """
    x_lo, x_hi = _limits(xlim, "xlim")
    y_lo, y_hi = _limits(ylim, "ylim")
    resolution = int(resolution)
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2; got {resolution}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    xs = torch.linspace(x_lo, x_hi, resolution, dtype=dtype, device=device)
    ys = torch.linspace(y_lo, y_hi, resolution, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # rows follow y, columns x
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)

    chunks = []
    with torch.no_grad():
        for chunk in points.split(int(batch_size)):
            out = log_prob_fn(chunk)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (chunk.shape[0],):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"log_prob_fn must map a ({chunk.shape[0]}, 2) tensor to a "
                    f"({chunk.shape[0]},) tensor of log densities; got {shape}"
                )
            chunks.append(out.detach())
    log_density = torch.cat(chunks)
    if torch.isnan(log_density).any() or (log_density == float("inf")).any():
        raise ValueError("log_prob_fn returned NaN or +inf on the grid")
    density = _numpy(log_density.exp(), "density").reshape(resolution, resolution)

    ax = _axes(ax)
    image = ax.imshow(
        density,
        origin="lower",
        extent=(x_lo, x_hi, y_lo, y_hi),
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
    )
    ax.figure.colorbar(image, ax=ax, label="density")
    if samples is not None:
        pts = _numpy(samples, "samples")
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"samples must have shape (s, 2); got shape {pts.shape}")
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color="white", edgecolors="none", alpha=0.7)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    return ax


def plot_reliability_diagram(
    posterior_or_probs: Any, labels: Any, *, num_bins: int = 15, ax: Any = None
) -> Any:
    """Reliability diagram: per-bin accuracy against mean confidence, with the diagonal.

    Bins are those of :func:`bayesfn.metrics.calibration_curve`; the title carries the ECE.

    Args:
        posterior_or_probs: a ``CategoricalPosterior`` or class probabilities ``(..., C)``.
        labels: integer labels ``(...)``.
        num_bins: equal-width confidence bins on ``[0, 1]``.
        ax: the Axes to draw on; a new figure is made when ``None``.

    Returns:
        The Axes.
    """
    from bayesfn.metrics import calibration_curve, ece

    curve = calibration_curve(posterior_or_probs, labels, num_bins=num_bins)
    error = ece(posterior_or_probs, labels, num_bins=num_bins)
    edges = curve.edges.numpy()
    filled = (curve.counts > 0).numpy()
    accuracy = np.where(filled, np.nan_to_num(curve.accuracy.numpy()), 0.0)

    ax = _axes(ax)
    ax.bar(
        edges[:-1],
        accuracy,
        width=np.diff(edges),
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot(
        curve.confidence.numpy()[filled],
        curve.accuracy.numpy()[filled],
        "o",
        color="tab:red",
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE = {error:.3f}")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def save_figure(fig: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> Path:
    """Save ``fig`` (a Figure, or an Axes whose figure is saved) to ``path`` and close it.

    Parent directories are created. Keyword arguments go to ``Figure.savefig``
    (``bbox_inches="tight"`` by default).

    Returns:
        The path written, as a :class:`pathlib.Path`.
    """
    import matplotlib.pyplot as plt

    figure = getattr(fig, "figure", None) if not hasattr(fig, "savefig") else fig
    if figure is None or not hasattr(figure, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure or Axes; got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_kwargs.setdefault("bbox_inches", "tight")
    try:
        figure.savefig(path, **savefig_kwargs)
    finally:
        plt.close(figure)
    return path
