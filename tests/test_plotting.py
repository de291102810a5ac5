"""Tests of bayesfn.plotting: figures render headless (Agg) and show what they claim."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

from bayesfn import plotting
from bayesfn.posterior import CategoricalPosterior, GaussianPosterior

matplotlib.use("Agg")

D = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _posterior_1d(n: int = 40):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, generator=gen, dtype=D) * 6 - 3  # unsorted on purpose
    mean = torch.sin(x)
    var = 0.05 + 0.1 * x**2
    return GaussianPosterior(mean, variance=var), x


def test_plot_predictive_1d_renders_band_covering_interval(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    post, x = _posterior_1d()
    x_obs = torch.linspace(-2, 2, 5, dtype=D).reshape(-1, 1)
    y_obs = torch.sin(x_obs)
    ax = plotting.plot_predictive_1d(
        post,
        x,
        x_obs=x_obs,
        y_obs=y_obs,
        num_samples=3,
        generator=torch.Generator().manual_seed(1),
        label="GP",
    )
    lower, upper = post.interval(0.95)
    y_lo, y_hi = ax.get_ylim()
    assert y_lo <= float(lower.min()) and y_hi >= float(upper.max())

    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    vertices = bands[0].get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(float(lower.min()))
    assert vertices[:, 1].max() == pytest.approx(float(upper.max()))
    assert len(ax.lines) == 1 + 3  # mean + sample paths
    mean_line = ax.lines[0]
    assert mean_line.get_label() == "GP"
    assert np.all(np.diff(mean_line.get_xdata()) >= 0)  # drawn sorted by x
    order = np.argsort(x[:, 0].numpy())
    np.testing.assert_allclose(mean_line.get_ydata(), post.mean[:, 0].numpy()[order])

    path = plotting.save_figure(ax.figure, tmp_path / "nested" / "dir" / "predictive.png")
    assert path.exists() and path.stat().st_size > 0
    assert plt.get_fignums() == []  # save_figure closed it


def test_plot_predictive_1d_draws_on_given_axes_without_samples(tmp_path):
    import matplotlib.pyplot as plt

    post, x = _posterior_1d(10)
    _, ax = plt.subplots()
    out = plotting.plot_predictive_1d(post, x, num_samples=0, ax=ax, level=0.5)
    assert out is ax
    assert len(ax.lines) == 1
    path = plotting.save_figure(ax, tmp_path / "axes.png")  # an Axes is accepted too
    assert path.exists()


def test_plot_predictive_1d_bad_inputs():
    post, x = _posterior_1d(10)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1\).*got shape \(10,\)"):
        plotting.plot_predictive_1d(post, x[:, 0])
    with pytest.raises(ValueError, match=r"event_shape \(9, 1\)"):
        plotting.plot_predictive_1d(post, x[:9])
    with pytest.raises(ValueError, match="x_obs was given without y_obs"):
        plotting.plot_predictive_1d(post, x, x_obs=x)
    with pytest.raises(ValueError, match="y_obs must have 10 entries"):
        plotting.plot_predictive_1d(post, x, x_obs=x, y_obs=torch.zeros(3))
    with pytest.raises(ValueError, match="level"):
        plotting.plot_predictive_1d(post, x, level=1.0)


def test_plot_density_2d_orientation_and_values(tmp_path):
    center = torch.tensor([1.0, -1.0], dtype=D)

    def log_prob(points: torch.Tensor) -> torch.Tensor:
        assert points.shape[1] == 2 and points.dtype == D
        return -0.5 * ((points - center) ** 2).sum(-1) - math.log(2 * math.pi)

    samples = torch.randn(50, 2, generator=torch.Generator().manual_seed(2), dtype=D) + center
    ax = plotting.plot_density_2d(
        log_prob,
        xlim=(-3, 3),
        ylim=(-3, 3),
        resolution=61,
        samples=samples,
        dtype=D,
        batch_size=1000,
    )
    image = ax.images[0].get_array()
    assert image.shape == (61, 61)
    row, col = np.unravel_index(np.argmax(image), image.shape)
    grid = np.linspace(-3, 3, 61)
    assert grid[col] == pytest.approx(1.0) and grid[row] == pytest.approx(-1.0)  # x cols, y rows
    assert image.max() == pytest.approx(1 / (2 * math.pi))
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-3, 3)
    assert len(ax.collections) == 1  # the sample overlay
    path = plotting.save_figure(ax.figure, tmp_path / "density.png")
    assert path.exists() and path.stat().st_size > 0


def test_plot_density_2d_bad_inputs():
    def good(points):
        return torch.zeros(points.shape[0])

    with pytest.raises(ValueError, match=r"log_prob_fn must map a \(16, 2\) tensor"):
        plotting.plot_density_2d(
            lambda p: torch.zeros(p.shape[0], 1), xlim=(0, 1), ylim=(0, 1), resolution=4
        )
    with pytest.raises(ValueError, match="NaN"):
        plotting.plot_density_2d(
            lambda p: torch.full((p.shape[0],), math.nan), xlim=(0, 1), ylim=(0, 1), resolution=4
        )
    with pytest.raises(ValueError, match="xlim"):
        plotting.plot_density_2d(good, xlim=(1, 0), ylim=(0, 1))
    with pytest.raises(ValueError, match="resolution"):
        plotting.plot_density_2d(good, xlim=(0, 1), ylim=(0, 1), resolution=1)
    with pytest.raises(ValueError, match=r"samples must have shape \(s, 2\)"):
        plotting.plot_density_2d(
            good, xlim=(0, 1), ylim=(0, 1), resolution=4, samples=torch.zeros(5, 3)
        )


def test_plot_reliability_diagram(tmp_path):
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5]], dtype=D)
    labels = torch.tensor([0, 1, 1, 0])
    ax = plotting.plot_reliability_diagram(CategoricalPosterior(probs), labels, num_bins=5)
    assert ax.get_title().startswith("ECE = ")
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 5
    assert heights[2] == pytest.approx(1.0)  # conf 0.5 in (0.4, 0.6], correct
    assert plotting.save_figure(ax.figure, tmp_path / "rel.png").exists()


def test_save_figure_rejects_non_figures(tmp_path):
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure or Axes"):
        plotting.save_figure(object(), tmp_path / "x.png")
