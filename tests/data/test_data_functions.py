"""Function-draw generators: GP covariances against closed-form kernels, shapes, ranges."""

import math

import numpy as np
import pytest
import torch

from bayesfn.data import (
    FunctionBatch,
    function_families,
    sample_functions,
    split_context_target,
)

X_FIXED = np.array([[-1.7], [-0.9], [-0.2], [0.1], [0.8], [1.9]])


def _reference_kernel(name, x, ls, var, period=None, decay=None):
    """Textbook kernels written out in numpy for 1-D inputs ``x`` of shape ``(n, 1)``."""
    r = np.abs(x - x.T)
    if name == "se":
        return var * np.exp(-(r**2) / (2 * ls**2))
    if name == "matern52":
        a = math.sqrt(5) * r / ls
        return var * (1 + a + a**2 / 3) * np.exp(-a)
    periodic = var * np.exp(-2 * np.sin(np.pi * r / period) ** 2 / ls**2)
    if name == "periodic":
        return periodic
    return periodic * np.exp(-(r**2) / (2 * decay**2))


@pytest.mark.parametrize(
    ("family", "hyper"),
    [
        ("se", {"lengthscale": 0.6, "variance": 1.3}),
        ("matern52", {"lengthscale": 0.8, "variance": 0.7}),
        ("periodic", {"lengthscale": 0.9, "variance": 1.1, "period": 1.3}),
        (
            "weakly_periodic",
            {"lengthscale": 1.0, "variance": 1.5, "period": 0.9, "decay_lengthscale": 1.5},
        ),
    ],
)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_gp_empirical_covariance_matches_kernel(family, hyper, noise):
    draws = 20000
    batch = sample_functions(
        family,
        draws,
        len(X_FIXED),
        x=torch.tensor(X_FIXED),
        noise_std=noise,
        seed=11,
        dtype=torch.float64,
        **hyper,
    )
    y = batch.y[..., 0].numpy()
    empirical = np.cov(y, rowvar=False, bias=True)
    expected = _reference_kernel(
        family,
        X_FIXED,
        hyper["lengthscale"],
        hyper["variance"],
        hyper.get("period"),
        hyper.get("decay_lengthscale"),
    ) + noise**2 * np.eye(len(X_FIXED))
    # Monte Carlo standard error of a covariance estimate from Gaussian draws
    std_err = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected**2) / draws)
    assert np.all(np.abs(empirical - expected) < 5 * std_err + 1e-5)
    assert np.all(np.abs(y.mean(axis=0)) < 5 * np.sqrt(np.diag(expected) / draws))
    assert batch.families == (family,) * draws
    assert torch.all(batch.params["lengthscale"] == hyper["lengthscale"])
    assert torch.all(batch.params["noise_std"] == noise)


@pytest.mark.parametrize("family", function_families())
@pytest.mark.parametrize("input_dim", [1, 3])
def test_shapes_dtypes_and_input_box(family, input_dim):
    batch = sample_functions(family, 5, 17, input_dim=input_dim, x_range=(-1.0, 3.0), seed=0)
    assert isinstance(batch, FunctionBatch)
    assert batch.x.shape == (5, 17, input_dim)
    assert batch.y.shape == batch.f.shape == (5, 17, 1)
    assert batch.x.dtype == batch.y.dtype == torch.float32
    assert batch.x.min() >= -1.0 and batch.x.max() <= 3.0
    assert torch.isfinite(batch.y).all()
    assert batch.batch_size == 5 and batch.num_points == 17
    assert all(p.shape == (5,) for p in batch.params.values())


def test_noise_free_by_default_and_noise_added():
    clean = sample_functions("se", 4, 30, seed=3)
    assert torch.equal(clean.y, clean.f)
    noisy = sample_functions("se", 4, 30, noise_std=(0.05, 0.2), seed=3)
    resid = (noisy.y - noisy.f)[..., 0]
    assert not torch.equal(noisy.y, noisy.f)
    assert torch.all((noisy.params["noise_std"] >= 0.05) & (noisy.params["noise_std"] <= 0.2))
    assert resid.abs().max() < 6 * 0.2


def test_sawtooth_values_and_slopes():
    amplitude = 2.0
    batch = sample_functions("sawtooth", 64, 200, amplitude=amplitude, seed=5, dtype=torch.float64)
    y = batch.y[..., 0]
    assert y.min() >= -amplitude / 2 and y.max() < amplitude / 2
    freq = batch.params["frequency"]
    assert torch.all((freq >= 3.0) & (freq <= 5.0))
    # Sorted in x, each increment is +-A f dx, or that minus a jump of one amplitude.
    order = batch.x[..., 0].argsort(dim=1)
    xs = batch.x[..., 0].gather(1, order)
    ys = y.gather(1, order)
    for i in range(64):
        dx, dy = xs[i].diff(), ys[i].diff()
        ok = []
        for sign in (-1.0, 1.0):
            resid = (dy - sign * amplitude * freq[i] * dx) / amplitude
            ok.append(bool(torch.all((resid - resid.round()).abs() < 1e-9)))
        assert any(ok)
    # values are uniform over one tooth: mean 0, variance A^2 / 12
    assert abs(y.mean().item()) < 0.03
    assert abs(y.var().item() - amplitude**2 / 12) < 0.02


def test_step_values_are_monotone_zero_one():
    batch = sample_functions("step", 200, 50, seed=2)
    y = batch.y[..., 0]
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    order = batch.x[..., 0].argsort(dim=1)
    ys = y.gather(1, order)
    steps = ys.diff(dim=1)
    rising = (steps >= 0).all(dim=1)
    falling = (steps <= 0).all(dim=1)
    assert torch.all(rising | falling)
    assert 0.2 < y.mean().item() < 0.8  # thresholds spread over the range


def test_mixture_uses_every_family_and_each_function_obeys_its_family():
    batch = sample_functions("mixture", 200, 40, seed=9)
    assert set(batch.families) == {"se", "matern52", "weakly_periodic", "sawtooth"}
    for i, fam in enumerate(batch.families):
        if fam == "sawtooth":
            assert batch.y[i].abs().max() <= 0.5
            assert not math.isnan(batch.params["frequency"][i].item())
        else:
            assert not math.isnan(batch.params["lengthscale"][i].item())
            assert math.isnan(batch.params["frequency"][i].item())
    only = sample_functions("mixture", 30, 5, mixture_families=("step",), seed=0)
    assert set(only.families) == {"step"}


def test_default_priors_and_ranges():
    b = sample_functions("weakly_periodic", 400, 3, seed=1)
    p = b.params
    assert torch.all((p["lengthscale"] >= 0.5) & (p["lengthscale"] <= 2.0))
    assert torch.all((p["variance"] >= 0.5) & (p["variance"] <= 2.0))
    assert torch.all((p["period"] >= 0.5) & (p["period"] <= 2.0))
    assert torch.all((p["decay_lengthscale"] >= 1.0) & (p["decay_lengthscale"] <= 4.0))
    se = sample_functions("se", 4000, 2, input_dim=4, seed=1).params["lengthscale"]
    # default SE range [0.1, 1.0] * sqrt(d) on a width-4 box; log-uniform -> log-mean midpoint
    assert se.min() >= 0.2 - 1e-12 and se.max() <= 2.0 + 1e-12
    assert abs(se.log().mean().item() - math.log(math.sqrt(0.2 * 2.0))) < 0.03
    ranged = sample_functions("se", 500, 2, lengthscale=(0.3, 0.4), variance=2.5, seed=1)
    assert torch.all((ranged.params["lengthscale"] >= 0.3) & (ranged.params["lengthscale"] <= 0.4))
    assert torch.all(ranged.params["variance"] == 2.5)


def test_reproducible_with_seed_and_generator():
    a = sample_functions("mixture", 8, 20, seed=123)
    b = sample_functions("mixture", 8, 20, generator=torch.Generator().manual_seed(123))
    assert torch.equal(a.y, b.y) and a.families == b.families
    c = sample_functions("mixture", 8, 20, seed=124)
    assert not torch.equal(a.y, c.y)


def test_duplicate_inputs_need_and_get_jitter():
    x = torch.zeros(10, 1)
    batch = sample_functions("se", 3, 10, x=x, lengthscale=1.0, variance=1.0, seed=0)
    f = batch.f[..., 0]
    assert torch.allclose(f, f[:, :1].expand_as(f), atol=1e-2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"family": "rbf"}, ValueError, "'se'"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"num_points": -1}, ValueError, "num_points"),
        ({"x_range": (2.0, -2.0)}, ValueError, "x_range"),
        ({"lengthscale": -1.0}, ValueError, "lengthscale"),
        ({"variance": (0.0, 1.0)}, ValueError, "variance"),
        ({"period": "long"}, TypeError, "period"),
        ({"noise_std": -0.1}, ValueError, "noise_std"),
        ({"x": torch.zeros(4, 2)}, ValueError, "x must have shape"),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, "not both"),
        (
            {"family": "mixture", "mixture_families": ("se", "mixture")},
            ValueError,
            "mixture_families",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    args = {"family": "se", "batch_size": 2, "num_points": 5, **kwargs}
    with pytest.raises(error, match=match):
        sample_functions(**args)


# ---------------------------------------------------------------- context / target splits


def _rows(t):
    return {tuple(r) for r in t.tolist()}


def test_disjoint_split_partitions_each_function():
    batch = sample_functions("se", 6, 30, input_dim=2, seed=4, dtype=torch.float64)
    (xc, yc), (xt, yt) = split_context_target(batch, 7, seed=0)
    assert xc.shape == (6, 7, 2) and yc.shape == (6, 7, 1)
    assert xt.shape == (6, 23, 2) and yt.shape == (6, 23, 1)
    for i in range(6):
        full = torch.cat([batch.x[i], batch.y[i]], dim=1)
        ctx = torch.cat([xc[i], yc[i]], dim=1)
        tgt = torch.cat([xt[i], yt[i]], dim=1)
        assert _rows(ctx).isdisjoint(_rows(tgt))
        assert _rows(ctx) | _rows(tgt) == _rows(full)  # pairs (x, y) stay together


def test_inclusive_split_targets_are_all_points_with_context_first():
    batch = sample_functions("matern52", 4, 12, seed=1)
    split = split_context_target(batch, 5, include_context=True, seed=3)
    (xc, yc), (xt, yt) = split
    assert xt.shape == (4, 12, 1)
    assert torch.equal(xt[:, :5], xc) and torch.equal(yt[:, :5], yc)
    for i in range(4):
        assert _rows(xt[i]) == _rows(batch.x[i])


def test_context_range_and_num_target():
    batch = sample_functions("sawtooth", 3, 40, seed=0)
    sizes = set()
    for s in range(30):
        (xc, _), (xt, _) = split_context_target(batch, (3, 10), num_target=(5, 8), seed=s)
        assert 3 <= xc.shape[1] <= 10 and 5 <= xt.shape[1] <= 8
        sizes.add(xc.shape[1])
    assert len(sizes) > 3
    (xc, _), _ = split_context_target((batch.x, batch.y), 0, seed=0)
    assert xc.shape == (3, 0, 1)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((40,), {}, "num_context"),
        ((41,), {"include_context": True}, "num_context"),
        ((5,), {"num_target": 36}, "num_target"),
        ((5,), {"num_target": 3, "include_context": True}, "num_target"),
        (((6, 2),), {}, "min <= max"),
    ],
)
def test_split_bad_counts(args, kwargs, match):
    batch = sample_functions("se", 2, 40, seed=0)
    with pytest.raises(ValueError, match=match):
        split_context_target(batch, *args, **kwargs)


def test_split_shape_mismatch():
    with pytest.raises(ValueError, match="same"):
        split_context_target((torch.zeros(2, 5, 1), torch.zeros(2, 4, 1)), 1)
