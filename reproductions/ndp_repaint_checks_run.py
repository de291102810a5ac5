"""Side checks of the NDP (d) diagnosis with the exact step noise model
(``ndp_extras.StepOracle``), on the saved step tasks; writes
``reproductions/ndp_nongauss_repaint_checks.json``:

    python reproductions/ndp_repaint_checks_run.py

* RePaint with jump length ``j`` (Lugmayr et al.'s "time travel": after reaching a level
  that is a multiple of ``j``, the targets are noised forward ``j`` levels by
  ``q(y_{t+j} | y_t)`` and denoised again, ``U`` times per block; ``j = 1`` is the library's
  RePaint) on the first 4 tasks, 64 draws: does a longer jump fix the loose conditioning?
* RePaint U = 4 on the figure context with 5 targets against 49 targets (512 draws): is
  it the number of targets that lets the target values outweigh the context?
* the spread of single SMC runs (8 runs of 128 particles) on the first 4 tasks, and their
  pooled estimate.
"""

import json
import math
import time

import torch

from bayesfn.data import TaskSet
from bayesfn.processes.ndp.diffusion import Schedule, repaint_sample, smc_sample
from bayesfn.reproduce import ndp_extras as ex

torch.set_num_threads(1)
D = torch.float64
sched = Schedule(100)  # the committed step model's schedule
oracle = ex.StepOracle(sched, ex.STEP_DATA["noise_std"], ex.STEP_DATA["x_range"])
tasks = TaskSet.load("reproductions/ndp_nongauss_run/tasks_step")
k, draws = 4, 64
xc, yc = tasks.x_context[:k].to(D), tasks.y_context[:k].to(D)
cm, xt = tasks.context_mask[:k], tasks.x_target[:k].to(D)
p_exact = []
for i in range(k):
    (a, b), (c, _) = tasks.task(i)
    lw, v = ex.step_posterior(a, b, c, noise_std=ex.STEP_DATA["noise_std"])
    p_exact.append((lw.exp()[:, None] * v).sum(0))
pe = torch.stack(p_exact)
amb = (pe > 0.1) & (pe < 0.9)
gen = torch.Generator().manual_seed(0)


def summary(p: torch.Tensor) -> dict:
    err = (p - pe).abs()
    se = lambda v: float(v.std() / math.sqrt(v.numel()))  # noqa: E731
    return {
        "abs_p_error_all": float(err.mean()),
        "abs_p_error_all_se": se(err),
        "abs_p_error_ambiguous": float(err[amb].mean()),
        "abs_p_error_ambiguous_se": se(err[amb]),
    }


def repaint_jump(inner: int, jump: int) -> tuple[torch.Tensor, int]:
    """``(draws, k, n_t)`` values and the number of noise-model calls."""
    rep = lambda t: t.expand(draws, *t.shape).reshape(draws * k, *t.shape[1:])  # noqa: E731
    x = torch.cat([rep(xc), rep(xt)], 1)
    mask = torch.cat([rep(cm), torch.ones(draws * k, xt.shape[1], dtype=torch.bool)], 1)
    y_c, n_c = rep(yc), xc.shape[1]
    abar, beta = sched.alpha_bars, sched.betas
    y = torch.randn(draws * k, xt.shape[1], 1, generator=gen, dtype=D)
    t, done, calls = sched.num_steps - 1, {}, 0
    while t >= 0:
        a, b = float(abar[t]), float(beta[t])
        noisy_c = math.sqrt(a) * y_c + math.sqrt(1 - a) * torch.randn(
            y_c.shape, generator=gen, dtype=D
        )
        joint = torch.cat([noisy_c, y], 1)
        eps = oracle(x, joint, torch.full((draws * k,), t, dtype=torch.long), mask)
        calls += 1
        y = ((joint - b / math.sqrt(1 - a) * eps) / math.sqrt(1 - b))[:, n_c:]
        if t > 0:
            y = y + math.sqrt(b) * torch.randn(y.shape, generator=gen, dtype=D)
        level = t - 1
        if level >= 0 and level % jump == 0 and level + jump <= sched.num_steps - 1:
            if done.get(level, 0) < inner:
                done[level] = done.get(level, 0) + 1
                r = float(abar[level + jump] / abar[level])
                y = math.sqrt(r) * y + math.sqrt(1 - r) * torch.randn(
                    y.shape, generator=gen, dtype=D
                )
                t = level + jump
                continue
        t = level
    return y[..., 0].reshape(draws, k, -1), calls


start = time.time()
out: dict = {
    "scale": "cpu",  # the committed step model and tasks of the cpu preset
    "seeds": [0],
    "tasks": k,
    "targets": int(pe.numel()),
    "ambiguous": int(amb.sum()),
    "jump": [],
}
for inner, jump in [(1, 1), (4, 1), (4, 10), (4, 25), (4, 50), (16, 10)]:
    d, calls = repaint_jump(inner, jump)
    row = {"U": inner, "jump": jump, "calls": calls, "draws": draws}
    row.update(summary((d > 0.5).to(D).mean(0)))
    out["jump"].append(row)
    print(row, flush=True)
# the figure context with few and with many targets
fx = torch.tensor(ex.FIGURE_CONTEXT[0], dtype=D)[:, None]
fy = torch.tensor([[0.03], [-0.02], [0.98], [1.04]], dtype=D)
few = torch.tensor([[-2.0], [-1.25], [0.0], [0.5], [1.8]], dtype=D)
many = torch.cat([few, torch.linspace(-2, 2, 44, dtype=D)[:, None]])
out["figure_context_targets"] = {}
for name, x_t in (("5 targets", few), ("49 targets", many)):
    d = repaint_sample(
        oracle,
        sched,
        fx.expand(512, 4, 1),
        fy.expand(512, 4, 1),
        x_t.expand(512, -1, 1),
        num_inner_steps=4,
        generator=gen,
    )[..., 0]
    lw, v = ex.step_posterior(fx, fy, x_t, noise_std=ex.STEP_DATA["noise_std"])
    exact = (lw.exp()[:, None] * v).sum(0)
    out["figure_context_targets"][name] = {
        "x": few[:, 0].tolist(),
        "repaint_u4_p_upper": (d[:, :5] > 0.5).to(D).mean(0).tolist(),
        "exact_p_upper": exact[:5].tolist(),
    }
    print(name, out["figure_context_targets"][name], flush=True)
# single SMC runs
runs = []
for _ in range(8):
    d = smc_sample(oracle, sched, xc, yc, xt, num_particles=128, context_mask=cm, generator=gen)
    runs.append((d[..., 0] > 0.5).to(D).mean(0))
out["smc_single_runs_128"] = [summary(p) for p in runs]
out["smc_8_runs_pooled"] = summary(torch.stack(runs).mean(0))
out["smc_8_runs_pooled"]["signed_ambiguous"] = float((torch.stack(runs).mean(0) - pe)[amb].mean())
print(out["smc_8_runs_pooled"])
out["wall_seconds"] = round(time.time() - start, 1)
with open("reproductions/ndp_nongauss_repaint_checks.json", "w") as f:
    json.dump(out, f, indent=1)
