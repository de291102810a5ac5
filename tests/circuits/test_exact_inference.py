"""Exact inference against independent references: enumeration of every state,
numerical integration on a grid, and closed-form one-dimensional integrals."""

import itertools

import numpy as np
import pytest
import torch
from scipy import integrate

from bayesfn.circuits import models as M

from .conftest import fitted


def _all_states(d, s):
    return torch.tensor(list(itertools.product(range(s), repeat=d)), dtype=torch.float64)


def _unnormalised(model, x):
    codes = torch.full((x.shape[1],), M.OBSERVE)
    log, _ = model._log_f(x, codes)
    return log


@pytest.mark.parametrize(
    "input,states,kwargs",
    [
        ("categorical", 3, {"num_replicas": 2}),
        ("bernoulli", 2, {"num_replicas": 3}),
        ("binomial", 4, {"region_graph": "linear"}),
    ],
)
def test_normalisation_by_enumeration(kind, input, states, kwargs):
    d = 4
    x = torch.randint(0, states, (30, d)).double()
    model = fitted(kind, x, num_units=3, input=input, num_states=states, **kwargs)
    allx = _all_states(d, states)
    total = torch.logsumexp(model.log_prob(allx), 0)
    assert abs(float(total)) < 1e-10
    # log Z equals the enumerated sum of the unnormalised circuit
    ref = torch.logsumexp(_unnormalised(model, allx), 0)
    torch.testing.assert_close(model.log_partition().detach(), ref.detach(), rtol=0, atol=1e-10)
    # marginalising every variable gives log Z
    codes = torch.full((d,), M.MARGINALIZE)
    torch.testing.assert_close(model._log_f(allx[:1], codes)[0][0].detach(), ref.detach())
    none = torch.zeros(d, dtype=torch.bool)
    assert model.marginal_log_prob(allx[:3], none).abs().max() < 1e-10
    # the training path (log Z riding along as a batch row in unsquared circuits) against
    # the per-code path normalised by enumeration: values and gradients
    params = list(model.module_.parameters())
    got = model._log_prob(x)
    want = _unnormalised(model, x) - torch.logsumexp(_unnormalised(model, allx), 0)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    g_got = torch.autograd.grad(got.mean(), params)
    g_want = torch.autograd.grad(want.mean(), params)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_npc2_scrambled_weights_are_really_signed():
    x = torch.randint(0, 3, (30, 4)).double()
    model = fitted("npc2", x, num_units=3, input="categorical")
    assert any((w < 0).any() for w in model.module_.weight)
    # NPC²'s categorical leaves are signed tables, and the scramble uses both signs
    table = model.module_.inputs.coef
    assert (table < 0).any() and (table > 0).any()


def test_signed_categorical_leaf_against_direct_sums():
    """Gram matrices, Gram CDFs and values of a signed table against numpy sums."""
    from bayesfn.circuits.inputs import CategoricalInput

    layer = CategoricalInput(torch.tensor([0, 1]), 3, 4, signed=True)
    with torch.no_grad():
        layer.coef.copy_(
            torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        )
        layer.coef[0, 1, 2] = 0.0  # an exact zero
    v = layer.coef.detach().numpy()
    s = np.arange(4.0)
    with torch.no_grad():
        for k in (0, 1, 2):
            gl, gs = layer.gram_moment(k)
            ref = np.einsum("lis,ljs,s->lij", v, v, s**k)
            np.testing.assert_allclose((gs * gl.exp()).numpy(), ref, rtol=1e-12, atol=1e-14)
        t = torch.tensor([[-1.0, 0.0, 2.0, 3.0], [1.0, 2.5, 5.0, 0.0]], dtype=torch.float64)
        cl, cs = layer.gram_cdf(t)
        for l_ in range(2):
            for b in range(4):
                upto = int(np.floor(min(t[l_, b].item(), 3)))
                ref = np.einsum("is,js->ij", v[l_, :, : upto + 1], v[l_, :, : upto + 1])
                np.testing.assert_allclose((cs * cl.exp())[l_, b].numpy(), ref, atol=1e-14)
        x = torch.tensor([[2.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
        dl, ds = layer.density(x)
        ref = np.stack([v[0, :, [2, 0]], v[1, :, [1, 3]]])  # (L, B, K)
        np.testing.assert_allclose((ds * dl.exp()).numpy(), ref, atol=1e-15)
        assert ds[0, 0, 1] == 0 and dl[0, 0, 1] == -np.inf  # the exact-zero path
    for call in (
        lambda: layer.log_density(x),
        lambda: layer.log_cdf(x),
        lambda: layer.moment(1),
        layer.log_probs,
    ):
        with pytest.raises(TypeError, match="signed CategoricalInput"):
            call()


def test_which_leaves_are_signed():
    """NPC²'s categorical leaves are signed tables (two states give signed Bernoulli-domain
    leaves); Bernoulli leaves stay positive in every model, like the authors' binomials."""
    from bayesfn.circuits.inputs import BernoulliInput

    x = (torch.rand(30, 4, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    npc = fitted("npc2", x, num_units=2, input="categorical", num_states=2)
    assert npc.module_.inputs.signed
    for kind in ("mpc", "mpc2", "npc2"):
        inputs = fitted(kind, x, num_units=2, input="bernoulli").module_.inputs
        assert isinstance(inputs, BernoulliInput) and not inputs.signed
    with pytest.raises(ValueError, match=r"integer states in 0\.\.1"):
        npc.log_prob(torch.full((1, 4), 2.0, dtype=torch.float64))


def test_normalisation_by_numerical_integration_2d_gaussian(kind):
    replicas = 2
    x = torch.randn(50, 2, dtype=torch.float64)
    model = fitted(kind, x, num_units=3, num_replicas=replicas)
    inp = model.module_.inputs
    lo = min(inp.support(0)[0], inp.support(1)[0])
    hi = max(inp.support(0)[1], inp.support(1)[1])
    # the trapezoid rule is spectrally accurate for Gaussians: error ~ exp(-2π²σ²/h²)
    sigma_min = float(inp.log_sigma.detach().exp().min()) / 2**0.5  # products of units are narrower
    n = int((hi - lo) / (sigma_min / 2)) + 1
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    dens = model.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)).exp()
    dens = dens.reshape(n, n).numpy()
    h = float(grid[1] - grid[0])
    mass = integrate.trapezoid(integrate.trapezoid(dens, dx=h, axis=1), dx=h)
    assert abs(mass - 1.0) < 1e-6


def test_marginals_and_conditionals_against_enumeration(kind):
    d, s = 4, 3
    x = torch.randint(0, s, (30, d)).double()
    model = fitted(kind, x, num_units=3, input="categorical", num_replicas=2, seed=1)
    allx = _all_states(d, s)
    joint = model.log_prob(allx).reshape((s,) * d)  # axes = variables
    mask = torch.tensor([True, False, True, False])
    ev = allx[[5, 40, 77]]
    # marginal of the observed pair
    ref_marg = torch.logsumexp(torch.logsumexp(joint, 3), 1)  # over x1, x3
    got = model.marginal_log_prob(ev, mask)
    want = torch.stack([ref_marg[int(r[0]), int(r[2])] for r in ev])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    post = model.posterior(ev, mask=mask)
    assert post.event_shape == (2,) and post.batch_shape == (3,)
    assert post.variables.tolist() == [1, 3]
    for b, r in enumerate(ev):
        table = joint[int(r[0]), :, int(r[2]), :]  # (x1, x3)
        cond = (table - torch.logsumexp(table.reshape(-1), 0)).exp()
        values = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
        lp = post.log_prob(values.unsqueeze(1).expand(2, 3, 2))[:, b]
        torch.testing.assert_close(lp.exp(), torch.stack([cond[1, 2], cond[0, 0]]))
        m1, m3 = cond.sum(1), cond.sum(0)
        states = torch.arange(s, dtype=torch.float64)
        mean = torch.stack([(m1 * states).sum(), (m3 * states).sum()])
        var = torch.stack([(m1 * states**2).sum(), (m3 * states**2).sum()]) - mean**2
        torch.testing.assert_close(post.mean[b], mean)
        torch.testing.assert_close(post.variance[b], var)
        mlp = post.marginal_log_prob(torch.full((3, 2), 2.0, dtype=torch.float64))[b]
        torch.testing.assert_close(mlp.exp(), torch.stack([m1[2], m3[2]]))
        cdf = post.cdf(torch.full((3, 2), 1.0, dtype=torch.float64))[b]
        torch.testing.assert_close(cdf, torch.stack([m1[:2].sum(), m3[:2].sum()]))
        q = post.quantile(0.5)[b]
        for k, m in enumerate((m1, m3)):
            assert q[k] == int((m.cumsum(0) < 0.5 - 1e-12).sum())


def test_gaussian_conditional_moments_and_cdf_by_quadrature(kind):
    x = torch.randn(40, 3, dtype=torch.float64)
    model = fitted(kind, x, num_units=3, num_replicas=2, seed=2)
    ev = torch.tensor([[0.3, 0.0, -0.5]], dtype=torch.float64)
    mask = torch.tensor([True, False, True])
    post = model.posterior(ev, mask=mask)
    lo, hi = model.module_.inputs.support(1)
    t = torch.linspace(lo, hi, 20001, dtype=torch.float64)
    rows = ev.repeat(t.numel(), 1)
    rows[:, 1] = t
    dens = model.log_prob(rows).exp()
    dens = dens / integrate.trapezoid(dens.numpy(), t.numpy())
    mean = integrate.trapezoid((t * dens).numpy(), t.numpy())
    var = integrate.trapezoid(((t - mean) ** 2 * dens).numpy(), t.numpy())
    assert abs(float(post.mean[0, 0]) - mean) < 1e-6
    assert abs(float(post.variance[0, 0]) - var) < 1e-6
    # CDF at the median of the quadrature density
    cum = integrate.cumulative_trapezoid(dens.numpy(), t.numpy(), initial=0.0)
    med = float(np.interp(0.5, cum, t.numpy()))
    assert abs(float(post.cdf(torch.tensor([[med]], dtype=torch.float64))) - 0.5) < 1e-6
    assert abs(float(post.quantile(0.5)[0, 0]) - med) < 1e-5
    # per-point marginal density against the quadrature density
    i = 10000
    got = post.marginal_log_prob(t[i].reshape(1, 1)).exp()
    torch.testing.assert_close(got.reshape(()), dens[i], rtol=1e-6, atol=0)


def test_sampling_matches_exact_discrete_probabilities(kind):
    from scipy.stats import chisquare

    d, s = 3, 3
    x = torch.randint(0, s, (30, d)).double()
    model = fitted(kind, x, num_units=2, input="categorical", seed=3)
    n = 6000
    draws = model.sample(n, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (n, d)
    idx = (draws[:, 0] * 9 + draws[:, 1] * 3 + draws[:, 2]).long()
    counts = torch.bincount(idx, minlength=27).numpy()
    probs = model.log_prob(_all_states(d, s)).exp().numpy()
    keep = probs * n > 5
    expected = probs[keep] / probs[keep].sum() * counts[keep].sum()
    assert chisquare(counts[keep], expected).pvalue > 1e-3


@pytest.mark.parametrize(
    "leaves", [{}, {"input": "spline", "spline_bases": 8}], ids=["gaussian", "spline"]
)
def test_sampling_matches_exact_continuous_marginals(kind, leaves):
    from scipy.stats import kstest

    x = torch.randn(40, 2, dtype=torch.float64)
    model = fitted(kind, x, num_units=3, num_replicas=2, seed=4, **leaves)
    draws = model.sample(1500, generator=torch.Generator().manual_seed(1))
    post = model.posterior()
    for j in range(2):

        def cdf(v, j=j):
            full = torch.zeros(len(v), 2, dtype=torch.float64)
            full[:, j] = torch.as_tensor(v, dtype=torch.float64)
            return post.cdf(full)[:, j].numpy()

        assert kstest(draws[:, j].numpy(), cdf).pvalue > 1e-3
    # the second coordinate given the first: KS of conditional draws
    ev = torch.tensor([0.5, 0.0], dtype=torch.float64)
    cond = model.posterior(ev, mask=torch.tensor([True, False]))
    s = cond.sample((1500,), generator=torch.Generator().manual_seed(2))[:, 0]
    assert (
        kstest(
            s.numpy(), lambda v: cond.cdf(torch.as_tensor(v).reshape(-1, 1)).reshape(-1).numpy()
        ).pvalue
        > 1e-3
    )


@pytest.mark.parametrize("input", ["categorical", "spline"])
def test_gradcheck_on_a_small_circuit(kind, input):
    if input == "categorical":
        x = torch.randint(0, 3, (10, 3)).double()
        model = fitted(kind, x, num_units=2, input="categorical", seed=5)
    else:  # spline leaves (signed inside NPC²)
        x = torch.randn(10, 3, dtype=torch.float64)
        model = fitted(kind, x, num_units=2, input="spline", spline_bases=5, seed=5)
    params = list(model.module_.parameters())
    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)

    def fn(*ps):
        mod = model.module_
        saved = [p for p in mod.parameters()]
        try:
            for name, v in zip([n for n, _ in mod.named_parameters()], ps, strict=True):
                _set_param(mod, name, v)
            return model._log_prob(x[:4])
        finally:
            for name, v in zip([n for n, _ in mod.named_parameters()], saved, strict=True):
                _set_param(mod, name, v)

    assert torch.autograd.gradcheck(fn, inputs)


def _set_param(mod, name, value):
    *path, last = name.split(".")
    for p in path:
        mod = getattr(mod, p) if not p.isdigit() else mod[int(p)]
    mod._parameters[last] = value


def test_unique_disjointness_by_enumeration():
    from bayesfn.circuits.expressiveness import unique_disjointness_circuit

    for n in (2, 3, 5):
        model = unique_disjointness_circuit(n)
        allx = _all_states(2 * n, 2)
        f = (1 - (allx[:, 0::2] * allx[:, 1::2]).sum(1)) ** 2
        torch.testing.assert_close(_unnormalised(model, allx).exp(), f, rtol=1e-12, atol=1e-12)
        p = model.log_prob(allx).exp()
        torch.testing.assert_close(p, f / f.sum(), rtol=1e-12, atol=1e-15)
        assert (p[f == 0] == 0).all()  # the exact-zero path, not a tiny number
        assert any((w < 0).any() for w in model.module_.weight)
        # O(n): 2n - 1 folds of (at most) 3 x 3 sum weights
        assert sum(w.shape[0] for w in model.module_.weight) == 2 * n - 1


def test_monotonic_circuit_on_a_quad_graph_normalises_by_enumeration():
    """Regions that split several ways (summed partitions) on a 3 x 3 binary image."""
    x = (torch.rand(40, 9) < 0.4).double()
    model = fitted(
        "mpc", x, num_units=2, input="bernoulli", region_graph="quad_graph", image_shape=(3, 3)
    )
    assert not model.graph_.is_structured_decomposable()
    allx = _all_states(9, 2)
    assert abs(float(torch.logsumexp(model.log_prob(allx), 0))) < 1e-10
    mask = torch.tensor([True, False, True, False, False, True, False, False, False])
    got = model.marginal_log_prob(allx[:4], mask)
    joint = model.log_prob(allx)
    for b in range(4):
        same = (allx[:, mask] == allx[b, mask]).all(1)
        torch.testing.assert_close(got[b], torch.logsumexp(joint[same], 0))


def _knot_gauss_mass(model):
    """∫∫ p by tensor-product Gauss–Legendre on every knot cell: exact for the piecewise
    polynomials a spline circuit (or its square) is, up to rounding."""
    inp = model.module_.inputs
    nodes, weights = np.polynomial.legendre.leggauss(inp.degree + 2)
    axes = []
    for v in (0, 1):
        t0 = float(inp.t0[inp.variables == v][0])
        h = float(inp.h[inp.variables == v][0])
        knots = t0 + h * np.arange(inp.num_bases + inp.degree + 1)
        mid, half = (knots[1:] + knots[:-1]) / 2, (knots[1:] - knots[:-1]) / 2
        axes.append(
            ((mid[:, None] + half[:, None] * nodes).ravel(), (half[:, None] * weights).ravel())
        )
    (p0, w0), (p1, w1) = axes
    g0, g1 = np.meshgrid(p0, p1, indexing="ij")
    pts = torch.tensor(np.stack([g0.ravel(), g1.ravel()], -1))
    dens = model.log_prob(pts).exp().numpy().reshape(len(p0), len(p1))
    return float(w0 @ dens @ w1)


@pytest.mark.parametrize("degree", [1, 2])
def test_normalisation_by_numerical_integration_2d_splines(kind, degree):
    x = torch.randn(60, 2, dtype=torch.float64)
    model = fitted(
        kind, x, num_units=2, num_replicas=2, input="spline", spline_bases=6, spline_degree=degree
    )
    inp = model.module_.inputs
    # NPC²'s spline leaves are signed (the scramble makes some coefficients negative)
    assert inp.signed == (kind == "npc2")
    if kind == "npc2":
        assert (inp.coef < 0).any() and (inp.coef > 0).any()
    assert abs(_knot_gauss_mass(model) - 1.0) < 1e-10


def test_signed_spline_leaf_integrals_by_quadrature():
    """A signed spline layer (real coefficients): values, Gram matrices, moments and
    Gram CDFs of units of either sign against the trapezoid rule on a fine grid."""
    from bayesfn.circuits.inputs import SplineInput

    layer = SplineInput(torch.tensor([0, 0]), 3, num_bases=7, degree=2, signed=True)
    layer.init_from_data(torch.randn(50, 1, dtype=torch.float64), torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.coef.copy_(
            torch.randn(
                layer.coef.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
            )
        )
    lo, hi = layer.support(0)
    t = torch.linspace(lo - 0.3, hi + 0.3, 40001, dtype=torch.float64)
    tn = t.numpy()
    with torch.no_grad():
        log, sign = layer.density(t.expand(2, -1))
        f = (sign * log.exp())[1].numpy()  # (B, K): leaf 1, units of either sign
        assert (f < -1e-3).any() and (f > 1e-3).any()
        # the same spline by an independent evaluation: scipy's BSpline on the same knots
        from scipy.interpolate import BSpline

        t0, h, p = float(layer.t0[1]), float(layer.h[1]), layer.degree
        # p zero coefficients on each side put every knot interval inside scipy's base
        # interval (where it evaluates without extrapolating)
        knots = t0 + h * np.arange(-p, layer.num_bases + 2 * p + 1)
        for k in range(3):
            c = np.pad(layer.coef[1, k].numpy() / h, p)
            ref = BSpline(knots, c, p, extrapolate=False)(tn)
            np.testing.assert_allclose(f[:, k], np.nan_to_num(ref), atol=1e-12)
        ml, ms = layer.moment(1)
        np.testing.assert_allclose(
            (ms * ml.exp())[1].numpy(), integrate.trapezoid(tn[:, None] * f, tn, axis=0), atol=1e-6
        )
        gl, gs = layer.gram_moment(0)
        ref = integrate.trapezoid(f[:, :, None] * f[:, None, :], tn, axis=0)
        assert (gs[1] < 0).any()
        np.testing.assert_allclose((gs * gl.exp())[1].numpy(), ref, rtol=1e-6, atol=1e-9)
        cl, cs = layer.gram_cdf(t[::400].expand(2, -1))
        ref = integrate.cumulative_trapezoid(f[:, :, None] * f[:, None, :], tn, axis=0, initial=0)
        assert np.abs((cs * cl.exp())[1].numpy() - ref[::400]).max() < 1e-6
        dl, ds = layer.gram_density(t[::400].expand(2, -1))
        np.testing.assert_allclose(
            (ds * dl.exp())[1].numpy(), f[::400, :, None] * f[::400, None, :], atol=1e-12
        )
    with pytest.raises(TypeError, match="signed SplineInput has no log density"):
        layer.log_density(t[:3].expand(2, -1))
    with pytest.raises(TypeError, match="CDF"):
        layer.log_cdf(t[:3].expand(2, -1))


def test_spline_leaf_integrals_by_quadrature():
    """CDF, moments and Gram matrices of spline units against the trapezoid rule."""
    from bayesfn.circuits.inputs import SplineInput

    layer = SplineInput(torch.tensor([0]), 3, num_bases=7, degree=2)
    layer.init_from_data(torch.randn(50, 1, dtype=torch.float64), torch.Generator().manual_seed(0))
    lo, hi = layer.support(0)
    t = torch.linspace(lo - 0.3, hi + 0.3, 40001, dtype=torch.float64)
    with torch.no_grad():
        d = layer.log_density(t.unsqueeze(0)).exp()[0]  # (B, K)
        tn, dn = t.numpy(), d.numpy()
        assert np.allclose(integrate.trapezoid(dn, tn, axis=0), 1.0, atol=1e-7)
        cdf = layer.log_cdf(t.unsqueeze(0)).exp()[0].numpy()
        assert np.abs(cdf - integrate.cumulative_trapezoid(dn, tn, axis=0, initial=0)).max() < 1e-6
        ml, ms = layer.moment(1)
        ref = integrate.trapezoid(tn[:, None] * dn, tn, axis=0)
        assert np.allclose((ms * ml.exp())[0].numpy(), ref, atol=1e-7)
        gram = layer.gram_moment(0)[0].exp()[0].numpy()
        ref = integrate.trapezoid(dn[:, :, None] * dn[:, None, :], tn, axis=0)
        assert np.allclose(gram, ref, rtol=1e-6)
        g2 = layer.gram_moment(2)[0].exp()[0].numpy()
        integrand = tn[:, None, None] ** 2 * dn[:, :, None] * dn[:, None, :]
        ref = integrate.trapezoid(integrand, tn, axis=0)
        assert np.allclose(g2, ref, rtol=1e-6)
        gc = layer.gram_cdf(t[::400].unsqueeze(0))[0].exp()[0].numpy()
        ref = integrate.cumulative_trapezoid(dn[:, :, None] * dn[:, None, :], tn, axis=0, initial=0)
        assert np.abs(gc - ref[::400]).max() < 1e-6


def test_spline_moments_and_cdf_against_integration_of_the_marginals(kind):
    """Mean, variance and CDF of each variable (signed spline leaves inside NPC²) against
    the trapezoid rule over that variable's exact marginal density."""
    x = torch.randn(60, 2, dtype=torch.float64)
    model = fitted(kind, x, num_units=2, num_replicas=2, input="spline", spline_bases=6, seed=3)
    post = model.posterior()
    inp = model.module_.inputs
    lo = min(inp.support(0)[0], inp.support(1)[0])
    hi = max(inp.support(0)[1], inp.support(1)[1])
    t = torch.linspace(lo, hi, 40001, dtype=torch.float64)
    grid = torch.stack([t, t], -1)  # (N, 2): both variables at the same points
    with torch.no_grad():
        dens = post.marginal_log_prob(grid).exp().numpy()  # (N, 2)
        tn = t.numpy()
        mass = integrate.trapezoid(dens, tn, axis=0)
        mean = integrate.trapezoid(tn[:, None] * dens, tn, axis=0)
        var = integrate.trapezoid((tn[:, None] - mean) ** 2 * dens, tn, axis=0)
        cdf = integrate.cumulative_trapezoid(dens, tn, axis=0, initial=0)
        np.testing.assert_allclose(mass, 1.0, atol=1e-6)
        np.testing.assert_allclose(post.mean.numpy(), mean, atol=1e-6)
        np.testing.assert_allclose(post.variance.numpy(), var, rtol=1e-5)
        np.testing.assert_allclose(post.cdf(grid[::1000]).numpy(), cdf[::1000], atol=1e-6)


@pytest.mark.parametrize("method", ["cdf", "log_prob", "marginal_log_prob"])
def test_conditional_refuses_nan_values(kind, method):
    """cdf(NaN) used to return cdf(0) and log_prob(NaN) NaN."""
    x = torch.randn(30, 3, dtype=torch.float64)
    model = fitted(kind, x, num_units=2, num_replicas=1, seed=0)
    post = model.posterior(
        torch.tensor([[0.3, 0.0, -0.5]], dtype=torch.float64),
        mask=torch.tensor([True, False, True]),
    )
    with pytest.raises(ValueError, match=r"value contains 1 NaN value"):
        getattr(post, method)(torch.tensor([[float("nan")]], dtype=torch.float64))
