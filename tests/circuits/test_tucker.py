"""Tucker sum layers (``y_k = Σ_{i,j} W[k,i,j] a_i b_j``) against independent references:
dense linear-algebra versions of the two layer contractions, the CP layer they reduce to
on diagonal weights, enumeration of every state, numerical integration, and samples."""

import itertools

import pytest
import torch
from scipy import integrate
from scipy.stats import chisquare

from bayesfn import Model
from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
from bayesfn.circuits import models as M
from bayesfn.circuits import tensorized as T
from bayesfn.circuits.tensorized import tucker_layer, tucker_sq_layer
from bayesfn.kernels import signed_log

from .conftest import fitted, make_circuit


def _all_states(d, s):
    return torch.tensor(list(itertools.product(range(s), repeat=d)), dtype=torch.float64)


def _unnormalised_log(model, x):
    log, _ = model._log_f(x, torch.full((x.shape[1],), M.OBSERVE))
    return log


# ---------------------------------------------------------------- the two contractions
def _signed(g, shape, zero_frac=0.2):
    v = torch.randn(shape, generator=g, dtype=torch.float64)
    return torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < zero_frac, 0.0, v)


def test_tucker_layer_matches_dense_outer_product():
    g = torch.Generator().manual_seed(0)
    F, B, K, O = 3, 5, 4, 2
    a, b = _signed(g, (F, B, K)), _signed(g, (F, B, K))
    w = torch.randn(F, O, K, K, generator=g, dtype=torch.float64)
    # reference: an explicit loop over (f, batch) with the outer product as a matrix
    want = torch.empty(F, B, O, dtype=torch.float64)
    for f in range(F):
        for n in range(B):
            outer = torch.outer(a[f, n], b[f, n])
            want[f, n] = (w[f] * outer).sum((-1, -2))
    al, as_ = signed_log(a)
    bl, bs = signed_log(b)
    out_log, out_sign = tucker_layer(al, as_, bl, bs, w, signed=True)
    torch.testing.assert_close(out_sign * out_log.exp(), want, rtol=1e-12, atol=1e-300)
    # monotonic convention: log-weights and non-negative inputs
    theta = torch.randn(F, O, K, K, generator=g, dtype=torch.float64)
    a, b = a.abs(), b.abs()
    want = torch.einsum("fkij,fni,fnj->fnk", theta.exp(), a, b)
    out_log, out_sign = tucker_layer(a.log(), None, b.log(), None, theta, signed=False)
    torch.testing.assert_close(out_log.exp(), want, rtol=1e-12, atol=0)
    assert bool((out_sign[want > 0] == 1).all())


def test_tucker_layer_rejects_a_cp_shaped_weight():
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="weight must have shape"):
        tucker_layer(x, None, x, None, torch.zeros(2, 5, 4, dtype=torch.float64), signed=False)


def test_tucker_sq_layer_matches_the_kronecker_form(monkeypatch):
    """``W (A ⊗ B) Wᵀ`` with the Kronecker product formed explicitly (small K only)."""
    g = torch.Generator().manual_seed(1)
    F, B, K, O = 2, 3, 3, 4
    A, Bm = _signed(g, (F, B, K, K)), _signed(g, (F, B, K, K))
    A[0, 0] = 0.0  # a whole zero matrix: the exact-zero path
    Bm[1, 2] *= 1e-200  # tiny magnitudes must survive the shift
    w = torch.randn(F, O, K, K, generator=g, dtype=torch.float64)
    want = torch.empty(F, B, O, O, dtype=torch.float64)
    for f in range(F):
        wf = w[f].reshape(O, K * K)  # column (i, j) -> i*K + j, as kron orders A ⊗ B
        for n in range(B):
            want[f, n] = wf @ torch.kron(A[f, n], Bm[f, n]) @ wf.T
    al, as_ = signed_log(A)
    bl, bs = signed_log(Bm)
    out_log, out_sign = tucker_sq_layer(al, as_, bl, bs, w)
    got = out_sign * out_log.exp()
    torch.testing.assert_close(got[:, :2], want[:, :2], rtol=1e-12, atol=1e-300)
    assert bool((out_sign[0, 0] == 0).all()) and bool(torch.isneginf(out_log[0, 0]).all())
    # the rescaled batch entry: compare in log space (the values are ~1e-200)
    scale = 1e200
    torch.testing.assert_close(got[1, 2] * scale, want[1, 2] * scale, rtol=1e-12, atol=0)
    # the same batch run in slices of one row (each row's intermediates: F K_out K² = 72)
    monkeypatch.setattr(T, "TUCKER_SQ_MAX_ELEMENTS", 100)
    sliced_log, sliced_sign = tucker_sq_layer(al, as_, bl, bs, w)
    assert torch.equal(sliced_sign, out_sign)
    torch.testing.assert_close(sliced_log, out_log, rtol=1e-14, atol=0)
    # a batch of one on the left broadcasts against every slice on the right
    one_log, one_sign = tucker_sq_layer(al[:, 1:2], as_[:, 1:2], bl, bs, w)
    expanded = [t[:, 1:2].expand(-1, B, -1, -1) for t in (al, as_)]
    monkeypatch.setattr(T, "TUCKER_SQ_MAX_ELEMENTS", 2**24)  # the reference: no slices
    ref_log, ref_sign = tucker_sq_layer(*expanded, bl, bs, w)
    assert torch.equal(one_sign, ref_sign)
    torch.testing.assert_close(one_log, ref_log, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- Tucker ⊇ CP
def _diagonal_tucker_twin(kind, x, **kwargs):
    """A CP model and a Tucker model with W[k, i, j] = δ_ij V[k, i] and the same leaves."""
    cp = fitted(kind, x, seed=3, **kwargs)
    tk = make_circuit(kind, layer="tucker", **kwargs).fit(x, max_steps=1, progress_bar=False)
    with torch.no_grad():
        for wt, wc in zip(tk.module_.weight, cp.module_.weight, strict=True):
            k = wc.shape[-1]
            eye = torch.eye(k, dtype=torch.bool)
            if tk._weights == "log":  # log-weights: exp(-inf) = 0 off the diagonal
                full = torch.full(wt.shape, -torch.inf, dtype=wt.dtype)
            else:
                full = torch.zeros(wt.shape, dtype=wt.dtype)
            wt.copy_(torch.where(eye, wc.unsqueeze(-1), full))
        tk.module_.inputs.load_state_dict(cp.module_.inputs.state_dict())
    return cp, tk


def test_diagonal_tucker_equals_cp(kind):
    x = torch.randn(30, 5, dtype=torch.float64)
    cp, tk = _diagonal_tucker_twin(kind, x, num_units=3, num_replicas=2)
    assert tk.module_.weight[0].ndim == 4 and cp.module_.weight[0].ndim == 3
    torch.testing.assert_close(tk.log_prob(x), cp.log_prob(x), rtol=1e-12, atol=1e-12)
    # the matrix path (log Z, marginals) of squared circuits runs a different contraction
    torch.testing.assert_close(tk.log_partition(), cp.log_partition(), rtol=1e-12, atol=1e-12)
    mask = torch.tensor([True, False, True, False, False])
    torch.testing.assert_close(
        tk.marginal_log_prob(x[:6], mask), cp.marginal_log_prob(x[:6], mask), rtol=1e-12, atol=1e-12
    )
    post_t = tk.posterior(x[:3], mask=mask)
    post_c = cp.posterior(x[:3], mask=mask)
    torch.testing.assert_close(post_t.mean, post_c.mean, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- exact inference
@pytest.mark.parametrize(
    "input,states,kwargs",
    [
        ("categorical", 3, {"num_replicas": 2}),
        ("bernoulli", 2, {"region_graph": "linear"}),
    ],
)
def test_tucker_normalisation_by_enumeration(kind, input, states, kwargs):
    d = 4
    x = torch.randint(0, states, (30, d)).double()
    model = fitted(kind, x, num_units=3, input=input, num_states=states, layer="tucker", **kwargs)
    if kind == "npc2":
        assert any((w < 0).any() for w in model.module_.weight)
    allx = _all_states(d, states)
    assert abs(float(torch.logsumexp(model.log_prob(allx), 0))) < 1e-10
    ref = torch.logsumexp(_unnormalised_log(model, allx), 0)
    torch.testing.assert_close(model.log_partition(), ref, rtol=0, atol=1e-10)


def test_tucker_on_a_quad_graph_normalises_by_enumeration():
    """Monotonic Tucker layers where regions split several ways (summed partitions)."""
    x = (torch.rand(40, 9, generator=torch.Generator().manual_seed(0)) < 0.4).double()
    model = fitted(
        "mpc",
        x,
        num_units=2,
        input="bernoulli",
        region_graph="quad_graph",
        image_shape=(3, 3),
        layer="tucker",
    )
    allx = _all_states(9, 2)
    assert abs(float(torch.logsumexp(model.log_prob(allx), 0))) < 1e-10


def test_tucker_normalisation_by_numerical_integration_2d_gaussian(kind):
    x = torch.randn(50, 2, dtype=torch.float64)
    model = fitted(kind, x, num_units=3, num_replicas=2, layer="tucker")
    inp = model.module_.inputs
    lo = min(inp.support(0)[0], inp.support(1)[0])
    hi = max(inp.support(0)[1], inp.support(1)[1])
    # trapezoid on a Gaussian mixture is spectrally accurate once h is below the narrowest
    # width (products of two units are narrower by √2)
    sigma_min = float(inp.log_sigma.detach().exp().min()) / 2**0.5
    n = int((hi - lo) / (sigma_min / 2)) + 1
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")
    dens = model.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)).exp()
    h = float(grid[1] - grid[0])
    mass = integrate.trapezoid(integrate.trapezoid(dens.reshape(n, n).numpy(), dx=h, axis=1), dx=h)
    assert abs(mass - 1.0) < 1e-6


def test_tucker_marginals_and_conditionals_against_enumeration(kind):
    d, s = 4, 3
    x = torch.randint(0, s, (30, d)).double()
    model = fitted(
        kind, x, num_units=3, input="categorical", num_replicas=2, seed=1, layer="tucker"
    )
    joint = model.log_prob(_all_states(d, s)).reshape((s,) * d)  # axes = variables
    mask = torch.tensor([False, True, False, True])
    ev = _all_states(d, s)[[4, 31, 70]]
    ref_marg = torch.logsumexp(torch.logsumexp(joint, 2), 0)  # over x0, x2 -> (x1, x3)
    want = torch.stack([ref_marg[int(r[1]), int(r[3])] for r in ev])
    torch.testing.assert_close(model.marginal_log_prob(ev, mask), want, rtol=0, atol=1e-10)
    post = model.posterior(ev, mask=mask)
    states = torch.arange(s, dtype=torch.float64)
    values = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    lp = post.log_prob(values.unsqueeze(1).expand(2, 3, 2))
    for b, r in enumerate(ev):
        table = joint[:, int(r[1]), :, int(r[3])]  # (x0, x2)
        cond = (table - torch.logsumexp(table.reshape(-1), 0)).exp()
        torch.testing.assert_close(lp[:, b].exp(), torch.stack([cond[2, 0], cond[1, 1]]))
        m0, m2 = cond.sum(1), cond.sum(0)
        mean = torch.stack([(m0 * states).sum(), (m2 * states).sum()])
        var = torch.stack([(m0 * states**2).sum(), (m2 * states**2).sum()]) - mean**2
        torch.testing.assert_close(post.mean[b], mean)
        torch.testing.assert_close(post.variance[b], var)
        cdf = post.cdf(torch.full((3, 2), 1.0, dtype=torch.float64))[b]
        torch.testing.assert_close(cdf, torch.stack([m0[:2].sum(), m2[:2].sum()]))


def test_tucker_sampling_matches_exact_discrete_probabilities(kind):
    d, s = 3, 3
    x = torch.randint(0, s, (30, d)).double()
    model = fitted(kind, x, num_units=2, input="categorical", seed=3, layer="tucker")
    n = 6000
    draws = model.sample(n, generator=torch.Generator().manual_seed(0))
    idx = (draws[:, 0] * 9 + draws[:, 1] * 3 + draws[:, 2]).long()
    counts = torch.bincount(idx, minlength=27).numpy()
    # reference: the enumerated joint (checked to normalise above), not the sampler's CDFs
    probs = model.log_prob(_all_states(d, s)).exp().numpy()
    keep = probs * n > 5
    expected = probs[keep] / probs[keep].sum() * counts[keep].sum()
    assert chisquare(counts[keep], expected).pvalue > 1e-3


def test_tucker_gradcheck_on_a_small_circuit(kind):
    x = torch.randint(0, 3, (10, 3)).double()
    model = fitted(kind, x, num_units=2, input="categorical", seed=5, layer="tucker")
    mod = model.module_
    names = [n for n, _ in mod.named_parameters()]
    saved = [p for _, p in mod.named_parameters()]
    inputs = tuple(p.detach().clone().requires_grad_(True) for p in saved)

    def fn(*ps):
        try:
            for name, v in zip(names, ps, strict=True):
                _set_param(mod, name, v)
            return model._log_prob(x[:4])
        finally:
            for name, v in zip(names, saved, strict=True):
                _set_param(mod, name, v)

    assert torch.autograd.gradcheck(fn, inputs)


def _set_param(mod, name, value):
    *path, last = name.split(".")
    for p in path:
        mod = getattr(mod, p) if not p.isdigit() else mod[int(p)]
    mod._parameters[last] = value


# ---------------------------------------------------------------- API
def test_tucker_weight_shapes_and_bad_layer_name():
    model = SquaredCircuit(3, num_replicas=2, layer="tucker")
    model._build(4, None)  # built and initialised, not trained
    shapes = [tuple(w.shape) for w in model.module_.weight]
    assert shapes[-1] == (2, 1, 3, 3) and all(s[1:] in ((3, 3, 3), (1, 3, 3)) for s in shapes)
    # the paper's NPC² initialisation, element by element: U(0, 1)
    assert all(bool(((w > 0) & (w < 1)).all()) for w in model.module_.weight)
    with pytest.raises(ValueError, match="layer must be one of"):
        MonotonicCircuit(3, layer="tensor-train")
    assert MonotonicCircuit(3).get_config()["layer"] == "cp"


def test_tucker_save_load_round_trip(tmp_path):
    x = torch.randint(0, 3, (40, 4)).double()
    model = fitted("npc2", x, num_units=3, input="categorical", layer="tucker")
    model.save(tmp_path / "m")
    loaded = Model.load(tmp_path / "m")
    assert loaded.get_config()["layer"] == "tucker"
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


# ---------------------------------------------------------------- observed-subtree fast path
@pytest.mark.parametrize("layer", ["cp", "tucker"])
@pytest.mark.parametrize("kind", ["mpc2", "npc2"])
def test_observed_subtrees_fast_path_against_enumeration(kind, layer):
    """A linear tree over (x0, x1, x2, x3) in this order: observing x0..x2 leaves the
    subtrees over {x0, x1} and {x0, x1, x2} fully observed (the vector path)."""
    from bayesfn.circuits import linear_tree

    d, s = 4, 3
    x = torch.randint(0, s, (30, d)).double()
    graph = linear_tree(d, order=[0, 1, 2, 3])
    model = fitted(
        kind, x, num_units=3, input="categorical", region_graph=graph, seed=6, layer=layer
    )
    allx = _all_states(d, s)
    joint = model.log_prob(allx).reshape((s,) * d)  # the all-observed vector path
    ev = allx[[3, 50, 79]]
    for mask, axes in (([True, True, True, False], (3,)), ([True, True, False, False], (2, 3))):
        mask = torch.tensor(mask)
        ref = torch.logsumexp(joint, dim=axes)
        want = torch.stack([ref[tuple(int(v) for v in r[mask])] for r in ev])
        got = model.marginal_log_prob(ev, mask)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    post = model.posterior(ev, mask=torch.tensor([True, True, True, False]))
    for b, r in enumerate(ev):
        cond = joint[int(r[0]), int(r[1]), int(r[2])]
        cond = (cond - torch.logsumexp(cond, 0)).exp()
        mean = (cond * torch.arange(s, dtype=torch.float64)).sum()
        torch.testing.assert_close(post.mean[b, 0], mean)


@pytest.mark.parametrize("layer", ["cp", "tucker"])
@pytest.mark.parametrize("kind", ["mpc2", "npc2"])
def test_fast_path_equals_the_all_matrix_path_with_gradients(kind, layer):
    """Random per-row codes (every leaf kind: constant, observed, per-row) on a random
    tree with replicas: the fast path and the plain matrix path give the same values and
    the same parameter gradients."""
    d = 6
    x = torch.randn(40, d, dtype=torch.float64)
    model = fitted(kind, x, num_units=3, num_replicas=2, seed=8, layer=layer)
    g = torch.Generator().manual_seed(0)
    rows = x[:7]
    codes = torch.randint(0, 5, (7, d), generator=g)
    codes[:, 0] = M.OBSERVE  # observed in every row
    codes[:, 1] = M.OBSERVE
    codes[:, 2] = M.MOMENT1  # the same row-free integral in every row
    results = []
    for mixed in (True, False):
        model._mixed_matrix_path = mixed
        try:
            model.module_.zero_grad()
            log, sign = model._log_f(rows, codes)
            (sign * log.exp()).sum().backward()
            grads = [p.grad.clone() for p in model.module_.parameters()]
            results.append((log.detach(), sign, grads))
        finally:
            del model._mixed_matrix_path  # back to the class default
    (l1, s1, g1), (l2, s2, g2) = results
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    torch.testing.assert_close(l1, l2, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


_TRITON_CASE = """
import torch
from bayesfn.circuits import MonotonicCircuit, SquaredCircuit
from bayesfn.kernels import use_backend

torch.manual_seed(0)
x = torch.randn(20, 4, dtype=torch.float64)
mask = torch.tensor([True, False, True, False])
kinds = ((MonotonicCircuit, {}), (MonotonicCircuit, {"squared": True}), (SquaredCircuit, {}))
for cls, kw in kinds:
    m = cls(3, num_replicas=2, layer="tucker", **kw).fit(x, max_steps=1, progress_bar=False)
    with torch.no_grad():
        for w in m.module_.weight:
            w.copy_(torch.randn(w.shape, dtype=w.dtype))
    out = {}
    for backend in ("torch", "triton"):
        m.module_.zero_grad(set_to_none=True)
        with use_backend(backend):
            lp = m._log_prob(x[:5])
            lp.sum().backward()
            mg = m.marginal_log_prob(x[:5], mask)
        out[backend] = [lp.detach(), mg] + [p.grad.clone() for p in m.module_.parameters()]
    for a, b in zip(out["torch"], out["triton"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
print("tucker-triton-ok")
"""


@pytest.mark.slow
def test_tucker_through_the_triton_kernels_under_the_interpreter():
    """The Tucker vector layer is cp_layer over K² pairs: check that the Triton CP kernel
    (CPU interpreter, own process) gives the torch values and gradients for it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [sys.executable, "-c", _TRITON_CASE],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and "tucker-triton-ok" in done.stdout, done.stderr[-3000:]
