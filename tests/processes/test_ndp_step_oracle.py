"""The diffusion on a non-Gaussian law: the exact noise model of the step process
(``ndp_extras.StepOracle``) against finite differences of the mixture density computed by
quadrature over the threshold; with it, the probability-flow ODE against the exact step
density, and the conditional samplers against the exact step posterior (RePaint is
loose even with the exact noise model; SMC is not)."""

import math

import pytest
import torch

from bayesfn.processes.ndp.diffusion import Schedule, ode_log_prob, repaint_sample, smc_sample
from bayesfn.reproduce import ndp_extras as ex

D = torch.float64


def _quadrature_log_density(x, y, a, noise, num=100_000):
    """log p_t(y) of the level variable ``sqrt(a) y_0 + sqrt(1 - a) e`` by the midpoint rule
    over the threshold s ~ U(-2, 2), both directions: ``x (n,)``, ``y (n,)``."""
    s = -2 + 4 * (torch.arange(num, dtype=D) + 0.5) / num
    v = a * noise**2 + 1 - a
    total = []
    for w in (1.0, -1.0):
        f = (w * x[None] >= s[:, None]).to(D)  # (num, n)
        comp = (-0.5 * (y[None] - math.sqrt(a) * f) ** 2 / v).sum(1)
        total.append(math.log(0.5 / num) + torch.logsumexp(comp, 0))
    return torch.logsumexp(torch.stack(total), 0) - 0.5 * x.numel() * math.log(2 * math.pi * v)


def test_step_oracle_is_the_noise_of_the_mixture_score():
    sched = Schedule(100)
    oracle = ex.StepOracle(sched, noise_std=0.05)
    x = torch.tensor([-1.7, -0.6, 0.1, 0.9, 1.4], dtype=D)
    y = torch.tensor([0.3, -0.5, 1.2, 0.8, 0.4], dtype=D)
    for t in (3.0, 40.5, 90.0):
        a = float(torch.sigmoid(sched.log_snr_at(torch.tensor(t))))
        got = oracle(x[None, :, None], y[None, :, None], torch.tensor([t], dtype=D), None)[0, :, 0]
        h = 1e-4
        fd = torch.stack(
            [
                (
                    _quadrature_log_density(x, y + h * e, a, 0.05)
                    - _quadrature_log_density(x, y - h * e, a, 0.05)
                )
                / (2 * h)
                for e in torch.eye(5, dtype=D)
            ]
        )
        torch.testing.assert_close(got, -math.sqrt(1 - a) * fd, rtol=1e-4, atol=1e-5)
        # its log density is the quadrature's
        lp = oracle.log_prob(x[None, :, None], y[None, :, None], torch.tensor([a]))
        assert lp.item() == pytest.approx(_quadrature_log_density(x, y, a, 0.05).item(), abs=1e-3)
    # padded points neither cut the threshold range nor enter the others' noise
    xp = torch.cat([x, torch.tensor([0.5], dtype=D)])[None, :, None]
    yp = torch.cat([y, torch.tensor([7.0], dtype=D)])[None, :, None]
    mask = torch.tensor([[True] * 5 + [False]])
    t = torch.tensor([20.0], dtype=D)
    padded = oracle(xp, yp, t, mask)[0, :5]
    torch.testing.assert_close(padded, oracle(x[None, :, None], y[None, :, None], t, None)[0])
    with pytest.raises(ValueError, match="1-D"):
        oracle(torch.zeros(1, 3, 2, dtype=D), torch.zeros(1, 3, 1, dtype=D), t, None)


def test_ode_likelihood_with_the_step_oracle_equals_the_exact_density():
    # an independent reference for the ODE on a non-Gaussian law: the step process's
    # density blurred like the ODE's level 0 (``step_posterior``'s evidence)
    sched = Schedule(100)
    oracle = ex.StepOracle(sched, noise_std=0.05)
    x = torch.tensor([[-1.6], [-0.4], [0.3], [1.2], [1.8]], dtype=D).expand(3, 5, 1)
    y = torch.tensor(
        [
            [0.02, -0.04, 0.97, 1.05, 0.99],  # a rising step
            [1.01, 0.03, 0.04, -0.02, 0.01],  # a falling one
            [0.98, 1.04, 0.96, 1.02, 0.97],  # all ones: both directions
        ],
        dtype=D,
    )[..., None]
    a0 = float(sched.alpha_bars[0])
    blurred = math.sqrt(0.05**2 + (1 - a0) / a0)
    ref = torch.stack(
        [
            ex.step_posterior(x[0], v, x[0, :0], noise_std=blurred, return_log_evidence=True)[2]
            for v in y
        ]
    )
    a_end = torch.full((3,), float(sched.alpha_bars[-1]), dtype=D)
    got = ode_log_prob(
        oracle,
        sched,
        x,
        y,
        ode_steps=20,
        terminal_log_prob=lambda s: oracle.log_prob(x, s, a_end),
    )
    torch.testing.assert_close(got, ref, atol=2e-3, rtol=0)
    # the default terminal N(0, I) misses the little signal left at level T - 1
    default = ode_log_prob(oracle, sched, x, y, ode_steps=20)
    torch.testing.assert_close(default, ref, atol=0.25, rtol=0)
    assert (default - ref).abs().max() > 1e-3


def test_smc_with_the_step_oracle_follows_the_exact_posterior_and_repaint_does_not():
    # zeros at -1.5 and -1, ones at 1 and 1.5: f(-2) = 0 and f(1.8) = 1 surely, f(0) is
    # 0 or 1 with probability 1/2 and f(0.5) is 1 with probability 3/4
    sched = Schedule(100)
    oracle = ex.StepOracle(sched, noise_std=0.05)
    xc = torch.tensor([[-1.5], [-1.0], [1.0], [1.5]], dtype=D)
    yc = torch.tensor([[0.03], [-0.02], [0.98], [1.04]], dtype=D)
    # the 49-point grid of the figure task: many targets, few context points
    xt = torch.linspace(-2, 2, 49, dtype=D)[:, None]
    at = [0, 9, 24, 30, 48]  # x = -2, -1.25, 0, 0.5, 2
    log_w, values = ex.step_posterior(xc, yc, xt, noise_std=0.05)
    exact = (log_w.exp()[:, None] * values).sum(0)[at]
    runs, particles = 8, 32
    g = torch.Generator().manual_seed(0)
    smc = smc_sample(
        oracle,
        sched,
        xc.expand(runs, 4, 1),
        yc.expand(runs, 4, 1),
        xt.expand(runs, 49, 1),
        num_particles=particles,
        generator=g,
    )
    p_smc = (smc[..., 0] > 0.5).to(D).mean((0, 1))[at]
    # 256 draws from 8 independent runs (errors 0.03-0.07 over seeds 0 and 1; binomial
    # s.e. of 256 independent draws <= 0.031)
    assert (p_smc - exact).abs().max() < 0.12, (p_smc, exact)
    assert p_smc[0] < 0.02 and p_smc[-1] > 0.98
    draws = repaint_sample(
        oracle,
        sched,
        xc.expand(128, 4, 1),
        yc.expand(128, 4, 1),
        xt.expand(128, 49, 1),
        num_inner_steps=1,
        generator=g,
    )
    p_repaint = (draws[..., 0] > 0.5).to(D).mean(0)[at]
    # RePaint with the exact noise model ignores the context in a sizeable share of draws
    # (0.28-0.40 at x = -2 and x = 2 here over seeds and U = 1, 2, 4, where the exact
    # probability is 0 or 1); with 5 targets instead of 49 it is right (the many targets'
    # values outweigh the 4 context values in the joint noise model)
    assert p_repaint[0] > 0.1 and p_repaint[-1] < 0.9, p_repaint
