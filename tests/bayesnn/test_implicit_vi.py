"""LIVI: samplers, the linearised entropy and ImplicitVI, against dense references."""

import math

import pytest
import torch

from bayesfn.bayesnn import BNN, MLP, GaussianLikelihood, ImplicitVI
from bayesfn.bayesnn.inference.linearised_entropy import (
    entropy_constant,
    exact_half_logdet,
    half_logdet_lower_bound,
    smallest_singular_value,
)
from bayesfn.bayesnn.inference.samplers import MatrixSampler, MLPSampler, blocks_for

F64 = torch.float64


def _dense_jacobians(fn, z):
    return torch.stack([torch.autograd.functional.jacobian(fn, z[k]) for k in range(len(z))])


def _samplers():
    torch.manual_seed(0)
    mlp = MLPSampler(5, 40, (16,), "tanh", init_spread=1.0).to(F64)
    mat = MatrixSampler((3, 4), [(6, 5), (1, 6), (2, 7)], (5, 6), 2, init_spread=1.0).to(F64)
    return [mlp, mat]


@pytest.mark.parametrize("index", [0, 1])
def test_exact_half_logdet_is_the_entropy_of_the_local_gaussian(index):
    """½ log det(JᵀJ + σ²I_{d0}) against the d × d form of the matrix determinant lemma:
    ½ log det(JJᵀ + σ²I_d) − (d − d0)/2 log σ², from a dense autograd Jacobian."""
    sampler = _samplers()[index]
    sigma = 0.05
    z = torch.randn(3, sampler.noise_dim, dtype=F64, generator=torch.Generator().manual_seed(1))
    out, half = exact_half_logdet(sampler, z, sigma)
    torch.testing.assert_close(out, sampler(z))
    jac = _dense_jacobians(sampler, z)
    d, d0 = jac.shape[1], jac.shape[2]
    big = jac @ jac.transpose(1, 2) + sigma**2 * torch.eye(d, dtype=F64)
    expected = 0.5 * torch.logdet(big) - 0.5 * (d - d0) * math.log(sigma**2)
    torch.testing.assert_close(half, expected, rtol=1e-10, atol=1e-10)
    # and the full entropy constant: H of N(g, JJᵀ + σ²I) = ½ log det(2πe Σ)
    entropy = entropy_constant(d, d0, sigma) + half
    torch.testing.assert_close(
        entropy, 0.5 * torch.logdet(2 * math.pi * math.e * big), rtol=1e-10, atol=1e-8
    )


def test_solver_finds_the_smallest_singular_value():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(4, 60, 8, generator=g, dtype=F64)
    a[1] = a[1] @ torch.diag(torch.tensor([1e-3, 1, 2, 3, 4, 5, 6, 7], dtype=F64))  # ill-posed
    a[2, :, 0] = a[2, :, 1]  # exactly rank deficient: s_min = 0

    def jvp(v):
        return (a @ v.unsqueeze(-1)).squeeze(-1)

    def vjp(u):
        return (a.transpose(1, 2) @ u.unsqueeze(-1)).squeeze(-1)

    v0 = torch.randn(4, 8, generator=g, dtype=F64)
    exact = torch.linalg.svdvals(a)[:, -1]
    s, v = smallest_singular_value(jvp, vjp, v0, num_iters=60)
    torch.testing.assert_close(s, exact, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(4, dtype=F64))
    torch.testing.assert_close(jvp(v).norm(dim=-1), s)
    # unconverged, the estimate is a Rayleigh quotient: never below s_min, and it falls
    s2, _ = smallest_singular_value(jvp, vjp, v0, num_iters=2)
    s4, _ = smallest_singular_value(jvp, vjp, v0, num_iters=4)
    assert (s2 >= exact - 1e-12).all() and (s4 <= s2 + 1e-12).all()


@pytest.mark.parametrize("index", [0, 1])
def test_bound_is_below_the_exact_value_with_the_gradient_of_s_min(index):
    sampler = _samplers()[index]
    sigma = 0.05
    z = torch.randn(3, sampler.noise_dim, dtype=F64, generator=torch.Generator().manual_seed(3))
    _, exact = exact_half_logdet(sampler, z, sigma)
    v0 = None
    if index == 1:
        # LOBPCG's rate depends on the gap (s₂² − s₁²) / s_max²: this matrix sampler has
        # cond(JᵀJ) ≈ 1e5 and needs hundreds of iterations from a random start; start it
        # at the dense right singular vector (the solver must keep it)
        v0 = torch.linalg.svd(_dense_jacobians(sampler, z)).Vh[:, -1]
    out, bound, _ = half_logdet_lower_bound(sampler, z, sigma, num_iters=80, v0=v0)
    torch.testing.assert_close(out, sampler(z))
    assert (bound <= exact + 1e-9).all()

    params = dict(sampler.named_parameters())

    def dense_bound(p):
        def fn(zk):
            return torch.func.functional_call(sampler, p, (zk,))

        jac = torch.stack([torch.func.jacrev(fn)(z[k]) for k in range(3)])
        s_min = torch.linalg.svdvals(jac)[:, -1]
        return 0.5 * z.shape[1] * torch.log(s_min**2 + sigma**2)

    reference = dense_bound(params)
    torch.testing.assert_close(bound, reference, rtol=1e-6, atol=1e-8)
    grads = torch.autograd.grad(bound.sum(), list(params.values()), allow_unused=True)
    refs = torch.autograd.grad(reference.sum(), list(params.values()), allow_unused=True)
    for name, g1, g2 in zip(params, grads, refs, strict=True):
        if g2 is None:
            assert g1 is None or torch.all(g1 == 0), name
        else:
            torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-7, msg=name)


def test_matrix_sampler_entropies_through_its_linear_heads_match_the_generic_ones():
    """g = A(features(z)) with linear heads A: products with J = A J_t computed from the
    features and AᵀA (no d-dimensional output) equal the generic ones, gradients too."""
    sampler = _samplers()[1]
    sigma = 0.05
    z = torch.randn(3, 12, dtype=F64, generator=torch.Generator().manual_seed(5))
    v0 = torch.randn(3, 12, dtype=F64, generator=torch.Generator().manual_seed(6))
    params = list(sampler.parameters())
    g, exact = exact_half_logdet(sampler, z, sigma)
    t, exact_s = exact_half_logdet(sampler.features, z, sigma, sampler.metric)
    torch.testing.assert_close(sampler.weights_from(t), g)
    torch.testing.assert_close(exact_s, exact, rtol=1e-10, atol=1e-10)
    _, bound, _ = half_logdet_lower_bound(sampler, z, sigma, num_iters=7, v0=v0)
    _, bound_s, _ = half_logdet_lower_bound(
        sampler.features, z, sigma, num_iters=7, v0=v0, metric=sampler.metric
    )
    torch.testing.assert_close(bound_s, bound, rtol=1e-10, atol=1e-10)
    for a, b in [(exact_s, exact), (bound_s, bound)]:
        ga = torch.autograd.grad(a.sum(), params, allow_unused=True)
        gb = torch.autograd.grad(b.sum(), params, allow_unused=True)
        for x, y in zip(ga, gb, strict=True):
            x = torch.zeros(()) if x is None else x
            y = torch.zeros(()) if y is None else y
            torch.testing.assert_close(x.to(F64), y.to(F64), rtol=1e-7, atol=1e-9)


def test_bound_falls_back_to_zero_singular_value_when_the_solver_fails():
    sampler = _samplers()[0]
    z = torch.randn(2, 5, dtype=F64)
    z[1, 0] = math.nan  # a row whose products are NaN
    _, bound, _ = half_logdet_lower_bound(sampler, z, 0.1, num_iters=3)
    assert torch.isfinite(bound[0])
    assert bound[1].item() == pytest.approx(2.5 * math.log(0.01))


def test_matrix_sampler_has_one_head_per_tensor_and_at_least_d_parameters():
    shapes = [(30, 10), (30,), (4, 3, 3, 3), (2, 30)]
    blocks = blocks_for(shapes)
    assert blocks == [(30, 10), (1, 30), (4, 27), (2, 30)]
    d = sum(math.prod(s) for s in shapes)
    sampler = MatrixSampler((5, 6), blocks, (7, 8), num_hidden=2)
    assert sampler.num_weights == d and sampler.noise_dim == 30
    heads = sum(r * 7 + 8 * c + r * c for r, c in blocks)
    trunk = (7 * 5 + 6 * 8 + 7 * 8) + (7 * 7 + 8 * 8 + 7 * 8)
    assert sampler.num_parameters() == heads + trunk >= d
    assert sampler(torch.randn(4, 30)).shape == (4, d)
    # every block depends on the shared trunk: weights of different layers co-vary
    jac = torch.autograd.functional.jacobian(sampler, torch.randn(30))
    starts = [0, 300, 330, 438]
    for s in starts:
        assert jac[s].abs().sum() > 0


def _linear_regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=F64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=F64) + 0.3
    y = y + 0.5 * torch.randn(y.shape, generator=g, dtype=F64)
    noise = 1.0
    phi = torch.cat([x / 3**0.5, torch.ones(30, 1, dtype=F64)], 1)
    cov = torch.linalg.inv(phi.T @ phi / noise + torch.eye(4, dtype=F64))
    return x, y, noise, cov @ phi.T @ y / noise, cov


def test_conjugate_linear_regression_recovers_the_exact_posterior():
    """f = x Wᵀ/sqrt(3) + b, N(0, 1) priors, known noise: the posterior is Gaussian in
    closed form. A linear generator can represent it and its linearised entropy is
    exact, so the ELBO's optimum is the posterior itself."""
    x, y, noise, mean, cov = _linear_regression()
    inference = ImplicitVI(
        generator="mlp",
        noise_dim=4,
        hidden=[],
        output_noise=1e-2,
        num_samples=32,
        max_steps=600,
        lr=3e-2,
    )
    model = BNN(
        MLP(hidden=()),
        likelihood=GaussianLikelihood(noise),
        inference=inference,
        standardize=False,
        dtype=F64,
    ).fit(x, y, seed=0, progress_bar=False)
    assert model.fit_result_.diagnostics["entropy"] == "exact"
    draws = model.weight_draws(20000, generator=torch.Generator().manual_seed(1))
    assert draws["layers.0.weight"].shape == (1, 20000, 1, 3)
    w = torch.cat([draws["layers.0.weight"][0, :, 0], draws["layers.0.bias"][0]], 1)
    # Monte Carlo error of the mean ≈ 0.37/sqrt(20000) ≈ 0.003; the rest is SGD noise
    torch.testing.assert_close(w.mean(0), mean.ravel(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(w.T), cov, atol=0.012, rtol=0.1)


def test_bound_mode_with_the_matrix_sampler_and_minibatches_trains():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 2, generator=g)
    y = torch.sin(x[:, :1]) + 0.1 * torch.randn(64, 1, generator=g)
    inference = ImplicitVI(
        generator="matrix",
        noise_shape=[3, 3],
        hidden=[4, 4],
        entropy="bound",
        num_samples=4,
        max_steps=30,
        batch_size=16,
        lr=1e-2,
    )
    model = BNN(
        MLP(hidden=(8,)),
        likelihood=GaussianLikelihood(0.1, learn_noise=True),
        inference=inference,
    ).fit(x, y, seed=0, progress_bar=False)
    diag = model.fit_result_.diagnostics
    assert diag["entropy"] == "bound" and diag["generator"] == "matrix"
    assert diag["noise_dim"] == 9 and diag["num_weights"] == 33
    assert diag["generator_parameters"] >= 33
    assert all(math.isfinite(v) for v in model.fit_result_.losses)
    post = model.posterior(x[:5], num_samples=7)
    assert post.sample().shape == (5, 1)
    draws = model.weight_draws(7)
    noise = draws["likelihood.log_noise"]
    assert noise.shape == (1, 7, 1) and torch.all(noise == noise[0, 0])


def test_fitted_model_saves_and_loads(tmp_path):
    x, y, noise, *_ = _linear_regression()
    model = BNN(
        MLP(hidden=(3,)),
        likelihood=GaussianLikelihood(noise),
        inference=ImplicitVI(max_steps=5, num_samples=2),
    ).fit(x, y, seed=0, progress_bar=False)
    model.save(tmp_path / "m")
    loaded = BNN.load(tmp_path / "m")
    a = model.posterior(x[:4], num_samples=5, generator=torch.Generator().manual_seed(0)).mean
    b = loaded.posterior(x[:4], num_samples=5, generator=torch.Generator().manual_seed(0)).mean
    torch.testing.assert_close(a, b)


def test_bad_settings_give_clear_errors():
    with pytest.raises(ValueError, match="generator must be one of"):
        ImplicitVI(generator="flow")
    with pytest.raises(ValueError, match="entropy must be one of"):
        ImplicitVI(entropy="approx")
    with pytest.raises(ValueError, match="output_noise must be a positive"):
        ImplicitVI(output_noise=0.0)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        ImplicitVI(num_samples=0)
    with pytest.raises(ValueError, match="noise_shape must be"):
        ImplicitVI(noise_shape=[4])
    with pytest.raises(ValueError, match="weighting must be one of"):
        ImplicitVI(weighting="cold")
    x, y, noise, *_ = _linear_regression()
    bnn = BNN(MLP(hidden=()), inference=ImplicitVI(noise_dim=10, entropy="bound"))
    with pytest.raises(ValueError, match="needs noise_dim <= the number of weights"):
        bnn.fit(x, y, progress_bar=False)
    bnn = BNN(MLP(hidden=()), inference=ImplicitVI(generator="mlp", noise_shape=[2, 2]))
    with pytest.raises(ValueError, match="noise_shape is for generator='matrix'"):
        bnn.fit(x, y, progress_bar=False)
    bnn = BNN(MLP(hidden=()), inference="livi")
    with pytest.raises(TypeError, match="unexpected option"):
        bnn.fit(x, y, progress_bar=False, temperature=0.5)
    with pytest.raises(ValueError, match="center must have shape"):
        MLPSampler(2, 5, center=torch.zeros(4))
