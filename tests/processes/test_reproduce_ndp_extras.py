"""``bayesfn reproduce ndp_extras``: the exact step-process posterior against brute force,
the step process's moments against its sampler, the Wasserstein and regret helpers
against closed forms, and the smoke run of row groups (d) and (e)."""

import math

import pytest
import torch

from bayesfn import reproduce
from bayesfn.data import sample_functions
from bayesfn.reproduce import ndp_extras as ex


def _rejection_p_upper(xc, yc, xt, noise, num, seed):
    """P(f(x_t) = 1 | y_c) by rejection sampling from the step prior of
    ``sample_functions`` (direction ±1, threshold U(-2, 2)), accepting a draw with
    probability ``exp(-|y_c - f(x_c)|² / (2 noise²))``, the likelihood over its maximum."""
    g = torch.Generator().manual_seed(seed)
    w = torch.where(torch.rand(num, generator=g) < 0.5, 1.0, -1.0).double()
    s = -2 + 4 * torch.rand(num, generator=g, dtype=torch.float64)
    fc = (w[:, None] * xc[None] >= s[:, None]).double()
    ft = (w[:, None] * xt[None] >= s[:, None]).double()
    accept = torch.rand(num, generator=g, dtype=torch.float64) < torch.exp(
        -((yc[None] - fc) ** 2).sum(1) / (2 * noise**2)
    )
    return ft[accept].mean(0), int(accept.sum())


@pytest.mark.parametrize(
    ("xc", "yc", "noise"),
    [
        ([-1.5, -1.0, 1.0, 1.5], [0.05, -0.1, 0.9, 1.2], 0.3),  # a rising step, likely
        ([-0.5, 0.7], [0.6, 0.3], 0.4),  # ambiguous: both directions carry weight
        ([0.2], [1.0], 0.2),
    ],
)
def test_step_posterior_matches_rejection_sampling(xc, yc, noise):
    xc, yc = torch.tensor(xc, dtype=torch.float64), torch.tensor(yc, dtype=torch.float64)
    xt = torch.tensor([-1.8, -0.7, 0.0, 0.4, 1.3], dtype=torch.float64)
    log_w, values = ex.step_posterior(xc, yc, xt, noise_std=noise)
    assert torch.allclose(log_w.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    exact = (log_w.exp()[:, None] * values).sum(0)
    mc, accepted = _rejection_p_upper(xc, yc, xt, noise, 400_000, seed=1)
    assert accepted > 20_000
    se = (exact * (1 - exact) / accepted).sqrt()
    assert ((mc - exact).abs() <= 4 * se + 1e-3).all(), (mc, exact)


def test_step_log_prob_matches_quadrature_over_the_threshold():
    # log p(y_t | y_c) = log ∫∫ p(y_c, y_t | w, s) p(w, s) / p(y_c): brute-force quadrature
    # over s on a fine midpoint grid, both directions
    xc = torch.tensor([-1.0, 0.5], dtype=torch.float64)
    yc = torch.tensor([0.1, 0.8], dtype=torch.float64)
    xt = torch.tensor([-0.2, 0.9, 1.7], dtype=torch.float64)
    yt = torch.tensor([0.4, 0.9, 1.1], dtype=torch.float64)
    noise = 0.3
    log_w, values = ex.step_posterior(xc, yc, xt, noise_std=noise)
    ours = ex.step_log_prob(log_w, values, yt, noise)
    m = 400_000
    s = -2 + 4 * (torch.arange(m, dtype=torch.float64) + 0.5) / m
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), noise)
    joint, context = [], []
    for w in (1.0, -1.0):
        fc = (w * xc[None] >= s[:, None]).double()
        ft = (w * xt[None] >= s[:, None]).double()
        lc = normal.log_prob(yc[None] - fc).sum(1)
        lt = normal.log_prob(yt[None] - ft).sum(1)
        joint.append(torch.logsumexp(lc + lt, 0))
        context.append(torch.logsumexp(lc, 0))
    reference = torch.logsumexp(torch.stack(joint), 0) - torch.logsumexp(torch.stack(context), 0)
    assert abs(float(ours - reference)) < 1e-4
    # the evidence log p(y_c): each (w, s) node carries prior mass 1 / (2 m)
    evidence = ex.step_posterior(xc, yc, xt, noise_std=noise, return_log_evidence=True)[2]
    reference = torch.logsumexp(torch.stack(context), 0) - math.log(2 * m)
    assert abs(float(evidence - reference)) < 1e-4


def test_step_moment_kernel_is_the_sampled_covariance():
    # the definition of the "step" family (direction ±1, threshold U(-2, 2)) implies mean
    # 1/2 and covariance 1/4 - |x - x'| / 8; check against 40,000 draws
    x = torch.tensor([[-1.9], [-1.0], [-0.2], [0.3], [1.6]], dtype=torch.float64)
    f = sample_functions("step", 40_000, 5, x=x, seed=5, dtype=torch.float64).f[..., 0]
    cov = torch.cov(f.T)
    kernel = ex.step_moment_kernel(x, x)
    assert torch.allclose(f.mean(0), torch.full((5,), 0.5, dtype=torch.float64), atol=0.015)
    assert torch.allclose(cov, kernel, atol=0.012)
    assert float(kernel[0, 4]) == pytest.approx(0.25 - 3.5 / 8)


def test_w1_against_closed_forms():
    grid = ex._W1_GRID
    noise = 0.05
    # a Gaussian shifted by d from a mixture component that holds all the mass: W1 = |d|
    cdf = torch.distributions.Normal(0.3, noise).cdf(grid)[None].double()
    for p, expected in ((1.0, 0.7), (0.0, 0.3)):
        w1 = ex.w1_to_two_point_mixture(cdf, torch.tensor([p], dtype=torch.float64), noise, grid)
        assert float(w1) == pytest.approx(expected, abs=1e-4)
    # the empirical CDF of many mixture draws approaches distance 0; a point mass at 1/2
    # is at distance E|Y - 1/2| = 1/2 from the p = 1/2 mixture (|Y - 1/2| ≈ 1/2 a.s.)
    g = torch.Generator().manual_seed(0)
    draws = (torch.rand(20_000, 1, generator=g) < 0.3).double() + noise * torch.randn(
        20_000, 1, generator=g, dtype=torch.float64
    )
    half = torch.tensor([0.5], dtype=torch.float64)
    p3 = torch.tensor([0.3], dtype=torch.float64)
    assert float(ex.w1_to_two_point_mixture(ex.empirical_cdf(draws, grid), p3, noise, grid)) < 0.01
    point = ex.empirical_cdf(torch.full((10, 1), 0.5, dtype=torch.float64), grid)
    assert float(ex.w1_to_two_point_mixture(point, half, noise, grid)) == pytest.approx(
        0.5, abs=1e-3
    )


def test_fit_se_gp_recovers_the_generating_hyperparameters():
    batch = sample_functions(
        "se", 32, 30, lengthscale=0.5, variance=1.5, noise_std=0.1, seed=3, dtype=torch.float64
    )
    found = ex.fit_se_gp(batch.x, batch.y + 0.7)
    assert found["lengthscale"] == pytest.approx(0.5, rel=0.1)
    assert found["variance"] == pytest.approx(1.5, rel=0.3)
    assert found["noise"] == pytest.approx(0.01, rel=0.15)
    assert found["mean"] == pytest.approx(0.7, abs=0.4)


def test_thompson_sampling_with_an_oracle_finds_the_minimum_at_once():
    g = torch.Generator().manual_seed(0)
    grid = torch.linspace(-2, 2, 20, dtype=torch.float64)
    f = torch.randn(6, 20, generator=g, dtype=torch.float64)
    first = torch.zeros(6, dtype=torch.long)

    def oracle(x_obs, y_obs, generator):
        return f

    q, regret = ex.thompson_sampling(f, grid, oracle, 3, first, 0.0, g)
    assert q.shape == (6, 3) and (q[:, 0] == 0).all()
    assert torch.equal(q[:, 1], f.argmin(1))
    assert (regret[:, 1:] == 0).all()
    assert torch.allclose(regret[:, 0], f[:, 0] - f.min(1).values)

    def noise(x_obs, y_obs, generator):
        return torch.rand(6, 20, generator=generator, dtype=torch.float64)

    _, regret = ex.thompson_sampling(f, grid, noise, 8, first, 0.05, g)
    assert (regret.diff(dim=1) <= 0).all() and (regret >= 0).all()


def test_registered():
    assert "ndp_extras" in reproduce.available()
    assert reproduce.load("ndp_extras") is ex


def test_smoke_run(tmp_path):
    results = ex.run(scale="smoke", seeds=[0], device="cpu", out=tmp_path)
    rows = results["rows"]
    assert results["scale"] == "smoke" and results["groups"] == ["nongauss", "thompson"]
    metrics = {(r["setting"], r["metric"]): r["ours"] for r in rows}
    fig = "1d step functions, figure task, x* = 0.0"
    assert metrics[(fig, "P(y > 1/2), exact")] == pytest.approx(0.5, abs=0.02)
    assert metrics[("1d step functions", "LL per target, exact step posterior")] > max(
        metrics[("1d step functions", "LL per target, GP with the step process's moments")],
        metrics[("1d step functions", "LL per target, SE GP, type-II ML on step draws")],
    )
    # the Gaussians are unimodal: less mass near the modes than the exact predictive
    near = [
        v
        for (s, m), v in metrics.items()
        if s == "1d step functions, all targets" and m.startswith("mass within") and "GP" in m
    ]
    assert len(near) == 2 and max(near) < 0.95
    for dim in (1, 2):
        ts = [r for r in rows if r["setting"].startswith(f"{dim}d Thompson")]
        paired = {r["metric"]: r["ours"] for r in ts if r["metric"].endswith("(paired)")}
        single = {r["metric"]: r["ours"] for r in ts if not r["metric"].endswith("(paired)")}
        assert {m.rsplit(", ", 1)[-1] for m in single} == set(ex.METHODS)
        assert len(paired) == 2
        for name in ex.METHODS[1:]:
            (diff,) = [v for m, v in paired.items() if f"minus {name}" in m]
            (ndp,) = [v for m, v in single.items() if m.startswith("mean") and m.endswith("NDP")]
            (base,) = [v for m, v in single.items() if m.startswith("mean") and m.endswith(name)]
            assert diff == pytest.approx(ndp - base)
        regret = results["details"]["thompson"][f"{dim}d seed 0"]["regret"]
        # one shared first query, then regret never increases
        first = [r[0] for r in regret["NDP"]]
        for name in ex.METHODS:
            assert [r[0] for r in regret[name]] == first
            assert torch.tensor(regret[name]).diff(dim=1).max() <= 0
        assert (tmp_path / f"ndp_thompson_regret_{dim}d_seed0.png").exists()
        assert (tmp_path / f"model_se-{dim}_seed0" / "weights.safetensors").exists()
    assert (tmp_path / "ndp_nongauss_seed0.png").exists()
    assert (tmp_path / "model_step_seed0" / "weights.safetensors").exists()
    # the diagnosis of (d) on the smoke model and tasks
    import json

    from bayesfn.data import TaskSet
    from bayesfn.processes import NeuralDiffusionProcess

    found = ex.diagnose_nongauss(
        NeuralDiffusionProcess.load(tmp_path / "model_step_seed0"),
        TaskSet.load(tmp_path / "tasks_step"),
        ex.DIAGNOSIS["smoke"],
    )
    json.dumps(found)
    names = {r["metric"] for r in found["rows"]}
    for who in ("oracle", "NDP"):
        assert any(m.startswith("|P(y > 1/2) - exact|, SMC") and who in m for m in names)
        assert any(m.startswith("|P(y > 1/2) - exact|, RePaint U = 1") and who in m for m in names)
    assert found["details"]["figure_exact_p_upper"]["-2.0"] < 1e-6
    sizes = found["details"]["density_by_set_size"]
    assert set(sizes) == {str(n) for n in ex.DIAGNOSIS["smoke"]["set_sizes"]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "huge"}, "scale"),
        ({"seeds": []}, "seeds"),
        ({"groups": ("regression",)}, "groups"),
        ({"overrides": {"model": {}}}, "overrides"),
        ({"overrides": {"ts_dims": [3]}}, "ts_dims"),
        (
            {
                "overrides": {
                    "ts_dims": [1],
                    "thompson": {"1": {"ndp_model": "nowhere", "grid_side": 3, "queries": 2}},
                }
            },
            "missing",
        ),
    ],
)
def test_presets_are_validated_before_any_work(tmp_path, kwargs, match):
    args = {"scale": "smoke", "seeds": [0], "device": "cpu", "out": tmp_path / "o", **kwargs}
    with pytest.raises(ValueError, match=match):
        ex.run(**args)
    assert not (tmp_path / "o").exists()


def test_se_kernel_matches_the_library_covariance_in_2d():
    from bayesfn.covariance import batched_covariance

    x = torch.randn(1, 7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    reference = batched_covariance("rbf", x, variance=1.3 * one, lengthscale=0.4 * one)[0]
    kernel = ex._se_kernel({"variance": torch.tensor(1.3), "lengthscale": torch.tensor(0.4)})
    assert torch.allclose(kernel(x[0], x[0]).double(), reference, atol=1e-10)
