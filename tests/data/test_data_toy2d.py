"""Toy densities: log densities integrate to one, and samples follow them (chi-square test)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesfn.data import sample_rings_nd, sample_toy2d, toy2d_log_prob, toy2d_names
from bayesfn.data.toy2d import rings_nd_log_prob

# Integration / histogram boxes (x1 low, x1 high, x2 low, x2 high) holding all but a
# negligible part of the mass; the cosine and checkerboard boxes are aligned with the
# edges of the support so that midpoint sums are exact there.
BOXES = {
    "rings": (-2.6, 2.6, -2.6, 2.6),
    "mring": (-6.4, 6.4, -6.4, 6.4),
    "banana": (-11.0, 11.0, -7.0, 27.0),
    "funnel": (-11.0, 11.0, -9.0, 9.0),
    "cosine": (-4.0, 4.0, -9.0, 9.0),
    "checkerboard": (-3.0, 3.0, -3.0, 3.0),
    "spiral": (-8.5, 8.5, -8.5, 8.5),
    "wave": (-4.0, 4.0, -3.5, 3.5),
    "cosine_rotated": (-9.5, 9.5, -9.5, 9.5),
    "funnel_rotated": (-14.5, 14.5, -14.5, 14.5),
}
# grid spacing of the integration test: the spiral's density is a 4800-node quadrature per
# point, so it gets a coarser grid (the midpoint sum of a Gaussian of std >= 0.1 on a 0.125
# grid is exact to ~exp(-2 pi^2 0.8^2) ~ 3e-6, by Poisson summation); the
# rotated sets have support edges that are not grid-aligned, which a finer grid resolves
SPACING = {"spiral": 0.125, "cosine_rotated": 0.01}
# sub-cells per histogram cell in the chi-square test: the rotated cosine's support edges
# cut cells obliquely, which coarse midpoint sums get wrong at 40000 samples
SUB = {"cosine_rotated": 48}


def _midpoints(low, high, count):
    h = (high - low) / count
    return low + h * (np.arange(count) + 0.5), h


def _density_grid(name, box, n1, n2):
    """Density at the midpoints of an n1 x n2 grid over ``box``, and the cell area."""
    g1, h1 = _midpoints(box[0], box[1], n1)
    g2, h2 = _midpoints(box[2], box[3], n2)
    pts = torch.from_numpy(np.stack(np.meshgrid(g1, g2, indexing="ij"), axis=-1))
    return toy2d_log_prob(name, pts).exp().numpy(), h1 * h2


def test_names():
    assert toy2d_names() == (
        "rings",
        "mring",
        "banana",
        "funnel",
        "cosine",
        "moons",
        "spirals",
        "checkerboard",
        "spiral",
        "wave",
        "cosine_rotated",
        "funnel_rotated",
    )
    assert set(toy2d_names(with_log_prob=True)) == set(BOXES)


@pytest.mark.parametrize(
    "name",
    # the spiral's grid costs ~1e8 normal evaluations: slow-marked
    [pytest.param(n, marks=pytest.mark.slow) if n == "spiral" else n for n in BOXES],
)
def test_log_prob_integrates_to_one(name):
    box = BOXES[name]
    # 0.02 spacing: fine against every length scale in the densities
    h = SPACING.get(name, 0.02)
    n1 = round((box[1] - box[0]) / h)
    n2 = round((box[3] - box[2]) / h)
    density, area = _density_grid(name, box, n1, n2)
    assert np.isfinite(density).all()
    assert abs(density.sum() * area - 1.0) < 2e-3


# the spiral's density costs a 1-D quadrature per point: its sampler is checked against the
# arm construction in test_wave_spiral_and_rotations_in_closed_form instead
@pytest.mark.parametrize("name", [n for n in BOXES if n != "spiral"])
def test_samples_follow_the_density(name):
    n, bins, sub = 40000, 16, SUB.get(name, 12)
    box = BOXES[name]
    x = sample_toy2d(name, n, seed=2024).numpy()
    counts, _, _ = np.histogram2d(
        x[:, 0], x[:, 1], bins=bins, range=[[box[0], box[1]], [box[2], box[3]]]
    )
    density, area = _density_grid(name, box, bins * sub, bins * sub)
    probs = density.reshape(bins, sub, bins, sub).sum(axis=(1, 3)) * area
    observed = np.append(counts.ravel(), n - counts.sum())
    expected = np.append(probs.ravel(), max(1.0 - probs.sum(), 0.0)) * n
    # merge sparse bins so that the chi-square approximation holds
    sparse = expected < 5
    observed = np.append(observed[~sparse], observed[sparse].sum())
    expected = np.append(expected[~sparse], expected[sparse].sum())
    keep = expected > 0
    assert observed[~keep].sum() == 0  # no samples where the density is zero
    observed, expected = observed[keep], expected[keep]
    expected *= observed.sum() / expected.sum()
    p_value = stats.chisquare(observed, expected).pvalue
    assert p_value > 1e-3, f"{name}: samples do not match the density (p = {p_value:.2e})"


@pytest.mark.parametrize("name", toy2d_names())
def test_shapes_dtype_and_reproducibility(name):
    a = sample_toy2d(name, 300, seed=1)
    b = sample_toy2d(name, 300, generator=torch.Generator().manual_seed(1))
    assert a.shape == (300, 2) and a.dtype == torch.float64
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_toy2d(name, 300, seed=2))
    assert sample_toy2d(name, 5, seed=0, dtype=torch.float32).dtype == torch.float32
    assert sample_toy2d(name, 0, seed=0).shape == (0, 2)
    if name in toy2d_names(with_log_prob=True):
        assert torch.isfinite(toy2d_log_prob(name, a)).all()


def test_known_densities_in_closed_form():
    # banana at its ridge point (0, -0.8): N(0; 0, 4) * N(0; 0, 1)
    x = torch.tensor([[0.0, -0.8]], dtype=torch.float64)
    expected = stats.norm(0, 2).logpdf(0) + stats.norm(0, 1).logpdf(0)
    assert toy2d_log_prob("banana", x).item() == pytest.approx(expected)
    # checkerboard: 1/8 on a black cell, 0 on a white one and outside
    pts = torch.tensor([[0.5, 0.5], [0.5, -0.5], [2.5, 0.5]])
    lp = toy2d_log_prob("checkerboard", pts)
    assert lp[0].item() == pytest.approx(-math.log(8)) and torch.isinf(lp[1:]).all()
    # cosine: outside |x1| <= 4 the density is zero
    assert toy2d_log_prob("cosine", torch.tensor([4.5, 0.0])).item() == -math.inf


def test_log_prob_errors():
    with pytest.raises(ValueError, match="no closed-form"):
        toy2d_log_prob("moons", torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        toy2d_log_prob("banana", torch.zeros(3, 3))
    with pytest.raises(ValueError) as info:
        sample_toy2d("swissroll", 10)
    assert "checkerboard" in str(info.value) and "spirals" in str(info.value)
    with pytest.raises(ValueError, match="n must"):
        sample_toy2d("moons", -1)


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_rings_nd_radii_and_shell_weights(dim):
    n = 30000
    radii = (1.0, 3.0, 5.0)
    x = sample_rings_nd(n, dim, radii=radii, noise=0.1, seed=dim)
    assert x.shape == (n, dim)
    norms = x.norm(dim=1).numpy()
    nearest = np.abs(norms[:, None] - np.array(radii)).argmin(axis=1)
    assert np.abs(norms - np.array(radii)[nearest]).max() < 0.6  # 6 noise std
    weights = np.array(radii) ** (dim - 1)
    weights /= weights.sum()
    fractions = np.bincount(nearest, minlength=3) / n
    assert np.all(np.abs(fractions - weights) < 4 * np.sqrt(weights * (1 - weights) / n) + 1e-9)
    # directions uniform on the sphere: mean direction near zero
    directions = x / x.norm(dim=1, keepdim=True)
    assert directions.mean(dim=0).abs().max() < 4 / math.sqrt(n)


def test_rings_nd_equal_weights_and_errors():
    x = sample_rings_nd(20000, 2, radii=(1.0, 4.0), weights="equal", noise=0.05, seed=0)
    inner = (x.norm(dim=1) < 2.5).double().mean().item()
    assert abs(inner - 0.5) < 0.02
    with pytest.raises(ValueError, match="dim"):
        sample_rings_nd(10, 1)
    with pytest.raises(ValueError, match="radii"):
        sample_rings_nd(10, 2, radii=(1.0, -1.0))
    with pytest.raises(ValueError, match="weights"):
        sample_rings_nd(10, 2, radii=(1.0, 2.0), weights=(1.0,))
    with pytest.raises(ValueError, match="noise"):
        sample_rings_nd(10, 2, noise=0.0)


def test_wave_spiral_and_rotations_in_closed_form():
    # wave on its ridge: U[-4, 4] density times the N(0, 0.4^2) peak
    x = torch.tensor([[1.0, 1.0], [-1.0, -1.2]], dtype=torch.float64)
    expected = [
        -math.log(8) + stats.norm(0, 0.4).logpdf(0.0),
        -math.log(8) + stats.norm(0, 0.4).logpdf(-0.2),
    ]
    assert toy2d_log_prob("wave", x).tolist() == pytest.approx(expected)
    # a rotated density at R p equals the plain one at p (rotation by pi/4 about the mean)
    p = torch.tensor([[0.7, 2.1], [-3.0, -0.5]], dtype=torch.float64)
    c = math.sqrt(0.5)
    for name, centre in (("funnel", (0.0, 0.0)), ("cosine", (0.0, 3 * math.sin(8) / 8))):
        d = p - torch.tensor(centre)
        q = torch.tensor(centre) + torch.stack(
            [c * (d[:, 0] - d[:, 1]), c * (d[:, 0] + d[:, 1])], 1
        )
        assert torch.allclose(toy2d_log_prob(f"{name}_rotated", q), toy2d_log_prob(name, p))
    # spiral: the 1-D quadrature against scipy's adaptive quad of the same arm integral
    from scipy import integrate

    def arm(u, s, pt):
        a, r, v = s + math.pi * u, 1.5 * math.pi * u, 0.5 * u + 0.1
        return stats.multivariate_normal([r * math.cos(a), r * math.sin(a)], v * v).pdf(pt)

    starts = (0.0, 2 * math.pi / 3, 4 * math.pi / 3)
    # one point far out on an arm, one near the centre where the arms are thinnest
    for pt in (np.array([1.2, 2.3]), np.array([0.3, 0.05])):
        ref = sum(
            integrate.quad(arm, 0, 1, args=(s, pt), limit=200, epsabs=1e-14)[0] for s in starts
        )
        got = toy2d_log_prob("spiral", torch.from_numpy(pt)[None]).item()
        assert got == pytest.approx(math.log(ref / 3), abs=1e-8)


@pytest.mark.slow
def test_spiral_samples_follow_the_density():
    # the sampler against the density: chi-square on 8 x 8 cells (coarse, because the
    # density costs a quadrature per point; the 10 x 10 sub-cell midpoints of width 0.21
    # still resolve the arms, whose std is at least 0.1, to well under 1 %)
    n, bins, sub = 6000, 8, 10
    box = BOXES["spiral"]
    x = sample_toy2d("spiral", n, seed=5).numpy()
    counts, _, _ = np.histogram2d(
        x[:, 0], x[:, 1], bins=bins, range=[[box[0], box[1]], [box[2], box[3]]]
    )
    density, area = _density_grid("spiral", box, bins * sub, bins * sub)
    probs = density.reshape(bins, sub, bins, sub).sum(axis=(1, 3)) * area
    keep = probs.ravel() * n >= 5
    observed, expected = counts.ravel()[keep], probs.ravel()[keep] * n
    expected *= observed.sum() / expected.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_rings_nd_log_prob_matches_the_2d_sets_and_integrates():
    x = sample_toy2d("mring", 50, seed=3)
    assert torch.allclose(rings_nd_log_prob(x), toy2d_log_prob("mring", x))
    # one ring of radius 1 and noise 0.26 (the squared-NPC paper's ring): integrate over r
    r = np.linspace(1e-6, 3.0, 30001)
    pts = torch.from_numpy(np.stack([r, np.zeros_like(r)], 1))
    dens = rings_nd_log_prob(pts, radii=(1.0,), noise=0.26).exp().numpy()
    assert abs(np.trapezoid(2 * np.pi * r * dens, r) - 1.0) < 1e-6
    with pytest.raises(ValueError, match="dim"):
        rings_nd_log_prob(torch.zeros(3, 1))
