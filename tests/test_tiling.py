"""Row-tiled kernel matrices: equal to the direct evaluation (values and gradients), used
by the exact models above a size threshold, and bounded in memory."""

import json
import subprocess
import sys
import textwrap

import gpytorch
import pytest
import torch

from bayesfn._linalg import gaussian_log_likelihood, posterior_covariance_, quad_logdet
from bayesfn._tiling import tiled_kernel_matrix
from bayesfn.bayesnn import ScaleMixtureNNGP, nngp_kernel
from bayesfn.bayesnn.nngp import scale_mixture
from bayesfn.processes import GaussianProcess
from bayesfn.processes import gaussian_process as gp_module

D = torch.float64


def _x(n, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)


@pytest.mark.parametrize("tile", [1, 3, 7, 50])
def test_tiled_nngp_kernel_equals_the_direct_one_with_gradients(tile):
    x, x2 = _x(11), _x(6, seed=1)
    w = torch.tensor(1.3, dtype=D, requires_grad=True)
    b = torch.tensor(0.2, dtype=D, requires_grad=True)

    def fn(a, c):
        return nngp_kernel(a, c, depth=3, activation="relu", w_std=w, b_std=b)

    weights = torch.randn(11, 6, generator=torch.Generator().manual_seed(2), dtype=D)
    direct = fn(x, x2)
    gd = torch.autograd.grad((direct * weights).sum(), [w, b])
    tiled = tiled_kernel_matrix(fn, x, x2, [w, b], tile_rows=tile)
    gt = torch.autograd.grad((tiled * weights).sum(), [w, b])
    torch.testing.assert_close(tiled, direct, rtol=1e-13, atol=1e-14)
    for a, c in zip(gt, gd, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)


def test_tiled_gpytorch_batched_kernel_equals_the_direct_one():
    kernel = gpytorch.kernels.ScaleKernel(
        gpytorch.kernels.RBFKernel(ard_num_dims=3, batch_shape=torch.Size([2])),
        batch_shape=torch.Size([2]),
    ).double()
    x = _x(9)
    params = list(kernel.parameters())
    direct = kernel(x, x).to_dense()
    tiled = tiled_kernel_matrix(lambda a, b: kernel(a, b).to_dense(), x, x, params, tile_rows=4)
    torch.testing.assert_close(tiled, direct, rtol=1e-13, atol=1e-14)
    gd = torch.autograd.grad(direct.pow(2).sum(), params)
    gt = torch.autograd.grad(tiled.pow(2).sum(), params)
    for a, c in zip(gt, gd, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="does not differentiate in x1"):
        tiled_kernel_matrix(lambda a, b: a @ b.mT, x.requires_grad_(), x, [])


def test_quad_logdet_gradients_match_autograd_through_cholesky():
    a = _x(6, d=6)
    cov = (a @ a.T + 6 * torch.eye(6, dtype=D)).requires_grad_()
    y = _x(6, d=2, seed=3).requires_grad_()
    q, logdet, _, _ = quad_logdet(cov, y)
    g = torch.autograd.grad(0.7 * q - 1.3 * logdet, [cov, y])
    chol = torch.linalg.cholesky(cov)
    q_ref = (y * torch.cholesky_solve(y, chol)).sum()
    ref = torch.autograd.grad(0.7 * q_ref - 1.3 * torch.logdet(cov), [cov, y])
    # autograd's gradient w.r.t. a symmetric matrix may split the off-diagonal mass
    # differently: compare the symmetric parts
    torch.testing.assert_close(g[0] + g[0].mT, ref[0] + ref[0].mT, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g[1], ref[1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(q, q_ref, rtol=1e-12, atol=0)


def test_gaussian_log_likelihood_gradient_is_unchanged_by_the_in_place_build():
    a = _x(5, d=5)
    cov = (a @ a.T + 5 * torch.eye(5, dtype=D)).expand(3, 5, 5).clone().requires_grad_()
    r = _x(3, d=5, seed=4)
    g = torch.autograd.grad(gaussian_log_likelihood(cov, r).sum(), cov)[0]
    alpha = torch.linalg.solve(cov.detach(), r.unsqueeze(-1))
    ref = 0.5 * (alpha @ alpha.mT - torch.linalg.inv(cov.detach()))
    torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-12)


def test_gp_above_the_tiling_threshold_fits_as_below(monkeypatch):
    x = _x(30, d=2)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * _x(30, d=1, seed=5)
    kw = {"max_steps": 8, "progress_bar": False}
    ref = GaussianProcess("matern52").fit(x, torch.cat([y, -y], -1), **kw)
    monkeypatch.setattr(gp_module, "_TILE_ABOVE", 5)
    tiled = GaussianProcess("matern52").fit(x, torch.cat([y, -y], -1), **kw)
    assert tiled.fit_result_.losses == pytest.approx(ref.fit_result_.losses, rel=1e-10)
    xs = _x(4, d=2, seed=6)
    torch.testing.assert_close(
        tiled.posterior(xs).mean, ref.posterior(xs).mean, rtol=1e-8, atol=1e-10
    )


def test_scale_mixture_above_the_tiling_threshold_fits_as_below(monkeypatch):
    x = _x(25, d=2)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * _x(25, d=1, seed=5)
    kw = {"max_steps": 6, "progress_bar": False}
    ref = ScaleMixtureNNGP(depth=2, prior="inverse_gamma").fit(x, y, **kw)
    monkeypatch.setattr(scale_mixture, "_TILE_ABOVE", 5)
    tiled = ScaleMixtureNNGP(depth=2, prior="inverse_gamma").fit(x, y, **kw)
    assert tiled.fit_result_.losses == pytest.approx(ref.fit_result_.losses, rel=1e-9)
    assert tiled.hyperparameters() == pytest.approx(ref.hyperparameters(), rel=1e-8)


_PEAK = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from bayesfn._tiling import tiled_kernel_matrix
    from bayesfn.bayesnn import nngp_kernel
    n, tile = int(sys.argv[1]), int(sys.argv[2])
    x = torch.randn(n, 8, dtype=torch.float64)
    w = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: nngp_kernel(a, b, depth=4, activation="relu", w_std=w, b_std=0.1)
    # warm-up at a tiny size: library buffers and lazy imports are not the kernel's
    small = torch.randn(10, 8, dtype=torch.float64)
    tiled_kernel_matrix(fn, small, small, [w], tile_rows=3).sum().backward()
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = peak()
    k = tiled_kernel_matrix(fn, x, x, [w], tile_rows=tile)
    forward = peak()
    k.backward(torch.ones_like(k))
    print(json.dumps({"forward": forward - before, "total": peak() - before}))
    """
)


@pytest.mark.slow
def test_tiled_kernel_peak_memory_stays_within_its_bound():
    """Forward and backward of a depth-4 NNGP kernel at n = 3000 in tiles of 20 rows.
    The bound: the forward holds the result (one n x n matrix) and a tile; the backward
    adds the incoming gradient (another n x n) and one tile's autograd temporaries
    (about a hundred 20 x n blocks; 200 allowed). Autograd over the whole matrix at once
    instead peaked at 2.5 GB at n = 2000 (80 matrices) on the shared 2-core machine."""
    n, tile = 3000, 20
    matrix, block = n * n * 8 / 2**20, tile * n * 8 / 2**20
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(n), str(tile)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    peak = json.loads(done.stdout.strip().splitlines()[-1])
    assert peak["forward"] < matrix + 20 * block, peak
    assert peak["total"] < 2 * matrix + 200 * block, peak


def test_a_training_covariance_that_cannot_fit_is_refused_before_allocating(monkeypatch):
    import bayesfn._linalg as linalg

    x = _x(50, d=2)
    y = x.sum(-1)
    monkeypatch.setattr(linalg, "available_memory", lambda device: 10_000)
    with pytest.raises(MemoryError, match=r"training covariance of 50 points .* solver='cg'"):
        GaussianProcess().fit(x, y)
    with pytest.raises(MemoryError, match=r"training covariance of 50 points .*subsample"):
        ScaleMixtureNNGP().fit(x, y)


@pytest.mark.parametrize("tile", [2, 3, 7, 512])
def test_posterior_covariance_in_place_is_the_symmetrised_schur_complement(tile):
    g = torch.Generator().manual_seed(9)
    a = torch.randn(2, 7, 9, generator=g, dtype=D)
    prior = a @ a.mT
    v = torch.randn(2, 5, 7, generator=g, dtype=D)
    direct = prior - v.mT @ v
    out = posterior_covariance_(prior, v, tile=tile)
    assert out.data_ptr() == prior.data_ptr()  # written into the prior's memory
    assert torch.equal(out, out.mT)  # exactly symmetric
    torch.testing.assert_close(out, (direct + direct.mT) / 2, rtol=1e-13, atol=1e-13)


_JOINT_PEAK = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from bayesfn.bayesnn import ScaleMixtureNNGP
    from bayesfn.processes import GaussianProcess
    which, ns = sys.argv[1], int(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 3, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(300, generator=g, dtype=torch.float64)
    xs = torch.rand(ns, 3, generator=g, dtype=torch.float64)
    if which == "gp":
        model = GaussianProcess("rbf")
    else:
        model = ScaleMixtureNNGP(depth=2, prior="inverse_gamma")
    model.fit(x, y, max_steps=2, progress_bar=False)
    model.posterior(xs[:50], observation_noise=True)  # warm-up: buffers, lazy imports
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = peak()
    post = model.posterior(xs, observation_noise=True)
    print(json.dumps({"growth": peak() - before}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gp", "scale-mixture"])
def test_joint_predictive_peak_memory_is_the_one_its_memory_check_assumes(which):
    """``posterior(x, joint=True)`` at 3000 test points (one 69 MiB covariance) against
    300 training points: the kernel is evaluated in row tiles and ``K** − VᵀV`` is formed
    in place, so the peak growth is the covariance and the two temporaries of the
    posterior's symmetry check (the 3 copies that ``check_allocation`` refuses on),
    plus the 7 MiB cross-covariances. The scale mixture's untiled recursion and
    out-of-place algebra peaked at 6.1 covariances on the shared 2-core machine."""
    ns = 3000
    cov = ns * ns * 8 / 2**20
    done = subprocess.run(
        [sys.executable, "-c", _JOINT_PEAK, "gp" if which == "gp" else "sm", str(ns)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    assert growth < 3.3 * cov, growth / cov


_CNN_PEAK = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from bayesfn.bayesnn import NNGPKernel
    n = int(sys.argv[1])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8 * 8 * 2, generator=g, dtype=torch.float64)
    k = NNGPKernel(depth=3, activation="relu", b_std=0.1, image_shape=(8, 8, 2))
    k(x[:20]).to_dense().sum().backward()  # warm-up: buffers, lazy imports
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = peak()
    k(x).to_dense().sum().backward()
    print(json.dumps({"growth": peak() - before}))
    """
)


@pytest.mark.slow
def test_tiled_cnn_kernel_peak_memory_does_not_grow_with_the_pair_grid():
    """Forward and backward of a depth-3 CNN NNGPKernel on 300 8x8x2 images: the
    per-pixel states of all 90,000 pairs are 44 MiB per tensor, and autograd through
    the whole recursion holds dozens of them (625 MiB already at 150 images, 57 grids,
    on the shared 2-core machine). Tiled, the backward holds one row tile's states
    (about 2**18 numbers, 2 MiB per tensor, about a hundred tensors) besides the
    0.7 MiB result and its gradient: measured 176 MiB at both 150 and 300 images."""
    done = subprocess.run(
        [sys.executable, "-c", _CNN_PEAK, "300"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    assert growth < 250, growth
