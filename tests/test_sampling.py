"""Tests of bayesfn.sampling against independent references.

References: closed-form Gaussian targets and the conjugate Bayesian linear-regression
posterior (moments and Kolmogorov–Smirnov tests of every marginal), the update rules of
Chen et al. (2014) and Springenberg et al. (2016) written out by hand on the noise the
chains' generators draw, chains run one at a time, a single-process run for two
``torchrun`` ranks on gloo, and an uninterrupted run for resume after a real SIGKILL.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import stats

from bayesfn.sampling import (
    AdaptiveSGHMCKernel,
    SGHMCKernel,
    chain_seed,
    sample,
)
from bayesfn.training import _BatchStream, _Dist

TESTS = Path(__file__).resolve().parent
D = torch.float64


def _load_helper(name: str):
    spec = importlib.util.spec_from_file_location(name, TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_helper("_sampling_worker")


@pytest.fixture(autouse=True)
def _single_process(monkeypatch):
    """A stray WORLD_SIZE from the environment would make sample() start gloo."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(extra)
    return env


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def _gaussian_log_prob(mean: torch.Tensor, cov: torch.Tensor):
    prec = torch.linalg.inv(cov)

    def log_prob(params, batch, extra):
        z = params["x"] - mean
        return -0.5 * ((z @ prec) * z).sum(-1)

    return log_prob


def _check_marginals(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, bias: float):
    """Draws ``(C, S, d)`` of ``C`` independent chains against N(mean, cov). Their
    autocorrelation is accounted for by ArviZ's effective sample size: means within 4
    Monte Carlo standard errors, variances within ``bias`` + 4 standard errors, and each
    marginal's Kolmogorov–Smirnov distance below the 0.1 % critical value
    ``1.95 / sqrt(ESS)``."""
    import arviz as az

    sd = cov.diagonal().sqrt()
    flat = draws.reshape(-1, draws.shape[-1])
    for i in range(draws.shape[-1]):
        chains = draws[..., i].numpy()
        ess = float(az.ess(chains))
        assert ess > 0.05 * chains.size, ess  # the thinning keeps draws informative
        z = (flat[:, i].mean() - mean[i]) / (sd[i] / math.sqrt(ess))
        assert abs(z) < 4, (i, z)
        ratio = flat[:, i].var() / cov[i, i]
        # a known discretisation bias below `bias`, plus 4 standard errors of a variance
        assert abs(ratio - 1) < bias + 4 * math.sqrt(2 / ess), (i, ratio, ess)
        ks = stats.kstest(chains.reshape(-1), stats.norm(mean[i].item(), sd[i].item()).cdf)
        assert ks.statistic < 1.95 / math.sqrt(ess), (i, ks, ess)


# ------------------------------------------------------------------ known targets

# Correlated 2-D Gaussian: sd 2 and 0.5, correlation 0.8 (condition number 33).
MEAN = torch.tensor([1.0, -2.0], dtype=D)
COV = torch.tensor([[4.0 * 0.5, 0.8 * 1.0], [0.8 * 1.0, 0.5]], dtype=D)


@pytest.mark.parametrize(
    "kernel, bias",
    [
        # η = 0.01, α = 0.1: the discretised chain's stationary variances exceed the
        # target's by 0.1 % and 0.5 % (discrete Lyapunov equation of the linear chain)
        (SGHMCKernel(lr=0.01, mdecay=0.1), 0.01),
        # lr² = 0.01 and α = 0.2: the −lr⁴ term of the noise variance (a correction for
        # minibatch noise, absent here) lowers the variances by 3.5 % and 4.3 % (the same
        # Lyapunov equation with M⁻¹ = diag(Σ⁻¹)^(-1/2))
        (AdaptiveSGHMCKernel(lr=0.1, mdecay=0.2), 0.05),
    ],
    ids=["sghmc", "adaptive"],
)
def test_samples_a_correlated_gaussian(kernel, bias):
    chains = 16
    init = {"x": torch.zeros(chains, 2, dtype=D)}
    res = sample(
        _gaussian_log_prob(MEAN, COV),
        init,
        kernel,
        num_burn_in=1000,
        num_draws=500,
        thin=20,
        seed=0,
        progress_bar=False,
    )
    assert res.draws["x"].shape == (chains, 500, 2)
    flat = res.draws["x"].reshape(-1, 2)
    _check_marginals(res.draws["x"], MEAN, COV, bias=bias)
    corr = torch.corrcoef(flat.T)[0, 1]
    assert abs(corr - 0.8) < 0.02
    assert res.potentials.shape == (chains, 1000 + 500 * 20)
    # the potential is −log p of the state the step started from
    x0 = init["x"]
    expected = -_gaussian_log_prob(MEAN, COV)({"x": x0}, (), {})
    torch.testing.assert_close(res.potentials[:, 0], expected)


def _blr_problem(n=60, d=3, noise_sd=1.0, prior_sd=1.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=D)
    y = x @ torch.tensor([1.0, -0.5, 0.3], dtype=D) + noise_sd * torch.randn(
        n, generator=g, dtype=D
    )
    post_prec = x.T @ x / noise_sd**2 + torch.eye(d, dtype=D) / prior_sd**2
    post_cov = torch.linalg.inv(post_prec)
    post_mean = post_cov @ x.T @ y / noise_sd**2

    def log_prob(params, batch, extra):
        xb, yb = batch  # (C, B, d), (C, B): each chain's own minibatch
        w = params["w"]
        resid = yb - torch.einsum("cbd,cd->cb", xb, w)
        scale = n / xb.shape[1]  # unbiased estimate of the full-data log likelihood
        return -0.5 * scale * (resid**2).sum(-1) / noise_sd**2 - 0.5 * (w**2).sum(-1) / prior_sd**2

    return log_prob, (x, y), post_mean, post_cov


@pytest.mark.parametrize(
    "kernel, burn_in",
    [
        # minibatch noise of variance V inflates the variance by about η V / (2 α): 1 %
        (SGHMCKernel(lr=5e-4, mdecay=0.1), 1000),
        (AdaptiveSGHMCKernel(lr=0.05, mdecay=0.3), 2000),
    ],
    ids=["sghmc", "adaptive"],
)
def test_conjugate_linear_regression_with_minibatches(kernel, burn_in):
    log_prob, data, post_mean, post_cov = _blr_problem()
    chains = 16
    res = sample(
        log_prob,
        {"w": torch.zeros(chains, 3, dtype=D)},
        kernel,
        data=data,
        batch_size=20,  # N/|B| = 3: a missing or wrong scaling triples the variances
        num_burn_in=burn_in,
        num_draws=400,
        thin=25,
        seed=1,
        progress_bar=False,
    )
    _check_marginals(res.draws["w"], post_mean, post_cov, bias=0.03)


# ------------------------------------------------------------------- the step rules


def _noise_of_chain(seed: int, chain: int, numel: int) -> torch.Tensor:
    """The standard normals chain ``chain`` draws at its first step."""
    g = torch.Generator().manual_seed(chain_seed(seed, chain, 0))
    return torch.randn(numel, generator=g, dtype=D)


def test_sghmc_step_is_chen_et_al_eq_15():
    """Two steps on U(w) = Σ a w² / 2 written out by hand: the noise variance is 2αη,
    the position moves with the new momentum."""
    lr, mdecay, a = 0.03, 0.2, 1.7
    w0 = torch.tensor([[0.5, -1.0], [2.0, 0.1]], dtype=D)
    res = sample(
        lambda p, b, e: -0.5 * a * (p["w"] ** 2).sum(-1),
        {"w": w0},
        SGHMCKernel(lr=lr, mdecay=mdecay),
        num_draws=2,
        seed=4,
        progress_bar=False,
    )
    for c in range(2):
        g = torch.Generator().manual_seed(chain_seed(4, c, 0))
        w, v = w0[c].clone(), torch.zeros(2, dtype=D)
        for s in range(2):
            xi = torch.randn(2, generator=g, dtype=D)
            v = v - lr * a * w - mdecay * v + math.sqrt(2 * mdecay * lr) * xi
            w = w + v
            torch.testing.assert_close(res.draws["w"][c, s], w, rtol=1e-13, atol=1e-13)


def test_adaptive_step_is_springenberg_et_al():
    """Three steps (two of burn-in, then frozen adaptation) written out by hand."""
    lr, mdecay, a, eps = 0.3, 0.1, 2.5, 1e-16
    w0 = torch.tensor([[0.8, -0.4, 3.0]], dtype=D)
    res = sample(
        lambda p, b, e: -0.5 * a * (p["w"] ** 2).sum(-1),
        {"w": w0},
        AdaptiveSGHMCKernel(lr=lr, mdecay=mdecay),
        num_burn_in=2,
        num_draws=1,
        seed=9,
        progress_bar=False,
    )
    g = torch.Generator().manual_seed(chain_seed(9, 0, 0))
    w, v = w0[0].clone(), torch.zeros(3, dtype=D)
    tau, gbar, vhat = torch.ones(3, dtype=D), torch.ones(3, dtype=D), torch.ones(3, dtype=D)
    for s in range(3):
        grad = a * w
        if s < 2:
            r = 1 / (tau + 1)
            tau = tau - tau * gbar**2 / (vhat + eps) + 1
            gbar = gbar + r * (grad - gbar)
            vhat = vhat + r * (grad**2 - vhat)
        minv = 1 / (vhat.sqrt() + eps)
        var = torch.clamp(2 * lr**2 * mdecay * minv - lr**4, min=1e-16)
        v = v - lr**2 * minv * grad - mdecay * v + var.sqrt() * torch.randn(3, generator=g, dtype=D)
        w = w + v
    torch.testing.assert_close(res.draws["w"][0, 0], w, rtol=1e-13, atol=1e-13)


def test_noise_floor_is_clamped_not_nan():
    """lr⁴ above 2 lr² α M⁻¹ makes the noise variance negative: it is clamped at 1e-16."""
    kernel = AdaptiveSGHMCKernel(lr=1.0, mdecay=0.01)
    params = {"w": torch.zeros(1, 2, dtype=D)}
    state = kernel.init_state(params)
    noise = {"w": torch.ones(1, 2, dtype=D)}
    new, _ = kernel.step(params, {"w": torch.zeros(1, 2, dtype=D)}, state, noise, burn_in=False)
    torch.testing.assert_close(new["w"], torch.full((1, 2), 1e-8, dtype=D))


@pytest.mark.parametrize("kernel_cls", [SGHMCKernel, AdaptiveSGHMCKernel])
def test_gradient_clipping_is_per_chain(kernel_cls):
    """Chain 0's gradient norm 50 is clipped to 10; chain 1's norm 5 is left alone."""
    params = {"a": torch.zeros(2, 3, dtype=D), "b": torch.zeros(2, dtype=D)}
    grads = {
        "a": torch.tensor([[30.0, 0.0, 0.0], [3.0, 0.0, 0.0]], dtype=D),
        "b": torch.tensor([40.0, 4.0], dtype=D),
    }
    noise = {k: torch.zeros_like(v) for k, v in params.items()}
    clipped = kernel_cls(lr=0.1, mdecay=0.5, grad_clip=10.0)
    free = kernel_cls(lr=0.1, mdecay=0.5)
    out_c, state_c = clipped.step(params, grads, clipped.init_state(params), noise, burn_in=False)
    scaled = {
        k: v * torch.tensor([10 / (50 + 1e-6), 1.0], dtype=D).reshape((-1,) + (1,) * (v.ndim - 1))
        for k, v in grads.items()
    }
    out_f, _ = free.step(params, scaled, free.init_state(params), noise, burn_in=False)
    for k in params:
        torch.testing.assert_close(out_c[k], out_f[k], rtol=1e-14, atol=0)
    assert state_c["num_clipped"].tolist() == [1, 0]


# --------------------------------------------------------- chains, sharding, batches


def test_vectorised_chains_equal_chains_run_one_at_a_time():
    together = worker.run()
    for c in range(worker.CHAINS):
        alone = worker.run(first_chain=c, chains=slice(c, c + 1))
        for k, v in together.draws.items():
            torch.testing.assert_close(alone.draws[k][0], v[c], rtol=1e-12, atol=1e-12)
        for k, v in together.extra_draws.items():
            torch.testing.assert_close(alone.extra_draws[k][0], v[c], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(alone.potentials[0], together.potentials[c])


def test_vmapped_network_chains_equal_sequential_runs():
    """The intended use: a network's stacked parameters through functional_call + vmap."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    net = net.double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 2, generator=g, dtype=D)
    y = torch.sin(x[:, :1])
    chains = 3
    init = {
        k: torch.randn((chains, *v.shape), generator=g, dtype=D) for k, v in net.named_parameters()
    }

    def one(params, xb, yb):
        out = torch.func.functional_call(net, params, (xb,))
        return -0.5 * ((out - yb) ** 2).sum() * (20 / xb.shape[0]) - 0.5 * sum(
            (p**2).sum() for p in params.values()
        )

    log_prob = torch.func.vmap(lambda p, xb, yb: one(p, xb, yb))

    def run(init, first):
        return sample(
            lambda p, b, e: log_prob(p, *b),
            init,
            SGHMCKernel(lr=0.002, mdecay=0.1, grad_clip=50.0),
            data=(x, y),
            batch_size=6,
            num_burn_in=10,
            num_draws=5,
            thin=3,
            seed=2,
            first_chain=first,
            progress_bar=False,
        )

    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    together = run(init, 0)
    for c in range(chains):
        alone = run({k: v[c : c + 1] for k, v in init.items()}, c)
        for k, v in together.draws.items():
            torch.testing.assert_close(alone.draws[k][0], v[c], rtol=1e-12, atol=1e-12)
    # the network itself was never changed
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_each_chain_draws_its_own_minibatches_like_optimize():
    """Chain c's rows are those of training's _BatchStream on chain c's data generator."""
    n, batch, chains, seed = 11, 4, 3, 6  # 2 batches an epoch, a ragged tail of 3
    x = torch.arange(n, dtype=D)[:, None]
    seen = []

    def log_prob(params, b, e):
        seen.append(b[0][..., 0].long().clone())
        return -0.5 * (params["w"] ** 2).sum(-1)

    sample(
        log_prob,
        {"w": torch.zeros(chains, 1, dtype=D)},
        SGHMCKernel(lr=0.01),
        data=(x,),
        batch_size=batch,
        num_draws=7,
        seed=seed,
        progress_bar=False,
    )
    for c in range(chains):
        gen = torch.Generator().manual_seed(chain_seed(seed, c, 1))
        stream = _BatchStream(n, batch, gen, _Dist())
        for step in range(7):
            assert seen[step][c].tolist() == stream.next().tolist()
    assert not torch.equal(seen[0][0], seen[0][1])  # chains see different batches


def test_hook_runs_every_hook_every_steps_and_its_state_is_kept():
    calls = []

    def hook(params, extra, generators):
        calls.append(len(generators))
        return {"count": extra["count"] + 1}

    res = sample(
        lambda p, b, e: -0.5 * (p["w"] ** 2).sum(-1) * e["count"].clamp(min=1),
        {"w": torch.zeros(2, 1, dtype=D)},
        SGHMCKernel(lr=0.01),
        num_burn_in=4,
        num_draws=3,
        thin=3,
        seed=0,
        hook=hook,
        hook_init={"count": torch.zeros(2, dtype=D)},
        hook_every=2,
        progress_bar=False,
    )
    assert calls == [2] * 6  # steps 2, 4 (burn-in), 6, 8, 10, 12
    # draws after steps 7, 10, 13 (13 total steps): hook counts 3, 5, 6
    assert res.extra_draws["count"].tolist() == [[3.0, 5.0, 6.0]] * 2


def test_callback_stops_and_partial_draws_are_returned():
    def stop_at_8(info):
        return info.step == 8

    res = sample(
        lambda p, b, e: -0.5 * (p["w"] ** 2).sum(-1),
        {"w": torch.zeros(2, 1, dtype=D)},
        SGHMCKernel(lr=0.01),
        num_burn_in=2,
        num_draws=10,
        thin=2,
        seed=0,
        callbacks=[stop_at_8],
        progress_bar=False,
    )
    assert res.record.stopped_early and res.record.num_steps == 8
    assert res.draws["w"].shape == (2, 3, 1) and res.potentials.shape == (2, 8)
    assert len(res.record.losses) == 8


def test_non_finite_potential_names_chain_and_step():
    def log_prob(params, batch, extra):
        lp = -0.5 * (params["w"] ** 2).sum(-1)
        return lp + torch.tensor([0.0, math.nan], dtype=D)  # chain 1 is broken

    with pytest.raises(FloatingPointError, match="chain 1 became nan at step 1"):
        sample(
            log_prob,
            {"w": torch.zeros(2, 1, dtype=D)},
            SGHMCKernel(lr=0.01),
            num_draws=5,
            seed=0,
            check_every=2,
            progress_bar=False,
        )


def test_progress_bar_runs_cleanly(capsys):
    res = sample(
        lambda p, b, e: -0.5 * (p["w"] ** 2).sum(-1),
        {"w": torch.zeros(1, 1, dtype=D)},
        SGHMCKernel(lr=0.01),
        num_draws=30,
        seed=0,
        check_every=10,
        progress_bar=True,
        desc="test-sample",
    )
    assert res.record.num_steps == 30
    assert res.record.diagnostics["kernel"] == "SGHMC"


# ------------------------------------------------------------------------ bad inputs

_LP = lambda p, b, e: -(p["w"] ** 2).sum(-1)  # noqa: E731
_INIT = {"w": torch.zeros(2, 1, dtype=D)}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_draws": 0}, ValueError, "num_draws must be at least 1; got 0"),
        ({"thin": 0}, ValueError, "thin must be at least 1; got 0"),
        ({"num_burn_in": -1}, ValueError, "num_burn_in must be at least 0"),
        ({"num_draws": 2.5}, TypeError, "num_draws must be an int"),
        ({"hook_every": 0}, ValueError, "hook_every must be at least 1"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be at least 1"),
        ({"init": {}}, TypeError, "init must be a non-empty dict"),
        ({"init": {"w": torch.zeros(())}}, ValueError, r"init\['w'\] must have a leading chain"),
        (
            {"init": {"w": torch.zeros(2, 1), "b": torch.zeros(3)}},
            ValueError,
            r"init\['b'\] has 3 chains .* init\['w'\] has 2",
        ),
        ({"init": {"w": torch.zeros(2, 1, dtype=torch.long)}}, TypeError, "floating point"),
        ({"init": {"w": torch.zeros(2), "b": torch.zeros(2, dtype=D)}}, ValueError, "share both"),
        ({"init": {"w": torch.full((2, 1), math.nan)}}, ValueError, "NaN or inf"),
        ({"kernel": "sghmc"}, TypeError, "kernel must be a StepKernel"),
        ({"hook": lambda p, e, g: e}, ValueError, "hook= needs hook_init="),
        ({"hook_init": {"s": torch.ones(2)}}, ValueError, "without hook="),
        (
            {"hook": lambda p, e, g: e, "hook_init": {"s": torch.ones(3)}},
            ValueError,
            "hook_init has 3 chains",
        ),
        ({"data": (torch.zeros(5, 1), torch.zeros(4))}, ValueError, "data\\[1\\] has 4 rows"),
        ({"data": (torch.zeros(5, 1),), "batch_size": 6}, ValueError, "batch_size must be in"),
        ({"batch_size": 2}, ValueError, "batch_size= needs data="),
        ({"log_prob_fn": lambda p, b, e: p["w"].sum()}, ValueError, r"shape \(2,\); got \(\)"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, match):
    args = {"log_prob_fn": _LP, "init": _INIT, "kernel": SGHMCKernel(lr=0.01), "num_draws": 2}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sample(
            args.pop("log_prob_fn"),
            args.pop("init"),
            args.pop("kernel"),
            progress_bar=False,
            **args,
        )


@pytest.mark.parametrize("kernel_cls", [SGHMCKernel, AdaptiveSGHMCKernel])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr must be positive and finite; got 0.0"),
        ({"lr": -1e-3}, "lr must be positive"),
        ({"lr": math.inf}, "lr must be positive and finite"),
        ({"mdecay": 0.0}, "mdecay must be positive"),
        ({"mdecay": 1.5}, r"mdecay .* must lie in \(0, 1\]; got 1.5"),
        ({"grad_clip": 0.0}, "grad_clip must be positive"),
    ],
)
def test_bad_kernel_settings_raise(kernel_cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kernel_cls(**kwargs)
    with pytest.raises(TypeError, match="lr must be a number"):
        kernel_cls(lr="0.1")


# -------------------------------------------------------------------- resume / kill


def test_resume_after_sigkill_is_exact(tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = subprocess.run(
        [
            sys.executable,
            str(TESTS / "_sampling_worker.py"),
            "--mode",
            "kill",
            "--ckpt",
            str(ckpt),
            "--kill-at",
            "14",  # burn-in (12 steps) is over, a hook call (15) and draws are pending
            "--threads",
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=_subprocess_env(),
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    echoed = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
    assert max(int(s) for s in echoed) == 14

    uninterrupted = worker.run()
    resumed = worker.run(str(ckpt))
    assert resumed.record.resumed_from == 12  # the last checkpoint before the kill
    _assert_same(resumed.draws, uninterrupted.draws)
    _assert_same(resumed.extra_draws, uninterrupted.extra_draws)
    assert torch.equal(resumed.potentials, uninterrupted.potentials)
    # and the killed run followed the same trajectory up to its death
    for step, value in echoed.items():
        assert float(value) == float(uninterrupted.potentials[:, int(step) - 1].mean())
    # a finished run resumes to the same result without stepping
    again = worker.run(str(ckpt))
    assert again.record.resumed_from == worker.BURN_IN + worker.DRAWS * worker.THIN
    _assert_same(again.draws, uninterrupted.draws)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    worker.run(str(tmp_path))
    log_prob, init, data, gibbs, hook_init = worker.make_problem()
    with pytest.raises(ValueError, match=r"checkpoint in .* is of another run"):
        sample(
            log_prob,
            init,
            SGHMCKernel(lr=0.01),
            data=data,
            batch_size=worker.BATCH,
            num_burn_in=worker.BURN_IN,
            num_draws=worker.DRAWS,
            thin=worker.THIN,
            seed=worker.SEED,
            hook=gibbs,
            hook_init=hook_init,
            hook_every=worker.HOOK_EVERY,
            checkpoint_dir=tmp_path,
            progress_bar=False,
        )


# -------------------------------------------------------------------------- torchrun


def test_two_gloo_ranks_give_the_single_process_draws(tmp_path):
    """3 chains over 2 ranks (1 + 2): no gradient all-reduce, the draws gathered."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(TESTS / "_sampling_worker.py"),
        "--mode",
        "ddp",
        "--out",
        str(out),
    ]
    env = _subprocess_env(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    if Path("/sys/class/net/lo").exists():  # keep gloo on loopback, whatever the hostname says
        env["GLOO_SOCKET_IFNAME"] = "lo"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    got = load_file(str(out / "draws.safetensors"))
    assert int(got["world_size"]) == 2

    single = worker.run()
    for k, v in single.draws.items():
        torch.testing.assert_close(got[f"draws.{k}"], v, rtol=1e-12, atol=1e-12)
    for k, v in single.extra_draws.items():
        torch.testing.assert_close(got[f"extra.{k}"], v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["potentials"], single.potentials, rtol=1e-12, atol=1e-12)
    np.testing.assert_equal(got["draws.w"].shape, (worker.CHAINS, worker.DRAWS, worker.D))
