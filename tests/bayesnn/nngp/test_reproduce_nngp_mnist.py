"""The MNIST robustness reproduction: its corruptions against independent references
(SciPy's Gaussian filter, binomial and Poisson moments) and a smoke run."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from bayesfn.reproduce.nngp_mnist import CORRUPTIONS, PAPER_MNIST, corrupt, run_mnist

D = torch.float64


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_blur_equals_scipy_filter(severity):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 28, 28, generator=g, dtype=D) ** 3
    ours = corrupt(images, "gaussian_blur", severity, generator=g)
    sigma = CORRUPTIONS["gaussian_blur"][severity - 1]
    for i in range(3):
        ref = ndimage.gaussian_filter(images[i].numpy(), sigma, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(ours[i].numpy(), np.clip(ref, 0, 1), atol=1e-12)


def test_impulse_noise_flips_the_stated_fraction_to_black_or_white():
    g = torch.Generator().manual_seed(1)
    images = torch.full((20, 28, 28), 0.5, dtype=D)
    level = CORRUPTIONS["impulse_noise"][2]
    out = corrupt(images, "impulse_noise", 3, generator=g)
    changed = out != 0.5
    n = changed.numel()
    sd = math.sqrt(level * (1 - level) / n)
    assert abs(float(changed.double().mean()) - level) < 5 * sd
    assert set(out[changed].unique().tolist()) == {0.0, 1.0}
    white = float((out[changed] == 1).double().mean())
    assert abs(white - 0.5) < 5 * math.sqrt(0.25 / int(changed.sum()))


def test_shot_noise_has_poisson_moments():
    g = torch.Generator().manual_seed(2)
    x = 0.25
    images = torch.full((50, 28, 28), x, dtype=D)
    lam = CORRUPTIONS["shot_noise"][3]
    out = corrupt(images, "shot_noise", 4, generator=g)
    n = out.numel()
    # Poisson(λx)/λ has mean x and variance x/λ (clipping at 1 needs a count > λ: negligible)
    assert abs(float(out.mean()) - x) < 5 * math.sqrt(x / lam / n)
    assert float(out.var()) == pytest.approx(x / lam, rel=0.05)


def test_corrupt_rejects_bad_arguments():
    g = torch.Generator()
    with pytest.raises(ValueError, match="kind must be one of"):
        corrupt(torch.zeros(1, 4, 4), "fog", 1, generator=g)
    with pytest.raises(ValueError, match="severity"):
        corrupt(torch.zeros(1, 4, 4), "shot_noise", 6, generator=g)
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        corrupt(torch.zeros(4, 4), "shot_noise", 1, generator=g)


def test_smoke_run(tmp_path):
    torch.set_num_threads(1)
    res = run_mnist(scale="smoke", seed=0, device="cpu", out=tmp_path)
    rows = res["rows"]
    settings = {r["setting"] for r in rows}
    assert {"mnist clean", "mnist shot_noise s3", "mnist held-out 8,9"} <= settings
    assert all(math.isfinite(r["ours"]) for r in rows)
    clean = {r["metric"]: r for r in rows if r["setting"] == "mnist clean"}
    for m in ("nngp", "inverse_gamma", "burr12"):
        assert clean[f"test NLL ({m})"]["paper"] == PAPER_MNIST["nll"][m]
        assert clean[f"accuracy % ({m})"]["ours"] > 60  # 150 training images
        assert 0 < clean[f"categorical NLL ({m})"]["ours"] < math.log(10)
    for m in ("svgp", "svtp"):  # sparse variational, softmax likelihood
        assert 0 < clean[f"categorical NLL ({m})"]["ours"] < 2 * math.log(10)
        assert f"test NLL ({m})" not in clean
    assert not any("accuracy" in r["metric"] for r in rows if "held-out" in r["setting"])
    with pytest.raises(ValueError, match="scale must be one of"):
        run_mnist(scale="huge", seed=0, device="cpu", out=tmp_path)
    with pytest.raises(ValueError, match="parts must be drawn from"):
        run_mnist(scale="smoke", seed=0, device="cpu", out=tmp_path, parts=("bogus",))
