"""NNGP / NTK kernels against independent numerics.

References: neural-tangents 0.6.5 values stored by benchmarks/nngp_make_reference.py;
1-D angular quadrature (ReLU family) and 2-D Gauss–Hermite quadrature (erf, GELU) of
the layer maps; Monte Carlo over wide random networks; empirical NTKs of wide networks.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, special

from bayesfn.bayesnn import NNGPKernel, nngp_kernel
from bayesfn.bayesnn.nngp._activations import diag_map, layer_map
from bayesfn.bayesnn.nngp.kernel import activation_slopes

REFERENCE = json.loads((Path(__file__).parent / "data" / "nngp_reference.json").read_text())
ACTS = ["relu", "leaky_relu", "abs", "ab_relu", "erf", "gelu"]


def _slopes(act):
    return activation_slopes(act, 0.1, (-0.3, 1.7) if act == "ab_relu" else None)


def _phi(act, t):
    a, b = _slopes(act)
    if act == "erf":
        return special.erf(t)
    if act == "gelu":
        return t * special.ndtr(t)
    return a * np.minimum(t, 0) + b * np.maximum(t, 0)


def _dphi(act, t):
    a, b = _slopes(act)
    if act == "erf":
        return 2 / np.sqrt(np.pi) * np.exp(-t * t)
    if act == "gelu":
        return special.ndtr(t) + t * np.exp(-t * t / 2) / np.sqrt(2 * np.pi)
    return np.where(t < 0, a, b)


# ------------------------------------------------------------ neural-tangents values
@pytest.mark.parametrize("i", range(len(REFERENCE["fc"][0]["cases"])))
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_matches_stored_neural_tangents_values(i, kind):
    block = REFERENCE["fc"][0]
    case = block["cases"][i]
    x1 = torch.tensor(block["x1"], dtype=torch.float64)
    x2 = torch.tensor(block["x2"], dtype=torch.float64)
    kernel = NNGPKernel(
        case["depth"],
        case["activation"],
        kind=kind,
        parameterization=case["parameterization"],
        w_std=case["w_std"],
        b_std=case["b_std"],
        w_std_last=case["w_std_last"],
        b_std_last=case["b_std_last"],
        negative_slope=case["negative_slope"],
        slopes=case["slopes"],
        width=case["width"],
    )
    with torch.no_grad():
        cross = kernel(x1, x2).to_dense()
        same = kernel(x1).to_dense()
    np.testing.assert_allclose(cross.numpy(), case[f"{kind}_cross"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(same.numpy(), case[f"{kind}_same"], rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------- layer maps by quadrature
def _angular_expectation(act, k1, k2, c, derivative):
    """E[g(u) g(v)] for positively homogeneous g (degree 1 for φ, 0 for φ') in polar
    coordinates: the radial integral is exact, the angle is integrated by adaptive quad
    split at the kinks."""
    l11 = math.sqrt(k1)
    l21, l22 = c / l11, math.sqrt(max(k2 - c * c / k1, 0.0))
    g = _dphi if derivative else _phi

    def f(alpha):
        z1, z2 = math.cos(alpha), math.sin(alpha)
        return float(g(act, l11 * z1) * g(act, l21 * z1 + l22 * z2))

    # kinks where u = 0 or v = 0
    kinks = sorted(
        {
            (math.pi / 2) % (2 * math.pi),
            (3 * math.pi / 2) % (2 * math.pi),
            math.atan2(-l21, l22) % (2 * math.pi),
            (math.atan2(-l21, l22) + math.pi) % (2 * math.pi),
        }
    )
    value = integrate.quad(f, 0, 2 * math.pi, points=kinks, epsabs=1e-13, epsrel=1e-12, limit=200)[
        0
    ]
    radial = 2.0 if not derivative else 1.0  # ∫ r^{2 deg} r e^{-r²/2} dr
    return value * radial / (2 * math.pi)


def _gauss_hermite_expectation(act, k1, k2, c, derivative, num=80):
    z, w = np.polynomial.hermite_e.hermegauss(num)
    w = w / w.sum()
    l11 = math.sqrt(k1)
    l21, l22 = c / l11, math.sqrt(max(k2 - c * c / k1, 0.0))
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    g = _dphi if derivative else _phi
    vals = g(act, l11 * z1) * g(act, l21 * z1 + l22 * z2)
    return float((w[:, None] * w[None, :] * vals).sum())


TRIPLES = [
    (1.0, 1.0, 0.3),
    (2.5, 0.4, -0.7),
    (0.7, 1.9, 1.15),
    (1.3, 1.3, 1.3 * 0.999999),
    (0.2, 3.0, -0.77),
]


@pytest.mark.parametrize("act", ACTS)
def test_layer_map_matches_quadrature(act):
    for k1, k2, c in TRIPLES:
        f, dot = layer_map(
            act,
            torch.tensor(c, dtype=torch.float64),
            torch.tensor(k1, dtype=torch.float64),
            torch.tensor(k2, dtype=torch.float64),
            _slopes(act),
            True,
        )
        if act in ("erf", "gelu"):  # smooth: tensor-product Gauss–Hermite converges fast
            ref_f = _gauss_hermite_expectation(act, k1, k2, c, False)
            ref_dot = _gauss_hermite_expectation(act, k1, k2, c, True)
            tol = 1e-9
        else:
            ref_f = _angular_expectation(act, k1, k2, c, False)
            ref_dot = _angular_expectation(act, k1, k2, c, True)
            tol = 1e-9
        assert abs(float(f) - ref_f) < tol * (1 + abs(ref_f)), (k1, k2, c)
        assert abs(float(dot) - ref_dot) < tol * (1 + abs(ref_dot)), (k1, k2, c)


@pytest.mark.parametrize("act", ACTS)
def test_diagonal_map_is_exact_angle_zero(act):
    for k in (0.0, 0.3, 1.0, 7.5):
        t = torch.tensor(k, dtype=torch.float64)
        f, dot = diag_map(act, t, _slopes(act), True)

        def expect(g):
            density = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
            f = lambda z: float(g(act, math.sqrt(k) * z)) ** 2 * density(z)  # noqa: E731
            return integrate.quad(f, -40, 40, points=[0.0], epsabs=1e-14, epsrel=1e-13, limit=400)[
                0
            ]

        ref_f = expect(_phi)
        ref_dot = expect(_dphi) if k > 0 or act in ("erf", "gelu") else None
        assert abs(float(f) - ref_f) < 1e-10 * (1 + ref_f)
        if ref_dot is not None:
            assert abs(float(dot) - ref_dot) < 1e-8 * (1 + ref_dot)


def test_full_matrix_diagonal_equals_diag_mode_exactly():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    for act in ACTS:
        for kind in ("nngp", "ntk"):
            kw = dict(depth=4, activation=act, kind=kind, w_std=1.4, b_std=0.1, slopes=_slopes(act))
            full = nngp_kernel(x, **kw)
            diag = nngp_kernel(x, x, diag=True, **kw)
            assert torch.equal(full.diagonal(), diag), (act, kind)
            torch.testing.assert_close(full, full.mT, rtol=0, atol=0)


def test_relu_diagonal_against_the_variance_recursion():
    x = torch.tensor([[0.3, -1.2, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    w, b, depth = 1.6, 0.2, 5
    k = (x**2).sum(-1).numpy() / 3
    theta = np.zeros_like(k)
    for _ in range(depth):
        k = w**2 * k + b**2
        theta = theta * 0 + 0.5  # E[φ'(u)²] for ReLU
        k = k / 2
    k = w**2 * k + b**2
    out = nngp_kernel(x, depth=depth, w_std=w, b_std=b, w_std_last=w, b_std_last=b).diagonal()
    np.testing.assert_allclose(out.numpy(), k, rtol=1e-15)


# ------------------------------------------------------------------- finite networks
def _random_features(x, depth, width, act, w_std, b_std, generator):
    """Post-activation features of one random network of width ``width`` (NTK
    parameterisation) at the n points ``x``. Given the previous layer's features ``h``,
    the ``width`` pre-activations ``w_std·W h/√fan_in + b_std·b`` with i.i.d. N(0, 1)
    ``W`` and ``b`` are exactly i.i.d. N(0, w_std² h hᵀ/fan_in + b_std²) across units,
    so each layer is drawn from that n x n covariance (an exact simulation of the
    finite network at these points, without forming ``W``)."""
    h = x
    for _ in range(depth):
        cov = w_std**2 * h @ h.T / h.shape[-1] + b_std**2
        evals, evecs = torch.linalg.eigh(cov)
        root = evecs * evals.clamp_min(0).sqrt()
        pre = root @ torch.randn(x.shape[0], width, generator=generator, dtype=x.dtype)
        h = torch.from_numpy(_phi(act, pre.numpy()))
    return h


@pytest.mark.parametrize("act", ["relu", "erf", "gelu", "abs"])
def test_nngp_matches_wide_random_networks(act):
    """Monte Carlo over S networks of width N: each network's readout covariance
    ``w_last² h·h'/N + b_last²`` (exact over the readout draw) averaged over S; the
    tolerance is 5 standard errors of that average plus a 2/N finite-width allowance."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    x[2] = 0.0
    depth, width, draws = 3, 2048, 400
    w, b, w_last, b_last = 1.5, 0.3, 1.1, 0.2
    estimates = []
    for _ in range(draws):
        h = _random_features(x, depth, width, act, w, b, g)
        estimates.append(w_last**2 * h @ h.T / width + b_last**2)
    est = torch.stack(estimates)
    mean, se = est.mean(0), est.std(0) / math.sqrt(draws)
    exact = nngp_kernel(
        x,
        depth=depth,
        activation=act,
        w_std=w,
        b_std=b,
        w_std_last=w_last,
        b_std_last=b_last,
        slopes=_slopes(act),
    )
    assert ((mean - exact).abs() <= 5 * se + 2 / width * exact.abs() + 1e-12).all()


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_ntk_matches_empirical_ntk_of_wide_networks(act):
    """Empirical NTK ``J(x) J(x')ᵀ`` (torch.func jacobians over all parameters) of
    S networks of width N in NTK parameterisation, against the analytic NTK within
    5 standard errors of the S-average (the NTK's O(1/√N) fluctuations at
    initialisation are what the standard error measures) plus a 2/N allowance for
    the O(1/N) finite-width bias of its mean."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x[3] = x[0]  # a repeated point
    depth, width, draws = 2, 512, 6
    w, b, w_last, b_last = 1.3, 0.2, 0.9, 0.1
    torch_act = torch.relu if act == "relu" else torch.erf

    def net(params, inputs):
        h = inputs
        for i in range(depth):
            W, bias = params[2 * i], params[2 * i + 1]
            h = torch_act(w * h @ W / math.sqrt(h.shape[-1]) + b * bias)
        return (w_last * h @ params[-2] / math.sqrt(width) + b_last * params[-1]).squeeze(-1)

    estimates = []
    for _ in range(draws):
        shapes = [(3, width), (width,), (width, width), (width,), (width, 1), (1,)]
        params = tuple(torch.randn(s, generator=g, dtype=torch.float64) for s in shapes)
        jac = torch.func.jacrev(net)(params, x)  # tuple of (n, *shape)
        flat = torch.cat([j.reshape(x.shape[0], -1) for j in jac], -1)
        estimates.append(flat @ flat.T)
    est = torch.stack(estimates)
    mean, se = est.mean(0), est.std(0) / math.sqrt(draws)
    exact = nngp_kernel(
        x,
        depth=depth,
        activation=act,
        kind="ntk",
        w_std=w,
        b_std=b,
        w_std_last=w_last,
        b_std_last=b_last,
    )
    assert ((mean - exact).abs() <= 5 * se + 2 / width * exact.abs()).all()


# ---------------------------------------------------------------- gradients and shapes
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_gradients_are_finite_at_equal_and_zero_inputs(act, kind):
    x = torch.tensor(
        [[0.5, -1.0], [0.5, -1.0], [0.0, 0.0], [1e-9, 0.0]], dtype=torch.float64, requires_grad=True
    )
    for b_std in (0.1, 0.0):  # b_std = 0 makes K(0, 0) = 0: the degenerate angle
        w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(b_std, dtype=torch.float64, requires_grad=True)
        k = nngp_kernel(
            x, depth=3, activation=act, kind=kind, w_std=w, b_std=b, slopes=_slopes(act)
        )
        kd = nngp_kernel(
            x,
            x,
            depth=3,
            activation=act,
            kind=kind,
            w_std=w,
            b_std=b,
            slopes=_slopes(act),
            diag=True,
        )
        assert torch.isfinite(k).all() and torch.isfinite(kd).all()
        gx, gw, gb = torch.autograd.grad((k.sum() + kd.sum()), (x, w, b))
        assert torch.isfinite(gx).all() and torch.isfinite(gw) and torch.isfinite(gb), (
            act,
            kind,
            b_std,
        )


@pytest.mark.parametrize("act", ACTS)
def test_inference_path_equals_the_autograd_path(act):
    """Without autograd the kernel updates its n x m buffers in place; values must not
    change beyond rounding."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    x[4] = 0.0
    for kind, param in (("nngp", "ntk"), ("ntk", "ntk"), ("ntk", "standard")):
        kw = dict(
            depth=3,
            activation=act,
            kind=kind,
            parameterization=param,
            width=64,
            b_std=0.1,
            slopes=_slopes(act),
        )
        with torch.no_grad():
            fast = nngp_kernel(x, w_std=1.3, **kw)
            fast_cross = nngp_kernel(x, x[:4] + 0.1, w_std=1.3, **kw)
        w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
        torch.testing.assert_close(fast, nngp_kernel(x, w_std=w, **kw).detach(), rtol=1e-13, atol=0)
        torch.testing.assert_close(
            fast_cross, nngp_kernel(x, x[:4] + 0.1, w_std=w, **kw).detach(), rtol=1e-13, atol=0
        )


def test_batched_inputs_equal_separate_calls():
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    kernel = NNGPKernel(3, "gelu", kind="ntk", w_std=1.2, b_std=0.1)
    with torch.no_grad():
        batched = kernel(x1, x2).to_dense()
        assert batched.shape == (3, 5, 4)
        for i in range(3):
            torch.testing.assert_close(
                batched[i], kernel(x1[i], x2[i]).to_dense(), rtol=1e-14, atol=0
            )
        diag = kernel(x1, x1, diag=True)
        assert diag.shape == (3, 5)
        torch.testing.assert_close(diag, kernel(x1).to_dense().diagonal(dim1=-2, dim2=-1))


def test_kernel_is_float64_learnable_and_float32_capable():
    kernel = NNGPKernel(2, "relu", w_std=1.0, b_std=0.0)
    assert kernel.raw_w_std.dtype == torch.float64
    assert float(kernel.b_std.detach()) == 0.0  # an exact zero is kept
    x = torch.randn(6, 3, dtype=torch.float64)
    kernel(x).to_dense().sum().backward()
    assert kernel.raw_w_std.grad is not None and torch.isfinite(kernel.raw_w_std.grad).all()
    k32 = NNGPKernel(2, "relu", dtype=torch.float32)(x.float()).to_dense()
    assert k32.dtype == torch.float32
    torch.testing.assert_close(
        k32.double(), NNGPKernel(2, "relu")(x).to_dense(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": -1}, "depth"),
        ({"activation": "tanh"}, "activation"),
        ({"kind": "cntk"}, "kind"),
        ({"parameterization": "mup"}, "parameterization"),
        ({"kind": "ntk", "parameterization": "standard"}, "width"),
        ({"w_std": -1.0}, "w_std"),
        ({"b_std_last": math.nan}, "b_std_last"),
        ({"activation": "ab_relu"}, "slopes"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NNGPKernel(**kwargs)


# ------------------------------------------------------------------------ CNN kernel
@pytest.mark.parametrize("i", range(len(REFERENCE["cnn"][0]["cases"])))
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_cnn_matches_stored_neural_tangents_values(i, kind):
    block = REFERENCE["cnn"][0]
    case = block["cases"][i]
    x1 = torch.tensor(block["x1"], dtype=torch.float64)
    x2 = torch.tensor(block["x2"], dtype=torch.float64)
    kernel = NNGPKernel(
        case["depth"],
        case["activation"],
        kind=kind,
        w_std=case["w_std"],
        b_std=case["b_std"],
        w_std_last=case["w_std_last"],
        b_std_last=case["b_std_last"],
        image_shape=tuple(x1.shape[1:]),
        filter_size=case["filter_size"],
    )
    with torch.no_grad():
        cross = kernel(x1.flatten(1), x2.flatten(1)).to_dense()
        diag = kernel(x1.flatten(1)[:2], x2.flatten(1), diag=True)
    np.testing.assert_allclose(cross.numpy(), case[f"{kind}_cross"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(diag.numpy(), np.diagonal(case[f"{kind}_cross"]), rtol=1e-12)


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_cnn_on_single_pixel_images_is_the_fully_connected_kernel(kind):
    """A 1 x 1 image with 1 x 1 filters is a dense layer: the CNN kernel must equal the
    fully connected one, and small chunks must not change anything."""
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    g = torch.Generator().manual_seed(6)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    kw = dict(depth=3, activation="gelu", kind=kind, w_std=1.3, b_std=0.2, w_std_last=0.7)
    fc = nngp_kernel(x, x[:4], **kw)
    conv = cnn_kernel(
        x.reshape(7, 1, 1, 5), x[:4].reshape(4, 1, 1, 5), filter_size=1, chunk_elements=5, **kw
    )
    torch.testing.assert_close(conv, fc, rtol=1e-14, atol=1e-15)


def test_cnn_gradients_are_finite_and_mnist_sized_inputs_run():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6 * 6 * 2, generator=g, dtype=torch.float64)
    x[1] = 0.0
    kernel = NNGPKernel(2, "relu", kind="ntk", b_std=0.1, image_shape=(6, 6, 2))
    kernel(x).to_dense().sum().backward()
    assert (
        torch.isfinite(kernel.raw_w_std.grad).all() and torch.isfinite(kernel.raw_b_std.grad).all()
    )
    with pytest.raises(ValueError, match="without batch dims"):
        kernel(x.reshape(1, 3, -1)).to_dense()


def _cnn_inputs(channels):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(9, 5, 6, channels, generator=g, dtype=torch.float64)
    x[4] = x[1]  # coincident images: the angle-0 snap must act inside tiles too
    x[6] = 0.0  # a zero image: degenerate angles
    y = torch.randn(5, 5, 6, channels, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("act", ["relu", "abs", "erf"])
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_cnn_tiled_inference_path_equals_the_autograd_path(act, kind):
    """Without autograd the kernel is tiled (square tiles of image pairs, only those on
    and above the diagonal when x2 is x1) and updated in place; with autograd it is the
    out-of-place chunked recursion. Every tiling must give the same matrix."""
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    x, y = _cnn_inputs(2)
    kw = dict(depth=3, activation=act, kind=kind, b_std=0.1, w_std_last=1.1, b_std_last=0.2)
    kw["slopes"] = _slopes(act)
    w = torch.tensor(1.4, dtype=torch.float64, requires_grad=True)
    for args in [(x, y), (x,)]:
        grad_path = cnn_kernel(*args, w_std=w, filter_size=3, **kw)
        assert grad_path.requires_grad
        with torch.no_grad():
            for block in (None, 1, 5 * 6 * 4, 5 * 6 * 25):  # default, 1x1, 2x2, 5x5 tiles
                tiled = cnn_kernel(*args, w_std=1.4, filter_size=3, block_elements=block, **kw)
                torch.testing.assert_close(tiled, grad_path.detach(), rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        sym = cnn_kernel(x, w_std=1.4, block_elements=5 * 6 * 4, **kw)
        full = cnn_kernel(x, x.clone(), w_std=1.4, block_elements=5 * 6 * 4, **kw)
        view = cnn_kernel(x, x.view(x.shape), w_std=1.4, block_elements=5 * 6 * 4, **kw)
    assert torch.equal(sym, sym.T)  # the lower tiles are transposed copies
    torch.testing.assert_close(sym, full, rtol=1e-13, atol=1e-15)
    assert torch.equal(view, sym)


def test_cnn_box_sum_against_explicit_zero_padded_windows():
    """The separable in-place box sum equals the mean over explicitly padded windows,
    for odd and even filters (XLA SAME: the extra row/column goes after), in place too."""
    from bayesfn.bayesnn.nngp.cnn import _box, _box_into

    g = torch.Generator().manual_seed(9)
    t = torch.randn(3, 2, 5, 4, generator=g, dtype=torch.float64)
    for f in (1, 2, 3, 4, 6):
        low, high = (f - 1) // 2, f // 2
        padded = np.pad(t.numpy(), [(0, 0), (0, 0), (low, high), (low, high)])
        want = np.zeros(t.shape)
        for i in range(5):
            for j in range(4):
                want[..., i, j] = padded[..., i : i + f, j : j + f].mean((-2, -1))
        np.testing.assert_allclose(_box(t, f).numpy(), want, rtol=1e-14, atol=1e-15)
        src = t.clone()
        _box_into(src, src, torch.empty_like(t), f)
        assert torch.equal(src, _box(t, f))


def test_cnn_bad_block_sizes_name_themselves():
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    x = torch.zeros(2, 3, 3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="block_elements"):
        cnn_kernel(x, block_elements=0)
    with pytest.raises(ValueError, match="chunk_elements"):
        cnn_kernel(x, chunk_elements=-1)
    with pytest.raises(ValueError, match="tile_threads"):
        cnn_kernel(x, tile_threads=0)


def test_cnn_tile_threads_keep_values_and_restore_torch_threads():
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    x, _ = _cnn_inputs(1)
    before = torch.get_num_threads()
    with torch.no_grad():
        one = cnn_kernel(x, depth=2, kind="ntk", block_elements=5 * 6 * 9, tile_threads=1)
        assert torch.get_num_threads() == before
        left = cnn_kernel(x, depth=2, kind="ntk", block_elements=5 * 6 * 9, tile_threads=None)
    torch.testing.assert_close(one, left, rtol=1e-14, atol=1e-15)


def _record_threads(monkeypatch, module, name):
    """Patch ``module.name`` to record torch's thread count each time it runs."""
    seen = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_kernels_build_at_one_thread_by_default_and_restore_torchs_setting(monkeypatch):
    """The no-autograd paths run at 1 thread unless told otherwise (a 2-core machine
    shared with other jobs made them 2-10x slower at 2 threads; benchmarks/RESULTS.md);
    autograd and diag calls keep torch's setting; torch's setting is always restored."""
    from bayesfn.bayesnn.nngp import cnn, kernel

    fc_seen = _record_threads(monkeypatch, kernel, "_nngp_kernel")
    cnn_seen = _record_threads(monkeypatch, cnn, "_tiled_kernel")
    maps_seen = _record_threads(monkeypatch, cnn, "diag_map")  # the per-image variance maps
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    images, _ = _cnn_inputs(1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            fc = [nngp_kernel(x, depth=2, threads=t) for t in (1, None, 3)]
            default_fc = nngp_kernel(x, depth=2)
            assert torch.get_num_threads() == 2
            cnn_out = [cnn.cnn_kernel(images, depth=2, tile_threads=t) for t in (1, None)]
            default_cnn = cnn.cnn_kernel(images, depth=2)
            assert torch.get_num_threads() == 2
            nngp_kernel(x, depth=2, diag=True)
        w = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
        nngp_kernel(x, depth=2, w_std=w)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert fc_seen == [1, 2, 3, 1, 2, 2]
    assert cnn_seen == [1, 2, 1]
    assert maps_seen == [1, 1, 2, 2, 1, 1]  # depth 2: two maps per call
    for out in fc[1:] + [default_fc]:
        torch.testing.assert_close(out, fc[0], rtol=1e-14, atol=0)
    for out in cnn_out[1:] + [default_cnn]:
        torch.testing.assert_close(out, cnn_out[0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_name_the_argument(bad):
    from bayesfn.bayesnn.nngp.cnn import cnn_kernel

    x = torch.zeros(2, 3, 3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^threads must be None or a positive integer"):
        nngp_kernel(x[:, 0, 0], threads=bad)
    with pytest.raises(ValueError, match=r"^tile_threads must be None or a positive integer"):
        cnn_kernel(x, tile_threads=bad)


# ------------------------------------------------------------------ hardening


def test_kernel_call_checks_its_inputs():
    k = NNGPKernel(depth=1)
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x1 must be a torch\.Tensor .* got ndarray"):
        k(x.numpy())
    with pytest.raises(TypeError, match=r"x2 must be a torch\.Tensor"):
        k(x, x.numpy())
    with pytest.raises(ValueError, match=r"x2 must have shape \(\.\.\., m, d\) with the d = 3"):
        k(x, torch.randn(2, 5, dtype=torch.float64))
    assert k(x, x[:2]).to_dense().shape == (4, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "leaky_relu", "negative_slope": float("nan")}, "negative_slope must be"),
        ({"activation": "ab_relu", "slopes": (0.1, float("inf"))}, "slopes must be two finite"),
    ],
)
def test_kernel_rejects_non_finite_slopes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NNGPKernel(depth=1, **kwargs)


def test_large_differentiable_matrices_are_tiled_with_the_same_values_and_gradients(
    monkeypatch,
):
    from bayesfn.bayesnn.nngp import kernel as kernel_module

    g = torch.Generator().manual_seed(0)
    x, x2 = (
        torch.randn(30, 4, generator=g, dtype=torch.float64),
        torch.randn(12, 4, generator=g, dtype=torch.float64),
    )
    k = NNGPKernel(depth=2, activation="relu", w_std=1.3, b_std=0.2, kind="ntk")
    direct = k(x, x2).to_dense()
    gd = torch.autograd.grad(direct.sum(), list(k.parameters()))
    calls = []
    real = kernel_module.tiled_kernel_matrix
    monkeypatch.setattr(kernel_module, "_TILE_ABOVE_ELEMENTS", 100)
    monkeypatch.setattr(
        kernel_module,
        "tiled_kernel_matrix",
        lambda *a, **kw: calls.append(1) or real(*a, tile_rows=7),
    )
    tiled = k(x, x2).to_dense()
    gt = torch.autograd.grad(tiled.sum(), list(k.parameters()))
    assert calls  # the tiled route was taken
    torch.testing.assert_close(tiled, direct, rtol=1e-13, atol=1e-14)
    for a, b in zip(gt, gd, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_large_differentiable_cnn_matrices_are_tiled_with_the_same_values_and_gradients(
    monkeypatch, kind
):
    """The CNN kernel's differentiable path is tiled like the FC kernel's (no-grad
    forward, per-row-tile recompute in the backward): the same matrix and the same
    hyperparameter gradients as autograd through the whole recursion."""
    from bayesfn.bayesnn.nngp import kernel as kernel_module

    x, y = _cnn_inputs(2)
    x, y = x.reshape(9, -1), y.reshape(5, -1)
    k = NNGPKernel(
        depth=2, activation="relu", w_std=1.3, b_std=0.2, kind=kind, image_shape=(5, 6, 2)
    )
    weights = torch.randn(9, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for args, wts in [((x,), weights), ((x, y), weights[:, :5])]:
        direct = k(*args).to_dense()
        gd = torch.autograd.grad((direct * wts).sum(), list(k.parameters()))
        calls = []
        real = kernel_module.tiled_kernel_matrix
        with monkeypatch.context() as patch:
            patch.setattr(kernel_module, "_TILE_ABOVE_ELEMENTS", 100)
            patch.setattr(
                kernel_module,
                "tiled_kernel_matrix",
                lambda *a, **kw: calls.append(kw) or real(*a, **{**kw, "tile_rows": 2}),
            )
            tiled = k(*args).to_dense()
            gt = torch.autograd.grad((tiled * wts).sum(), list(k.parameters()))
        assert calls and calls[0]["full"] is not None  # the tiled route was taken
        torch.testing.assert_close(tiled, direct, rtol=1e-12, atol=1e-14)
        for a, b in zip(gt, gd, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
