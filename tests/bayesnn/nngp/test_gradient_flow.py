"""Infinitely wide networks trained by gradient flow, against independent references.

References: noise-free NNGP / NTK conditioning and the closed forms of Lee et al. (2019)
computed with numpy / scipy from ``nngp_kernel`` values, and an ensemble of finite
networks trained by full-batch gradient descent.
"""

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from bayesfn.bayesnn import nngp_kernel, trained_network_predictive

ARCH = {"depth": 2, "activation": "relu", "w_std": 1.4, "b_std": 0.2}
KW = {**ARCH, "w_std_last": 1.4, "b_std_last": 0.2}


def _data(n=6, n_test=5, d=3, m=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=g)
    xs = torch.randn(n_test, d, dtype=torch.float64, generator=g)
    shape = (n,) if m is None else (n, m)
    y = torch.randn(shape, dtype=torch.float64, generator=g)
    return x, y, xs


def _kernels(x, xs, kind):
    """numpy (K(X, X), K(x*, X), K(x*, x*)) of the given kind."""
    return tuple(nngp_kernel(a, b, kind=kind, **KW).numpy() for a, b in ((x, x), (xs, x), (xs, xs)))


def _closed_form(x, y, xs, theta_kind, c=math.inf):
    """Lee et al. (2019) mean and covariance with numpy / scipy (``c = η t / n``)."""
    k, k_s, k_ss = _kernels(x, xs, "nngp")
    th, th_s, _ = _kernels(x, xs, theta_kind)
    decay = np.eye(len(th)) if math.isinf(c) else np.eye(len(th)) - linalg.expm(-c * th)
    a = th_s @ np.linalg.inv(th) @ decay  # A_t, n* x n
    mean = a @ y.numpy()
    cov = k_ss + a @ k @ a.T - (a @ k_s.T + k_s @ a.T)
    return mean, cov


def test_last_layer_at_infinity_is_the_nngp_posterior():
    x, y, xs = _data()
    k, k_s, k_ss = _kernels(x, xs, "nngp")
    jitter = 1e-12 * np.trace(k) / len(k) * np.eye(len(k))
    solve = np.linalg.solve(k + jitter, np.column_stack([y.numpy(), k_s.T]))
    mean, cov = k_s @ solve[:, 0], k_ss - k_s @ solve[:, 1:]
    post = trained_network_predictive(x, y, xs, **ARCH, training="last_layer")
    assert post.event_shape == (5, 1)
    np.testing.assert_allclose(post.mean[:, 0].numpy(), mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(post.covariance_matrix.numpy(), cov, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("training", ["all", "last_layer"])
def test_time_zero_is_the_prior(training):
    x, y, xs = _data()
    post = trained_network_predictive(x, y, xs, **ARCH, training=training, time=0.0)
    assert torch.equal(post.mean, torch.zeros(5, 1, dtype=torch.float64))
    np.testing.assert_allclose(post.covariance_matrix.numpy(), _kernels(x, xs, "nngp")[2])


def test_fully_trained_interpolates_and_matches_closed_form():
    x, y, xs = _data()
    at_train = trained_network_predictive(x, y, x, **ARCH)
    np.testing.assert_allclose(at_train.mean[:, 0].numpy(), y.numpy(), atol=1e-10)
    assert at_train.covariance_matrix.abs().max() < 1e-9
    post = trained_network_predictive(x, y, xs, **ARCH)
    mean, cov = _closed_form(x, y, xs, "ntk")
    np.testing.assert_allclose(post.mean[:, 0].numpy(), mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(post.covariance_matrix.numpy(), cov, rtol=1e-7, atol=1e-10)
    # the NTK predictive differs from the NNGP posterior (a real check of training="all")
    nngp = trained_network_predictive(x, y, xs, **ARCH, training="last_layer")
    assert (post.mean - nngp.mean).abs().max() > 1e-3


@pytest.mark.parametrize("training,kind", [("all", "ntk"), ("last_layer", "nngp")])
def test_finite_time_matches_expm_closed_form(training, kind):
    x, y, xs = _data()
    t, eta = 3.0, 0.7
    post = trained_network_predictive(
        x, y, xs, **ARCH, training=training, time=t, learning_rate=eta
    )
    mean, cov = _closed_form(x, y, xs, kind, c=eta * t / len(x))
    np.testing.assert_allclose(post.mean[:, 0].numpy(), mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(post.covariance_matrix.numpy(), cov, rtol=1e-7, atol=1e-10)
    # a long finite time approaches t = ∞
    late = trained_network_predictive(x, y, xs, **ARCH, training=training, time=1e6)
    limit = trained_network_predictive(x, y, xs, **ARCH, training=training)
    torch.testing.assert_close(late.mean, limit.mean, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(
        late.covariance_matrix, limit.covariance_matrix, rtol=1e-6, atol=1e-8
    )


def test_outputs_are_independent_and_time_is_per_entry():
    x, y, xs = _data(m=2)
    post = trained_network_predictive(x, y, xs, **ARCH, time=4.0)
    assert post.event_shape == (5, 2)
    # the loss averages over the n·m entries: two outputs train at half the speed
    for j in range(2):
        single = trained_network_predictive(x, y[:, j], xs, **ARCH, time=2.0)
        torch.testing.assert_close(post.mean[:, j], single.mean[:, 0])
        cov = post.covariance_matrix.reshape(5, 2, 5, 2)
        torch.testing.assert_close(cov[:, j, :, j], single.covariance_matrix)
        assert cov[:, j, :, 1 - j].abs().max() == 0


def test_scale_multiplies_covariance_only():
    x, y, xs = _data()
    base = trained_network_predictive(x, y, xs, **ARCH, time=5.0)
    scaled = trained_network_predictive(x, y, xs, **ARCH, time=5.0, scale=2.5)
    torch.testing.assert_close(scaled.mean, base.mean)
    torch.testing.assert_close(scaled.covariance_matrix, 2.5 * base.covariance_matrix)


def test_diag_reg_regularises_the_tangent_kernel():
    x, y, xs = _data()
    th, th_s, _ = _kernels(x, xs, "ntk")
    reg = th + 0.1 * np.trace(th) / len(th) * np.eye(len(th))
    post = trained_network_predictive(x, y, xs, **ARCH, diag_reg=0.1)
    np.testing.assert_allclose(
        post.mean[:, 0].numpy(), th_s @ np.linalg.solve(reg, y.numpy()), rtol=1e-8
    )


def test_standard_parameterisation_last_layer_uses_readout_features():
    x, y, xs = _data()
    width = 64
    post = trained_network_predictive(
        x, y, xs, **ARCH, parameterization="standard", width=width, training="last_layer"
    )
    pre = {**ARCH, "w_std_last": 1.0, "b_std_last": 0.0}
    th = width * nngp_kernel(x, x, **pre).numpy() + 1
    th_s = width * nngp_kernel(xs, x, **pre).numpy() + 1
    np.testing.assert_allclose(
        post.mean[:, 0].numpy(), th_s @ np.linalg.solve(th, y.numpy()), rtol=1e-8
    )
    at_train = trained_network_predictive(
        x, y, x, **ARCH, parameterization="standard", width=width, training="last_layer"
    )
    np.testing.assert_allclose(at_train.mean[:, 0].numpy(), y.numpy(), atol=1e-9)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"x_train": torch.zeros(6)}, "x_train"),
        ({"x_test": torch.zeros(5, 4)}, "x_test"),
        ({"y_train": torch.zeros(5)}, "y_train"),
        ({"y_train": torch.full((6,), math.nan)}, "y_train"),
        ({"training": "first_layer"}, "training"),
        ({"time": -1.0}, "time"),
        ({"time": math.nan}, "time"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"scale": 0.0}, "scale"),
        ({"scale": math.inf}, "scale"),
        ({"diag_reg": -1e-3}, "diag_reg"),
        ({"w_std": -1.0}, "w_std"),
        ({"b_std_last": math.nan}, "b_std_last"),
        ({"depth": -1}, "depth"),
        ({"activation": "tanh"}, "activation"),
        ({"parameterization": "mean_field"}, "parameterization"),
        ({"parameterization": "standard"}, "width"),
    ],
)
def test_bad_arguments_are_named(change, match):
    x, y, xs = _data()
    args = {"x_train": x, "y_train": y, "x_test": xs, **ARCH, **change}
    with pytest.raises(ValueError, match=match):
        trained_network_predictive(**args)


# ------------------------------------------------------------ finite networks
def _train_ensemble(x, y, xs, *, num, width, steps, lr, gen):
    """``num`` one-hidden-layer ReLU networks (NTK parameterisation, stax conventions,
    ``w_std=1.4, b_std=0.2`` in both layers), all parameters trained by full-batch
    gradient descent on ``½ mean((f(X) − y)²)``; the weights are batched tensors, so the
    whole ensemble takes one step at a time. Returns outputs at ``x`` and ``xs``."""
    d, ws, bs = x.shape[1], 1.4, 0.2

    def normal(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_(True)

    params = [normal(num, width, d), normal(num, width), normal(num, width), normal(num)]

    def net(inputs, w1, b1, w2, b2):
        pre = torch.einsum("ehd,nd->enh", w1, inputs) * (ws / math.sqrt(d)) + bs * b1[:, None]
        return torch.einsum("enh,eh->en", torch.relu(pre), w2) * (ws / math.sqrt(width)) + (
            bs * b2[:, None]
        )

    for _ in range(steps):
        loss = 0.5 * ((net(x, *params) - y) ** 2).mean(-1).sum()  # a sum of independent losses
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= lr * g
    with torch.no_grad():
        return net(x, *params), net(xs, *params)


@pytest.mark.parametrize("regime", ["converged", "finite_time"])
def test_matches_ensemble_of_trained_finite_networks(regime):
    """400 networks of width 256 against the infinite-width predictive.

    Tolerances: Monte Carlo, 4 standard errors (mean: sqrt(var / 400); variance: relative
    sqrt(2 / 399) ≈ 0.071), plus a finite-width allowance. At width N the empirical NTK
    fluctuates by O(1/√N) around Θ and stays within O(1/√N) of its initial value during
    training (Lee et al. 2019, Thm 2.1); these fluctuations shift the ensemble mean and
    variance by O(1/N) ≈ 0.004 of the output scale. We allow 0.02 (absolute, mean) and
    0.05 (relative, variance). Finite time uses a small step (η λ_max / n = 0.02), where
    gradient descent's (1 − ηλ/n)^k differs from e^{−ηλk/n} by < 0.4 % of the residual.
    """
    num, width = 400, 256
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(3)  # ‖x‖² = d: a well-conditioned Θ
    y = torch.randn(5, dtype=torch.float64, generator=gen)
    xs = torch.randn(6, 3, dtype=torch.float64, generator=gen)
    arch = {"depth": 1, "activation": "relu", "w_std": 1.4, "b_std": 0.2}
    theta = nngp_kernel(x, kind="ntk", **arch, w_std_last=1.4, b_std_last=0.2)
    lam = torch.linalg.eigvalsh(theta)
    n = len(x)
    if regime == "converged":
        # η λ_max / n = 1: the residual shrinks by (1 − λ_min/λ_max) or more per step
        lr, time = n / lam[-1].item(), math.inf
        steps = math.ceil(25 * lam[-1].item() / lam[0].item())
    else:
        lr, steps = 0.02 * n / lam[-1].item(), 75
        time = float(steps)
    f_train, f_test = _train_ensemble(x, y, xs, num=num, width=width, steps=steps, lr=lr, gen=gen)
    post = trained_network_predictive(x, y, xs, **arch, time=time, learning_rate=lr)
    mean, var = post.mean[:, 0], post.variance[:, 0]
    if regime == "converged":
        assert (f_train - y).abs().max() < 1e-6  # every network interpolates: t → ∞ reached
    mc_mean, mc_var = f_test.mean(0), f_test.var(0)
    assert ((mc_mean - mean).abs() <= 4 * (var / num).sqrt() + 0.02).all(), (mc_mean, mean)
    ratio = mc_var / var
    assert ((ratio - 1).abs() <= 4 * math.sqrt(2 / (num - 1)) + 0.05).all(), ratio
    # pooled over the test points the variance agrees more tightly
    assert abs(ratio.mean().item() - 1) < 0.15, ratio
