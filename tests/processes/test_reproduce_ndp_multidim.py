"""``bayesfn reproduce ndp_multidim``: the 2-/3-D regression rows (b) and the implicit
hyperparameter marginalisation rows (c) at smoke size, and their GP references against
independent ones (the 1-D reproduction's GP, the notes' GP values for the official
protocol, and quadrature over the lengthscale for the NUTS-marginalised GP)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesfn import reproduce
from bayesfn.data import TaskSet
from bayesfn.reproduce import ndp, ndp_multidim


def test_registered():
    assert reproduce.load("ndp_multidim") is ndp_multidim


def test_smoke_multidim(tmp_path):
    results = ndp_multidim.run(
        scale="smoke", seeds=[0], device="cpu", out=tmp_path, settings=["se-2"]
    )
    rows = {r["metric"]: r for r in results["rows"]}
    assert {r["setting"] for r in results["rows"]} == {"se-2"}
    assert len(rows) == 7
    mm = rows["LL per target, NDP moment-matched (paper metric)"]
    assert mm["reference"] == -0.69 and mm["reference_source"]
    assert (
        rows["LL per target, GP full (true kernel)"]["ours"]
        > rows["LL per target, GP diagonal (true kernel)"]["ours"]
    )
    assert all(math.isfinite(r["ours"]) for r in rows.values())
    tasks = TaskSet.load(tmp_path / "tasks_se-2")
    assert tasks.x_target.shape == (4, 10, 2) and tasks.context_mask.shape[1] == 19
    assert (tasks.num_context >= 1).all() and (tasks.num_context <= 19).all()
    assert results["data"]["se-2"]["lengthscale"] == pytest.approx(0.25 * math.sqrt(2))
    assert (tmp_path / "model_se-2_seed0" / "weights.safetensors").exists()
    # a second run loads the saved model: identical numbers
    again = ndp_multidim.run(
        scale="smoke", seeds=[0], device="cpu", out=tmp_path, settings=["se-2"]
    )
    assert [r["ours"] for r in again["rows"]] == [r["ours"] for r in results["rows"]]


def test_smoke_hyper(tmp_path):
    results = ndp_multidim.run(
        scale="smoke", seeds=[0], device="cpu", out=tmp_path, settings=["se-hyper"]
    )
    rows = {r["metric"]: r["ours"] for r in results["rows"]}
    assert len(rows) == 9
    tasks = TaskSet.load(tmp_path / "tasks_se-hyper")
    true = torch.tensor(tasks.info["lengthscale"])
    low, high = ndp_multidim.HYPER_LENGTHSCALE
    assert ((true >= low) & (true <= high)).all() and true.unique().numel() == 4
    detail = results["details"]["se-hyper"]
    for key in ("ml2_lengthscale", "nuts_posterior_mean_lengthscale"):
        v = torch.tensor(detail[key])
        assert ((v >= low) & (v <= high)).all()
    assert all(math.isfinite(v) for v in rows.values())


def test_gp_predictive_matches_the_1d_reproduction():
    # an independent implementation (GPyTorch kernels, one task at a time, no padding)
    tasks = ndp.make_family_tasks("matern52", 12, 20, generalisation=False)
    ref = ndp.gp_log_likelihoods(tasks, "matern52")
    ls = torch.full((12,), 0.25, dtype=torch.float64)
    full, diag = ndp_multidim.gp_predictive("matern52", tasks, ls)
    torch.testing.assert_close(full / 20, ref["full"], rtol=0, atol=1e-8)
    torch.testing.assert_close(diag / 20, ref["diag"], rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("setting", "full", "diag"),
    [("se-2", -0.84, -1.24), ("matern52-2", -1.02, -1.29), ("se-3", -1.27, -1.36)],
)
def test_gp_rows_match_the_notes_protocol_values(setting, full, diag):
    # the true-GP values the method notes computed for the official protocol (2,000
    # tasks, independent noise; processes_methods.md section 2.6)
    tasks = ndp_multidim.make_setting_tasks(setting, 300, 50)
    family, dim = setting.split("-")
    ls = torch.full((300,), 0.25 * math.sqrt(int(dim)), dtype=torch.float64)
    kernel = {"se": "rbf", "matern52": "matern52"}[family]
    got_full, got_diag = (v / 50 for v in ndp_multidim.gp_predictive(kernel, tasks, ls))
    assert abs(float(got_full.mean()) - full) < 0.06
    assert abs(float(got_diag.mean()) - diag) < 0.06


def _scipy_predictive(xc, yc, xt, yt, lengthscale):
    """log p(y_t | y_c) and log p(y_c) of a 1-D SE GP (variance 1, noise 0.05^2), SciPy."""
    x = np.concatenate([xc, xt])
    k = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / lengthscale**2) + 0.05**2 * np.eye(len(x))
    c = len(xc)
    kcc, kct, ktt = k[:c, :c], k[:c, c:], k[c:, c:]
    mean = kct.T @ np.linalg.solve(kcc, yc)
    cov = ktt - kct.T @ np.linalg.solve(kcc, kct)
    return (
        stats.multivariate_normal(mean, cov).logpdf(yt),
        stats.multivariate_normal(np.zeros(c), kcc).logpdf(yc),
    )


def _quadrature(tasks, prior, grid):
    """Per task, with a uniform prior on log l evaluated on ``grid`` evenly spaced
    values: the log of the posterior-averaged predictive density of the targets, the
    posterior mean and sd of log l, and the grid's maximiser of the evidence."""
    logs = np.linspace(np.log(prior[0]), np.log(prior[1]), grid)
    out = []
    for i in range(len(tasks)):
        (xc, yc), (xt, yt) = (tuple(v.numpy()[:, 0] for v in part) for part in tasks.task(i))
        pred, ev = np.array([_scipy_predictive(xc, yc, xt, yt, np.exp(v)) for v in logs]).T
        w = np.exp(ev - ev.max())
        w /= w.sum()
        mean = np.sum(w * logs)
        out.append(
            {
                "log_marginal": np.log(np.sum(w * np.exp(pred - pred.max()))) + pred.max(),
                "mean": mean,
                "sd": np.sqrt(np.sum(w * (logs - mean) ** 2)),
                "ml2": np.exp(logs[np.argmax(ev)]),
            }
        )
    return out


def _tiny_tasks(num_tasks=3):
    from bayesfn.data import make_tasks

    return make_tasks(
        "se",
        num_tasks,
        num_context=(2, 6),
        num_target=4,
        seed=11,
        lengthscale=0.3,
        noise_std=0.05,
        variance=1.0,
    )


def test_marginal_predictive_averages_densities_and_ml2_maximises_the_evidence():
    tasks = _tiny_tasks()
    draws = torch.tensor([[0.2, 0.5, 0.9], [0.15, 0.3, 0.6]], dtype=torch.float64)
    got = ndp_multidim.marginal_predictive("rbf", tasks, draws)
    for i in range(3):
        (xc, yc), (xt, yt) = (tuple(v.numpy()[:, 0] for v in part) for part in tasks.task(i))
        pred = [_scipy_predictive(xc, yc, xt, yt, float(ls))[0] for ls in draws[:, i]]
        assert float(got[i]) == pytest.approx(np.log(np.mean(np.exp(pred))), abs=1e-8)
    prior = (0.1, 1.0)
    ml2 = ndp_multidim.ml2_lengthscales("rbf", tasks, prior, grid=101)
    want = [q["ml2"] for q in _quadrature(tasks, prior, 101)]
    np.testing.assert_allclose(ml2.numpy(), want, rtol=1e-9)


@pytest.mark.slow
def test_nuts_marginalised_gp_matches_quadrature():
    # 1,200 NUTS iterations: about 2 min on the loaded shared machine
    prior = (0.1, 1.0)
    tasks = _tiny_tasks()
    draws = ndp_multidim.nuts_lengthscales(tasks, prior, warmup=200, num_samples=1000, seed=2)
    assert draws.shape == (1000, 3)
    want = _quadrature(tasks, prior, 801)
    log_l = draws.log()
    sd = np.array([q["sd"] for q in want])  # 0.4-0.6 here; the prior's is 0.66
    # Monte Carlo error of 1,000 correlated draws: means within a quarter of a posterior sd
    # (the prior mean is 1.7 posterior sds from the second task's posterior mean)
    assert (np.abs(log_l.mean(0).numpy() - [q["mean"] for q in want]) < 0.25 * sd).all()
    assert (np.abs(log_l.std(0).numpy() / sd - 1) < 0.25).all()
    # the log of a Monte Carlo mean of densities that vary by e^3 over the posterior:
    # about 0.05-0.1 nats of noise over 4 targets
    got = ndp_multidim.marginal_predictive("rbf", tasks, draws).numpy()
    np.testing.assert_allclose(got, [q["log_marginal"] for q in want], atol=0.15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "huge"}, "scale"),
        ({"seeds": []}, "seeds"),
        ({"settings": ["se-4"]}, "settings"),
        ({"steps": 0}, "steps"),
        ({"overrides": {"model": {}}}, "overrides"),
    ],
)
def test_presets_are_validated_before_any_work(tmp_path, kwargs, match):
    args = {"scale": "smoke", "seeds": [0], "device": "cpu", "out": tmp_path / "o", **kwargs}
    with pytest.raises(ValueError, match=match):
        ndp_multidim.run(**args)
    assert not (tmp_path / "o").exists()
