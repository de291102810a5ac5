"""Reproduction: Dutordoir, Saul, Ghahramani & Simpson, "Neural Diffusion Processes",
ICML 2023 (arXiv 2206.03992), the experiments beyond the regression table:

* ``nongauss`` (row group (d)) — a non-Gaussian posterior. An NDP is trained on step
  functions (``bayesfn.data`` family ``"step"``: ``f(x) = 1[w x >= s]``, direction
  ``w = ±1`` with probability 1/2, threshold ``s ~ U(-2, 2)``, observed with N(0, 0.05²)
  noise, inputs on [-2, 2]). Given a context with a 0 on one side and a 1 on the other,
  the value at a target point between them is bimodal. The exact conditional law is
  computed in closed form (:func:`step_posterior`: the likelihood is constant in ``s``
  between sorted inputs, so the posterior over ``(w, s)`` is piecewise uniform) and
  compared with the NDP's RePaint draws and with two Gaussian processes: the GP whose
  mean and covariance are those of the step process (``0.5`` and
  ``0.25 (1 - |x - x'| / 2)``, the Gaussian closest to it in KL) and an SE GP with
  hyperparameters fitted by maximum marginal likelihood on step draws. Metrics per
  target: probability of the upper mode (``y > 1/2``), Wasserstein-1 distance to the
  exact predictive, predictive log density of held-out values.
* ``thompson`` (row group (e)) — global optimisation by Thompson sampling in 1-D and
  2-D (``ts_dims``). Test functions are GP draws (SE, variance 1, lengthscale
  ``0.25 sqrt(d)``) on a regular grid of candidate inputs in [-2, 2]^d, observed with
  N(0, 0.05²) noise; all methods share a random first query, then at each step one
  conditional draw on the grid given all observations so far picks the next query (its
  argmin). The NDP (the ``se`` models of ``bayesfn reproduce ndp`` in 1-D and
  ``ndp_multidim`` in 2-D, trained on exactly this prior; they draw noisy values) is
  compared with the exact GP Thompson sampler (true kernel and noise; it draws the
  latent function) and random search, by simple regret
  ``min_{i <= k} f(x_i) - min_grid f``.

Presets (``scale``):

* ``"smoke"`` — a tiny network trained for 30 steps, few tasks and draws; seconds.
* ``"cpu"`` — the CPU scale-down: 2 blocks, 32 channels, 4 heads, T = 100; the step
  NDP trained for ``steps`` (10,000) Adam steps; RePaint U = 2; 256 draws per task;
  Thompson sampling with 64 test functions; 1-D: a 45-point grid and 15 queries (at
  most 59 points per set, as in training), the committed ``se`` model of the ``cpu``
  1-D table; 2-D: a 7 × 7 grid on [-1, 1]² and 10 queries, the ``se-2`` model of
  ``ndp_multidim``'s ``cpu`` run.
* ``"full"`` — the paper's network (4 blocks, 64 channels, 8 heads, T = 500), 128,000
  steps, U = 5: GPU only; it needs an ``se`` model of the same size for ``thompson``.

:func:`diagnose_nongauss` (``python reproductions/ndp_extras_cpu_run.py diagnose``) checks
row group (d) with the exact noise model of the step process (:class:`StepOracle`): RePaint
is loose even with it, SMC is not, and the NDP's density of small sets is too low.

The paper shows these experiments as figures (no table was retrieved, see the notes), so
no published number stands beside ours: the references are the exact step posterior and
the exact GP sampler computed here.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from bayesfn.reproduce import ndp
from bayesfn.reproduce.results import make_results, result_row

logger = logging.getLogger(__name__)

PAPER = (
    "Dutordoir, Saul, Ghahramani & Simpson, Neural Diffusion Processes, ICML 2023 "
    "(non-Gaussian posterior; Thompson-sampling optimisation)"
)

GROUPS = ("nongauss", "thompson")
STEP_DATA: dict[str, Any] = {"x_range": (-2.0, 2.0), "noise_std": 0.05}
SE_DATA: dict[str, Any] = {
    "x_range": (-2.0, 2.0),
    "lengthscale": 0.25,
    "variance": 1.0,
    "noise_std": 0.05,
}

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {
        "model": {"hidden": 8, "num_layers": 1, "num_heads": 2, "num_steps": 10},
        "steps": 30,
        "batch_size": 8,
        "num_points": (10, 14),
        "num_inner_steps": 1,
        "num_tasks": 3,
        "num_target": 8,
        "num_samples": 16,
        "num_samples_figure": 16,
        "ode_tasks": 2,
        "ode_steps": 2,
        "check_tasks": 1,
        "check_inner_steps": 2,
        "check_samples": 8,
        "num_gp_fit_functions": 16,
        "ts_dims": [1, 2],
        "ts_inner_steps": None,  # RePaint U of the Thompson draws (None: num_inner_steps)
        "ts_functions": 3,
        # per input dimension; ndp_model None: a smoke model trained on SE draws in place
        "thompson": {
            "1": {"ndp_model": None, "grid_side": 12, "queries": 4},
            "2": {"ndp_model": None, "grid_side": 3, "queries": 3},
        },
    },
    "cpu": {
        "model": {"hidden": 32, "num_layers": 2, "num_heads": 4, "num_steps": 100},
        "steps": 10000,
        "batch_size": 32,
        "num_points": (50, 59),
        "num_inner_steps": 1,
        "num_tasks": 12,
        "num_target": 50,
        "num_samples": 128,
        "num_samples_figure": 512,
        "ode_tasks": 12,
        "ode_steps": 12,
        "check_tasks": 4,
        "check_inner_steps": 4,
        "check_samples": 64,
        "num_gp_fit_functions": 256,
        "ts_dims": [1, 2],
        "ts_inner_steps": None,  # RePaint U of the Thompson draws (None: num_inner_steps)
        "ts_functions": 64,
        "thompson": {
            "1": {
                "ndp_model": "reproductions/ndp_tasks/se_run/model_se_seed0",
                "grid_side": 45,
                "queries": 15,
            },
            "2": {
                "ndp_model": "reproductions/ndp_multidim/se-2_run/model_se-2_seed0",
                "grid_side": 7,
                "queries": 10,
                # grid spacing 0.33 ~ 0.94 lengthscales (on [-2, 2]^2 the 7 x 7 values are
                # nearly independent and no sampler beats random search)
                "box": [-1.0, 1.0],
            },
        },
    },
    "full": {
        "model": {"hidden": 64, "num_layers": 4, "num_heads": 8, "num_steps": 500},
        "steps": 128000,
        "batch_size": 32,
        "num_points": (50, 59),
        "num_inner_steps": 5,
        "num_tasks": 128,
        "num_target": 50,
        "num_samples": 256,
        "num_samples_figure": 1024,
        "ode_tasks": 128,
        "ode_steps": 100,
        "check_tasks": 16,
        "check_inner_steps": 20,
        "check_samples": 128,
        "num_gp_fit_functions": 256,
        "ts_dims": [1, 2],
        "ts_inner_steps": None,  # RePaint U of the Thompson draws (None: num_inner_steps)
        "ts_functions": 128,
        "thompson": {
            "1": {"ndp_model": "results/ndp/model_se_seed0", "grid_side": 45, "queries": 15},
            "2": {
                "ndp_model": "results/ndp_multidim/model_se-2_seed0",
                "grid_side": 7,
                "queries": 10,
                "box": [-1.0, 1.0],
            },
        },
    },
}


def _check(scale: str, seeds: list[int], groups) -> dict[str, Any]:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}; got {scale!r}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints; got {seeds!r}")
    if not groups or any(g not in GROUPS for g in groups):
        raise ValueError(f"groups must be a non-empty subset of {GROUPS}; got {groups!r}")
    return dict(SCALES[scale])


# ----------------------------------------------------------------- fitting


def fit_ndp(
    family: str,
    data: dict[str, Any],
    cfg: dict[str, Any],
    seed: int,
    device: str,
    out: Path,
    *,
    progress_bar: bool,
    name: str | None = None,
):
    """The NDP of ``family`` (a :func:`~bayesfn.data.sample_functions` family with
    settings ``data``) fitted with ``cfg``'s network and steps on fresh draws at every
    step: loaded from ``out/model_<name>_seed<seed>`` (``name`` defaults to ``family``)
    when a fit with the same settings was saved there, else trained and saved (with
    ``..._fit.json``: steps, seconds, final loss). Returns ``(model, fit_info)``."""
    from bayesfn.data import FunctionSampler

    wanted = {
        "steps": cfg["steps"],
        "model": cfg["model"],
        "batch_size": cfg["batch_size"],
        "num_points": list(cfg["num_points"]),
        "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()},
    }
    sampler = FunctionSampler(family, cfg["batch_size"], tuple(cfg["num_points"]), **data)
    return ndp.load_or_fit(
        family if name is None else name,
        wanted,
        sampler,
        cfg,
        seed,
        device,
        out,
        progress_bar=progress_bar,
        family=family,
    )


# ------------------------------------------------- (d) exact step posterior


def step_posterior(
    x_context: torch.Tensor,
    y_context: torch.Tensor,
    x_target: torch.Tensor,
    *,
    noise_std: float,
    x_range: tuple[float, float] = (-2.0, 2.0),
    return_log_evidence: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Exact posterior of the 1-D step process of :func:`~bayesfn.data.sample_functions`
    (``f(x) = 1[w x >= s]``, ``w = ±1`` with probability 1/2, ``s ~ U(x_range)``) given
    noisy values ``y_c = f(x_c) + noise_std · ε``, as a finite mixture.

    For each direction the inputs (context and target, as ``w x``) cut the range of ``s``
    into intervals on which every ``f(x_c)`` and ``f(x_t)`` is constant; the posterior
    weight of an interval is ``1/2 · length / (high - low) · p(y_c | f(x_c))``. So the
    values at the targets follow the mixture ``sum_k weight_k · δ(values_k)``, exactly.

    Args:
        x_context: ``(n_c,)`` or ``(n_c, 1)`` inputs; y_context: ``(n_c,)`` / ``(n_c, 1)``.
        x_target: ``(n_t,)`` or ``(n_t, 1)``.
        noise_std: of the observations (> 0).
        x_range: the range of the threshold (the data's input range).

        return_log_evidence: also return ``log p(y_c)`` (a scalar).

    Returns:
        ``(log_weights (K,), values (K, n_t))``, float64; ``values`` in ``{0, 1}``.
    """
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0; got {noise_std!r}")
    xc = torch.as_tensor(x_context, dtype=torch.float64).reshape(-1)
    yc = torch.as_tensor(y_context, dtype=torch.float64).reshape(-1)
    xt = torch.as_tensor(x_target, dtype=torch.float64).reshape(-1)
    if xc.shape != yc.shape:
        raise ValueError(
            f"x_context and y_context must have n_c values each; got {tuple(xc.shape)} "
            f"and {tuple(yc.shape)}"
        )
    low, high = float(x_range[0]), float(x_range[1])
    log_w, values = [], []
    for w in (1.0, -1.0):
        cuts = torch.cat([w * xc, w * xt]).clamp(low, high)
        edges = torch.unique(torch.cat([cuts, cuts.new_tensor([low, high])]))  # sorted
        left, right = edges[:-1], edges[1:]
        keep = right > left
        left, right = left[keep], right[keep]
        mid = 0.5 * (left + right)
        fc = (w * xc[None, :] >= mid[:, None]).to(torch.float64)  # (K, n_c)
        ft = (w * xt[None, :] >= mid[:, None]).to(torch.float64)  # (K, n_t)
        loglik = torch.distributions.Normal(fc, noise_std).log_prob(yc).sum(1)
        log_w.append(math.log(0.5) + torch.log((right - left) / (high - low)) + loglik)
        values.append(ft)
    log_w_all = torch.cat(log_w)
    evidence = torch.logsumexp(log_w_all, 0)
    if return_log_evidence:
        return log_w_all - evidence, torch.cat(values), evidence
    return log_w_all - evidence, torch.cat(values)


def step_log_prob(
    log_weights: torch.Tensor, values: torch.Tensor, y_target: torch.Tensor, noise_std: float
) -> torch.Tensor:
    """``log p(y_target | context)`` of the mixture from :func:`step_posterior`: each
    component ``N(values_k, noise_std² I)``. ``y_target (n_t,)``; returns a scalar."""
    y = torch.as_tensor(y_target, dtype=torch.float64).reshape(-1)
    comp = torch.distributions.Normal(values, noise_std).log_prob(y[None, :]).sum(1)
    return torch.logsumexp(log_weights + comp, 0)


def step_patterns(
    x: torch.Tensor, mask: torch.Tensor | None = None, x_range: tuple[float, float] = (-2.0, 2.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """The finitely many value patterns of the step process at a finite set of inputs and
    their prior probabilities, per function of a batch.

    For each direction ``w = ±1`` the sorted, clamped ``w x`` cut ``[low, high]`` into
    ``n + 1`` intervals of the threshold ``s``; on each, ``f(x) = 1[w x >= s]`` is one
    pattern, of probability ``1/2 · length / (high - low)``. Empty intervals (tied
    inputs) get probability 0 (log weight ``-inf``). Padded points (``mask`` False) do not
    cut; their pattern entries are meaningless and must be ignored by the caller.

    Args:
        x: ``(b, n, 1)`` inputs; mask: ``(b, n)`` bool or None.

    Returns:
        ``(log_weights (b, K), patterns (b, K, n))``, ``K = 2 (n + 1)``, float64.
    """
    xs = x.to(torch.float64)[..., 0]
    low, high = float(x_range[0]), float(x_range[1])
    log_w, patterns = [], []
    for w in (1.0, -1.0):
        cut = (w * xs).clamp(low, high)
        if mask is not None:
            cut = torch.where(mask, cut, torch.full_like(cut, low))  # an empty interval
        bounds = cut.new_tensor([low, high]).expand(cut.shape[0], 2)
        edges = torch.cat([cut, bounds], 1).sort(1).values  # (b, n + 2)
        left, right = edges[:, :-1], edges[:, 1:]
        mid = 0.5 * (left + right)
        patterns.append((w * xs[:, None, :] >= mid[:, :, None]).to(torch.float64))
        length = right - left
        log_w.append(
            torch.where(
                length > 0,
                math.log(0.5) + torch.log(length.clamp_min(1e-300) / (high - low)),
                torch.full_like(length, -math.inf),
            )
        )
    return torch.cat(log_w, 1), torch.cat(patterns, 1)


class StepOracle:
    """The exact noise model of the step-process data law, ``eps_fn(x, y_t, t, mask)``
    (the signature of :mod:`bayesfn.processes.ndp.diffusion`), with no network.

    At a finite set of inputs the noisy values ``y = f(x) + noise_std · e`` follow the
    mixture ``sum_k pi_k N(m_k, noise_std² I)`` of :func:`step_patterns`. The diffusion's
    level-``t`` variable ``y_t = sqrt(a) y + sqrt(1 - a) e'``, ``a = abar_t`` (continuous
    ``t`` through the schedule's log-SNR, ``a = sigmoid(rho(t))``), then follows
    ``sum_k pi_k N(sqrt(a) m_k, v I)``, ``v = a noise_std² + 1 - a``, and the optimal
    noise prediction ``E[e' | y_t] = -sqrt(1 - a) grad log p_t(y_t)`` is

        eps = sqrt(1 - a) (y_t - sqrt(a) sum_k r_k m_k) / v,

    with the responsibilities ``r_k`` (a softmax over components). Padded points are
    given the noise model of independent N(0, 1) values, ``sqrt(1 - a) y_t``.

    Args:
        schedule: the :class:`~bayesfn.processes.ndp.diffusion.Schedule`.
        noise_std: of the observations.
        x_range: of the threshold.
    """

    def __init__(self, schedule, noise_std: float = 0.05, x_range=(-2.0, 2.0)) -> None:
        self.schedule = schedule
        self.noise_std = float(noise_std)
        self.x_range = (float(x_range[0]), float(x_range[1]))
        self.calls = 0
        self._cache: tuple | None = None

    def _patterns(self, x: torch.Tensor, mask: torch.Tensor | None):
        key = (x.data_ptr(), tuple(x.shape), None if mask is None else mask.data_ptr())
        if self._cache is None or self._cache[0] != key or not torch.equal(self._cache[1], x):
            self._cache = (key, x.clone(), *step_patterns(x, mask, self.x_range))
        return self._cache[2], self._cache[3]

    def log_prob(self, x, y, abar: torch.Tensor, mask=None) -> torch.Tensor:
        """``log p_t(y)`` of the level variable with ``abar (b,)``; ``(b,)`` float64
        (real points only)."""
        log_w, m = self._patterns(x, mask)
        a = abar.to(torch.float64)[:, None, None]
        v = a * self.noise_std**2 + 1 - a
        weight = torch.ones_like(m[:, :1]) if mask is None else mask[:, None].to(torch.float64)
        d2 = ((y.to(torch.float64)[..., 0][:, None, :] - a.sqrt() * m) ** 2 * weight).sum(-1)
        count = weight.sum(-1)
        comp = -0.5 * d2 / v[..., 0] - 0.5 * count * torch.log(2 * math.pi * v[..., 0])
        return torch.logsumexp(log_w + comp, 1)

    def __call__(self, x, y, t, mask):
        self.calls += 1
        if y.shape[-1] != 1 or x.shape[-1] != 1:
            raise ValueError(
                f"the step process is 1-D to 1-D; got x {tuple(x.shape)}, y {tuple(y.shape)}"
            )
        log_w, m = self._patterns(x, mask)
        a = torch.sigmoid(self.schedule.log_snr_at(t.to(torch.float64)))[:, None]  # (b, 1)
        v = a * self.noise_std**2 + 1 - a
        yt = y.to(torch.float64)[..., 0]  # (b, n)
        weight = torch.ones_like(yt) if mask is None else mask.to(torch.float64)
        d2 = (((yt[:, None, :] - a[:, :, None].sqrt() * m) ** 2) * weight[:, None]).sum(-1)
        r = torch.softmax(log_w - 0.5 * d2 / v, 1)  # (b, K)
        mean = a.sqrt() * torch.einsum("bk,bkn->bn", r, m)
        eps = (1 - a).sqrt() * (yt - mean) / v
        if mask is not None:
            eps = torch.where(mask, eps, (1 - a).sqrt() * yt)
        return eps[..., None].to(y.dtype)


def step_moment_kernel(x1: torch.Tensor, x2: torch.Tensor, x_range=(-2.0, 2.0)) -> torch.Tensor:
    """Covariance of the step process, ``1/4 - |x - x'| / (2 (high - low))`` (mean 1/2):
    the kernel of the Gaussian process with the step process's first two moments.
    ``x1 (..., n, 1)``, ``x2 (..., n', 1)`` -> ``(..., n, n')``."""
    width = float(x_range[1]) - float(x_range[0])
    r = (x1 - x2.transpose(-1, -2)).abs()
    return 0.25 - r / (2 * width)


def _se_kernel(params: dict[str, torch.Tensor]):
    def kernel(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        d2 = ((x1[..., :, None, :] - x2[..., None, :, :]) ** 2).sum(-1)
        return params["variance"] * torch.exp(-0.5 * d2 / params["lengthscale"] ** 2)

    return kernel


def fit_se_gp(x: torch.Tensor, y: torch.Tensor, *, max_iter: int = 200) -> dict[str, float]:
    """Type-II maximum likelihood of an SE GP with constant mean, ``(variance,
    lengthscale, noise variance)``, on many functions pooled: the summed log marginal
    likelihood of ``y (b, n, 1)`` at ``x (b, n, 1)`` (float64, L-BFGS)."""
    x, y = x.double(), y.double()[..., 0]
    raw = torch.tensor([0.5, math.log(0.25), 0.0, math.log(0.01)], dtype=torch.float64)
    raw.requires_grad_(True)
    opt = torch.optim.LBFGS([raw], max_iter=max_iter, line_search_fn="strong_wolfe")
    eye = torch.eye(x.shape[1], dtype=torch.float64)

    def unpack(r):
        return {
            "mean": r[0],
            "variance": r[1].exp(),
            "lengthscale": r[2].exp(),
            "noise": r[3].exp() + 1e-6,
        }

    def closure():
        opt.zero_grad()
        p = unpack(raw)
        k = _se_kernel(p)(x, x) + p["noise"] * eye
        dist = torch.distributions.MultivariateNormal(p["mean"].expand_as(y), k)
        loss = -dist.log_prob(y).mean() / y.shape[1]
        loss.backward()
        return loss

    opt.step(closure)
    return {k: float(v) for k, v in unpack(raw.detach()).items()}


def gp_predict(kernel, mean: float, noise: float, xc, yc, xt) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean ``(n_t,)`` and covariance ``(n_t, n_t)`` of noisy values at
    ``xt (n_t, d)`` given ``xc (n_c, d)``, ``yc (n_c,)`` under a GP with constant ``mean``,
    ``kernel`` and noise variance ``noise`` (float64; 1-D inputs may be ``(n,)``)."""
    xt = xt.double().reshape(xt.shape[0], -1)
    xc = xc.double().reshape(-1, xt.shape[1])
    yc = yc.double().reshape(-1)
    ktt = kernel(xt, xt) + noise * torch.eye(xt.shape[0], dtype=torch.float64)
    if xc.shape[0] == 0:
        return torch.full((xt.shape[0],), mean, dtype=torch.float64), ktt
    kcc = kernel(xc, xc) + noise * torch.eye(xc.shape[0], dtype=torch.float64)
    kct = kernel(xc, xt)
    sol = torch.linalg.solve(kcc, kct)
    mu = mean + sol.T @ (yc - mean)
    cov = ktt - kct.T @ sol
    return mu, 0.5 * (cov + cov.T)


def w1_to_two_point_mixture(
    cdf: torch.Tensor, p_upper: torch.Tensor, noise_std: float, grid: torch.Tensor
) -> torch.Tensor:
    """Wasserstein-1 distance ``∫ |F(y) - G(y)| dy`` (trapezoid on ``grid (g,)``) between
    laws with CDFs ``cdf (j, g)`` and the mixtures ``(1 - p) N(0, σ²) + p N(1, σ²)``,
    ``p_upper (j,)``. Returns ``(j,)``."""
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), noise_std)
    mix = (1 - p_upper[:, None]) * normal.cdf(grid) + p_upper[:, None] * normal.cdf(grid - 1)
    return torch.trapezoid((cdf - mix).abs(), grid, dim=-1)


def empirical_cdf(draws: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """CDFs ``(j, g)`` of the draws ``(s, j)`` (one column per law) on ``grid (g,)``."""
    ordered = draws.double().T.sort(dim=1).values.contiguous()
    counts = torch.searchsorted(ordered, grid.expand(ordered.shape[0], -1).contiguous(), right=True)
    return counts.double() / ordered.shape[1]


def _eps(model, double: bool = False):
    import copy

    net = model.trainer_.ema.eval()
    if double:
        net = copy.deepcopy(net).double().eval()

    def eps(x, y, t, mask):
        return net(x, y, t.to(x.dtype), mask)

    return eps


def _ndp_draws(model, xc, yc, cm, xt, num: int, inner: int, generator) -> torch.Tensor:
    """``(num, b, n_t)`` RePaint draws at ``xt (b, n_t, 1)`` given padded contexts."""
    from bayesfn.processes.ndp.diffusion import repaint_sample

    dt = model.dtype
    b = xt.shape[0]
    rep = lambda t: t.expand(num, *t.shape).reshape(num * b, *t.shape[1:])  # noqa: E731
    xcs, ycs, xts = rep(xc.to(dt)), rep(yc.to(dt)), rep(xt.to(dt))
    cms = rep(cm) if cm is not None else None
    chunk = max(1, 1024 // b) * b
    out = []
    for lo in range(0, num * b, chunk):
        sl = slice(lo, lo + chunk)
        out.append(
            repaint_sample(
                _eps(model),
                model.schedule_,
                xcs[sl],
                ycs[sl],
                xts[sl],
                num_inner_steps=inner,
                context_mask=None if cms is None else cms[sl],
                generator=generator,
            )
        )
    return torch.cat(out).reshape(num, b, -1).double()


def mode_probability_by_ode(model, xc, yc, cm, xt, ode_steps: int) -> torch.Tensor:
    """The upper-mode probability that the model's own density implies at each target,
    one target at a time: ``p(y_c, y* = 1) / (p(y_c, y* = 0) + p(y_c, y* = 1))``, both
    by the probability-flow ODE (the mass ratio of two modes of equal width, as in the
    step process). ``xc (b, c, 1)``, ``yc (b, c, 1)``, ``cm (b, c)``, ``xt (b, n_t, 1)``
    -> ``(b, n_t)``."""
    from bayesfn.processes.ndp.diffusion import ode_log_prob

    b, n_t = xt.shape[:2]

    def rep(t: torch.Tensor) -> torch.Tensor:  # one copy per (target, y*) pair
        return t[:, None].expand(b, 2 * n_t, *t.shape[1:]).reshape(b * 2 * n_t, *t.shape[1:])

    xs = torch.cat([rep(xc), xt.repeat_interleave(2, 1).reshape(-1, 1, 1)], 1).double()
    ystar = torch.tensor([0.0, 1.0], dtype=torch.float64).repeat(b * n_t)[:, None, None]
    ys = torch.cat([rep(yc).double(), ystar], 1)
    mask = torch.cat([rep(cm), torch.ones(b * 2 * n_t, 1, dtype=torch.bool)], 1)
    eps64 = _eps(model, double=True)
    out = []
    for lo in range(0, xs.shape[0], 512):
        sl = slice(lo, lo + 512)
        out.append(
            ode_log_prob(eps64, model.schedule_, xs[sl], ys[sl], mask[sl], ode_steps=ode_steps)
        )
    logp = torch.cat(out).reshape(b, n_t, 2)
    return torch.softmax(logp, -1)[..., 1]


# the task of the figure: zeros left of -1, ones right of 1; the targets' grid holds 0, 0.5
FIGURE_CONTEXT = ([-1.5, -1.0, 1.0, 1.5], [0.0, 0.0, 1.0, 1.0])
FIGURE_POINTS = (0.0, 0.5)
_W1_GRID = torch.linspace(-3.0, 4.0, 3501, dtype=torch.float64)
_NONGAUSS_TASK_SEED = 3000


def _per_target_stats(draws: torch.Tensor, p_exact: torch.Tensor, noise: float) -> dict:
    """Upper-mode probability error and W1 to the exact predictive, per target, of draws
    ``(s, j)``; and the share of the draws within 0.25 of a mode (0 or 1)."""
    p_hat = (draws > 0.5).double().mean(0)
    w1 = w1_to_two_point_mixture(empirical_cdf(draws, _W1_GRID), p_exact, noise, _W1_GRID)
    near = ((draws.abs() < 0.25) | ((draws - 1).abs() < 0.25)).double().mean(0)
    return {"p_upper": p_hat, "abs_p_error": (p_hat - p_exact).abs(), "w1": w1, "near_mode": near}


def _gaussian_stats(mu: torch.Tensor, var: torch.Tensor, p_exact: torch.Tensor, noise: float):
    normal = torch.distributions.Normal(mu[:, None], var.sqrt()[:, None])
    cdf = normal.cdf(_W1_GRID)
    p_hat = 1 - torch.distributions.Normal(mu, var.sqrt()).cdf(torch.tensor(0.5))
    mass = lambda c: normal.cdf(torch.tensor(c + 0.25)) - normal.cdf(torch.tensor(c - 0.25))  # noqa: E731
    return {
        "p_upper": p_hat,
        "abs_p_error": (p_hat - p_exact).abs(),
        "w1": w1_to_two_point_mixture(cdf, p_exact, noise, _W1_GRID),
        "near_mode": (mass(0.0) + mass(1.0))[:, 0],
    }


def run_nongauss(cfg: dict[str, Any], seed: int, device: str, out: Path, *, progress_bar: bool):
    """Row group (d): the step-function NDP against the exact step posterior and two GPs.
    Returns ``(rows, details, figure_data)``."""
    from bayesfn.data import TaskSet, make_tasks, sample_functions
    from bayesfn.processes.ndp.diffusion import ode_log_prob

    noise = STEP_DATA["noise_std"]
    x_range = STEP_DATA["x_range"]
    model, fit = fit_ndp("step", STEP_DATA, cfg, seed, device, out, progress_bar=progress_bar)
    gen = torch.Generator().manual_seed(seed)
    # the two GPs: the step process's own mean and covariance, and an SE GP fitted by
    # type-II maximum likelihood on step draws (as many points as in training)
    pool = sample_functions(
        "step", cfg["num_gp_fit_functions"], cfg["num_points"][0], seed=seed + 7, **STEP_DATA
    )
    se = fit_se_gp(pool.x, pool.y)
    gps = {
        "GP with the step process's moments": (
            lambda a, b: step_moment_kernel(a, b, x_range),
            0.5,
            noise**2,
        ),
        "SE GP, type-II ML on step draws": (_se_kernel(se), se["mean"], se["noise"]),
    }
    # tasks saved once
    path = out / "tasks_step"
    if not path.exists():
        make_tasks(
            "step",
            cfg["num_tasks"],
            num_context=(1, 9),
            num_target=cfg["num_target"],
            seed=_NONGAUSS_TASK_SEED,
            **STEP_DATA,
        ).save(path)
    tasks = TaskSet.load(path)
    b = len(tasks)
    exact_p, exact_ll, gp_ll = [], [], {k: [] for k in gps}
    gp_mom: dict[str, list] = {k: [] for k in gps}
    for i in range(b):
        (xc, yc), (xt, yt) = tasks.task(i)
        lw, vals = step_posterior(xc, yc, xt, noise_std=noise, x_range=x_range)
        exact_p.append((lw.exp()[:, None] * vals).sum(0))
        exact_ll.append(step_log_prob(lw, vals, yt, noise) / xt.shape[0])
        for name, (kern, mean, nz) in gps.items():
            mu, cov = gp_predict(kern, mean, nz, xc, yc[:, 0], xt)
            gp_ll[name].append(
                torch.distributions.MultivariateNormal(mu, cov).log_prob(yt.double()[:, 0])
                / xt.shape[0]
            )
            gp_mom[name].append((mu, cov.diagonal()))
    p_exact = torch.stack(exact_p)  # (b, n_t)
    start = time.perf_counter()
    draws = _ndp_draws(
        model,
        tasks.x_context,
        tasks.y_context,
        tasks.context_mask,
        tasks.x_target,
        cfg["num_samples"],
        cfg["num_inner_steps"],
        gen,
    )  # (s, b, n_t)
    sample_seconds = time.perf_counter() - start
    s = cfg["num_samples"]
    flat_p = p_exact.reshape(-1)
    ambiguous = (flat_p > 0.1) & (flat_p < 0.9)
    # a perfect sampler with the same number of draws: the floor of the sample metrics
    upper = torch.rand(s, flat_p.numel(), generator=gen, dtype=torch.float64) < flat_p
    exact_draws = upper.double() + noise * torch.randn(
        s, flat_p.numel(), generator=gen, dtype=torch.float64
    )
    stats = {
        "NDP": _per_target_stats(draws.reshape(s, -1), flat_p, noise),
        f"exact posterior, {s} draws": _per_target_stats(exact_draws, flat_p, noise),
    }
    for name in gps:
        mu = torch.stack([m for m, _ in gp_mom[name]]).reshape(-1)
        var = torch.stack([v for _, v in gp_mom[name]]).reshape(-1)
        stats[name] = _gaussian_stats(mu, var, flat_p, noise)
    setting = "1d step functions"
    rows = []
    n_amb = int(ambiguous.sum())
    for name, st in stats.items():
        for key, label in (
            ("abs_p_error", "|P(y > 1/2) - exact|"),
            ("w1", "W1 to the exact predictive"),
            ("near_mode", "mass within 0.25 of a mode (exact ~1)"),
        ):
            if n_amb:
                rows.append(
                    _row(
                        f"{setting}, ambiguous targets ({n_amb})",
                        f"{label}, {name}",
                        st[key][ambiguous],
                    )
                )
            rows.append(_row(f"{setting}, all targets", f"{label}, {name}", st[key]))
    rows.append(_row(setting, "LL per target, exact step posterior", torch.stack(exact_ll)))
    for name in gps:
        rows.append(_row(setting, f"LL per target, {name}", torch.stack(gp_ll[name])))
    # exact likelihood of the NDP by the probability-flow ODE on the first tasks, beside
    # the exact posterior's of the same law blurred like the ODE's
    k = min(cfg["ode_tasks"], b)
    ode_seconds, ode_detail = 0.0, {}
    if k:
        start = time.perf_counter()
        eps64 = _eps(model, double=True)
        xc, yc, cm = tasks.x_context[:k], tasks.y_context[:k], tasks.context_mask[:k]
        xt, yt = tasks.x_target[:k], tasks.y_target[:k]
        n_t = xt.shape[1]
        joint = ode_log_prob(
            eps64,
            model.schedule_,
            torch.cat([xc, xt], 1).double(),
            torch.cat([yc, yt], 1).double(),
            torch.cat([cm, torch.ones(k, n_t, dtype=torch.bool)], 1),
            ode_steps=cfg["ode_steps"],
        )
        ctx = ode_log_prob(
            eps64, model.schedule_, xc.double(), yc.double(), cm, ode_steps=cfg["ode_steps"]
        )
        ode_seconds = time.perf_counter() - start
        a0 = float(model.schedule_.alpha_bars[0])
        blurred = math.sqrt(noise**2 + (1 - a0) / a0)
        exact_blur, exact_joint, counts = [], [], []
        for i in range(k):
            (xci, yci), (xti, yti) = tasks.task(i)
            lw, vals = step_posterior(xci, yci, xti, noise_std=blurred, x_range=x_range)
            exact_blur.append(step_log_prob(lw, vals, yti, blurred) / n_t)
            xj, yj = torch.cat([xci, xti]), torch.cat([yci, yti])
            evidence = step_posterior(
                xj, yj, xj[:0], noise_std=blurred, x_range=x_range, return_log_evidence=True
            )[2]
            exact_joint.append(evidence / xj.shape[0])
            counts.append(xj.shape[0])
        ode_cond = (joint - ctx) / n_t
        exact_blur_t = torch.stack(exact_blur)
        ode_joint = joint / torch.tensor(counts, dtype=torch.float64)
        what = f"first {k} tasks"
        rows += [
            _row(setting, f"LL per target, NDP exact (probability-flow ODE; {what})", ode_cond),
            _row(
                setting,
                f"LL per target, exact step posterior of the ODE's blurred law ({what})",
                exact_blur_t,
            ),
            _row(
                setting,
                f"LL per target, NDP ODE minus exact step posterior (paired; {what})",
                ode_cond - exact_blur_t,
            ),
            _row(
                setting,
                f"joint log density per value of context and targets, NDP ODE ({what})",
                ode_joint,
            ),
            _row(
                setting,
                f"joint log density per value of context and targets, exact blurred law ({what})",
                torch.stack(exact_joint),
            ),
        ]
        ode_detail = {
            "ode_conditional_per_task": ode_cond.tolist(),
            "exact_conditional_per_task": exact_blur_t.tolist(),
            "ode_joint_per_task": ode_joint.tolist(),
            "exact_joint_per_task": torch.stack(exact_joint).tolist(),
        }
    # RePaint is an approximate conditional sampler: on the first tasks, its upper-mode
    # probabilities with more resampling steps U, and the ones the model's own density
    # implies (ODE), against the exact ones
    kc = min(cfg["check_tasks"], b)
    check_detail: dict[str, Any] = {}
    if kc:
        start = time.perf_counter()
        sub = (tasks.x_context[:kc], tasks.y_context[:kc], tasks.context_mask[:kc])
        u = cfg["check_inner_steps"]
        more = _ndp_draws(model, *sub, tasks.x_target[:kc], cfg["check_samples"], u, gen)
        p_more = (more > 0.5).double().mean(0)
        p_density = mode_probability_by_ode(model, *sub, tasks.x_target[:kc], cfg["ode_steps"])
        pe = p_exact[:kc]
        amb = (pe > 0.1) & (pe < 0.9)
        p_base = stats["NDP"]["p_upper"].reshape(p_exact.shape)[:kc]
        where = f"{setting}, first {kc} tasks"
        for label, ph in (
            (f"NDP RePaint U = {cfg['num_inner_steps']}, {s} draws", p_base),
            (f"NDP RePaint U = {u}, {cfg['check_samples']} draws", p_more),
            ("NDP model density (ODE at y* = 0 and 1)", p_density),
        ):
            err = (ph - pe).abs()
            rows.append(_row(f"{where}, all targets", f"|P(y > 1/2) - exact|, {label}", err))
            if amb.any():
                rows.append(
                    _row(
                        f"{where}, ambiguous targets ({int(amb.sum())})",
                        f"|P(y > 1/2) - exact|, {label}",
                        err[amb],
                    )
                )
        check_detail = {
            "p_upper_repaint_more_steps": p_more.tolist(),
            "p_upper_model_density": p_density.tolist(),
            "seconds": round(time.perf_counter() - start, 1),
        }
    # the figure's task: a grid of targets holding FIGURE_POINTS
    fx = torch.tensor(FIGURE_CONTEXT[0], dtype=torch.float64)[:, None]
    fy = torch.tensor(FIGURE_CONTEXT[1], dtype=torch.float64)[:, None]
    fy = fy + noise * torch.randn(fy.shape, generator=gen, dtype=torch.float64)
    grid = torch.linspace(x_range[0], x_range[1], 49, dtype=torch.float64)[:, None]
    fig_draws = _ndp_draws(
        model,
        fx[None],
        fy[None],
        None,
        grid[None],
        cfg["num_samples_figure"],
        cfg["num_inner_steps"],
        gen,
    )[:, 0]  # (s, 49)
    lw, vals = step_posterior(fx, fy, grid, noise_std=noise, x_range=x_range)
    fig_p = (lw.exp()[:, None] * vals).sum(0)
    figure = {
        "x_context": fx[:, 0].tolist(),
        "y_context": fy[:, 0].tolist(),
        "grid": grid[:, 0].tolist(),
        "exact_p_upper": fig_p.tolist(),
        "points": {},
    }
    for point in FIGURE_POINTS:
        j = int((grid[:, 0] - point).abs().argmin())
        entry = {"exact_p_upper": float(fig_p[j]), "ndp_draws": fig_draws[:, j].tolist()}
        for name, (kern, mean, nz) in gps.items():
            mu, cov = gp_predict(kern, mean, nz, fx, fy[:, 0], grid[j : j + 1])
            entry[name] = {"mean": float(mu[0]), "std": float(cov[0, 0].sqrt())}
        ndp_p = float((fig_draws[:, j] > 0.5).double().mean())
        entry["ndp_p_upper"] = ndp_p
        figure["points"][str(point)] = entry
        rows.append(
            _row(
                f"{setting}, figure task, x* = {point}",
                "P(y > 1/2), NDP",
                (fig_draws[:, j] > 0.5).double(),
            )
        )
        rows.append(
            result_row(
                f"{setting}, figure task, x* = {point}", "P(y > 1/2), exact", float(fig_p[j])
            )
        )
    figure["ndp_paths"] = fig_draws[:12].tolist()
    figure["ndp_p_upper"] = (fig_draws > 0.5).double().mean(0).tolist()
    # the left end, where the context fixes f = 0: draws that ignore the context
    rows.append(
        _row(
            f"{setting}, figure task, x* = {x_range[0]} (exact P = {float(fig_p[0]):.3f})",
            "P(y > 1/2), NDP",
            (fig_draws[:, 0] > 0.5).double(),
        )
    )
    # the learned prior: a step switches between 0 and 1 once on a grid spanning x_range
    from bayesfn.processes.ndp.diffusion import ancestral_sample

    prior = ancestral_sample(
        _eps(model),
        model.schedule_,
        grid[None].expand(cfg["num_samples"], -1, -1).to(model.dtype),
        output_dim=1,
        generator=gen,
    )[..., 0]
    switches = (prior > 0.5).double().diff(dim=1).abs().sum(1)
    rows.append(
        _row(
            f"{setting}, prior draws on the 49-point grid",
            "0/1 switches per draw, NDP (step process: 1)",
            switches,
        )
    )
    details = {
        "fit": fit,
        "se_gp_hyperparameters": se,
        "num_tasks": b,
        "num_targets": int(flat_p.numel()),
        "num_ambiguous_targets": n_amb,
        "sample_seconds": round(sample_seconds, 1),
        "ode_seconds": round(ode_seconds, 1),
        "ode": ode_detail,
        "sampler_check": check_detail,
        "p_upper_exact_per_target": p_exact.tolist(),
        "p_upper_ndp_per_target": stats["NDP"]["p_upper"].reshape(p_exact.shape).tolist(),
        "figure": figure,
    }
    return rows, details


# ------------------------------------- (d) diagnosis: the sampler or the model?

DIAGNOSIS: dict[str, dict[str, Any]] = {
    # tasks: the first saved step tasks used for the sampler checks; draws: per task and
    # sampler (repaint_u: U values; the largest U gets draws_large_u); smc: particles per
    # run and independent runs pooled; ode_steps: of the oracle's ODE check; set_sizes:
    # of the learned model's density check on fresh prior draws (sets per size)
    "smoke": {
        "tasks": 1,
        "draws": 8,
        "repaint_u": [1, 2],
        "draws_large_u": 8,
        "smc_particles": 8,
        "smc_runs": 2,
        "figure_draws": 8,
        "ode_tasks": 1,
        "ode_steps": [2, 4],
        "model_ode_steps": [2],
        "set_sizes": [1, 3],
        "sets_per_size": 2,
    },
    "cpu": {
        "tasks": 4,
        "draws": 128,
        "repaint_u": [1, 4, 16],
        "draws_large_u": 64,
        "smc_particles": 128,
        "smc_runs": 4,
        "figure_draws": 512,
        "ode_tasks": 4,
        "ode_steps": [12, 50, 200],
        "model_ode_steps": [12, 50],
        "set_sizes": [1, 3, 9, 27, 55],
        "sets_per_size": 16,
    },
}


def _smc_draws(eps_fn, schedule, xc, yc, cm, xt, particles: int, runs: int, generator):
    """``(runs · particles, b, n_t)`` draws of ``runs`` independent SMC runs pooled."""
    from bayesfn.processes.ndp.diffusion import smc_sample

    rep = lambda t: t.repeat(runs, *([1] * (t.dim() - 1))) if t is not None else None  # noqa: E731
    b = xt.shape[0]
    d = smc_sample(
        eps_fn,
        schedule,
        rep(xc),
        rep(yc),
        rep(xt),
        num_particles=particles,
        context_mask=rep(cm),
        generator=generator,
    )[..., 0]  # (K, runs b, n_t)
    k = d.shape[0]
    return d.reshape(k, runs, b, -1).transpose(0, 1).reshape(runs * k, b, -1).double()


def _repaint_draws(eps_fn, schedule, xc, yc, cm, xt, num: int, inner: int, generator):
    from bayesfn.processes.ndp.diffusion import repaint_sample

    b = xt.shape[0]
    rep = lambda t: t.expand(num, *t.shape).reshape(num * b, *t.shape[1:])  # noqa: E731
    d = repaint_sample(
        eps_fn,
        schedule,
        rep(xc),
        rep(yc),
        rep(xt),
        num_inner_steps=inner,
        context_mask=None if cm is None else rep(cm),
        generator=generator,
    )
    return d.reshape(num, b, -1).double()


def _exact_evidence(xc, yc, noise_std: float) -> torch.Tensor:
    """``log p(y_c)`` of the step process with observation noise ``noise_std``."""
    x = torch.as_tensor(xc, dtype=torch.float64).reshape(-1)
    return step_posterior(
        x, yc, x[:0], noise_std=noise_std, x_range=STEP_DATA["x_range"], return_log_evidence=True
    )[2]


def diagnose_nongauss(
    model, tasks, settings: dict[str, Any], *, seed: int = 0, progress_bar: bool = False
) -> dict[str, Any]:
    """Row group (d) diagnosis: are the NDP's loose conditionals on step functions the
    sampler's fault or the model's? Everything is checked against the exact step law,
    with the exact noise model :class:`StepOracle` in place of the network and with the
    learned one (``model``, a fitted step NDP; ``tasks``, the saved step tasks).

    * samplers on the first ``settings["tasks"]`` tasks and the figure task: RePaint at
      each ``U`` of ``repaint_u`` and SMC (:func:`~bayesfn.processes.ndp.diffusion.
      smc_sample`, ``smc_runs`` runs of ``smc_particles`` pooled), with the oracle and
      with the NDP: ``|P(y > 1/2) - exact|`` and W1 to the exact predictive, per target;
      prior draws' 0/1 switches with the oracle;
    * the probability-flow ODE with the oracle against the exact blurred density, joint
      and context-only, at each of ``ode_steps``, with the default N(0, I) and with the
      exact terminal law;
    * the NDP's context-only ``log p(y_c)`` against the exact one per task, and its
      density of fresh prior sets of each size in ``set_sizes`` against the exact one.

    Returns ``{"rows": [...], "details": {...}}`` (rows as in ``results.json``, each
    with ``seeds = [seed]``).
    """
    from bayesfn.data import sample_functions
    from bayesfn.processes.ndp.diffusion import ancestral_sample, ode_log_prob

    noise, x_range = STEP_DATA["noise_std"], STEP_DATA["x_range"]
    sched = model.schedule_
    oracle = StepOracle(sched, noise, x_range)
    gen = torch.Generator().manual_seed(seed)
    cfg = settings
    rows: list[dict] = []
    details: dict[str, Any] = {"settings": cfg, "seconds": {}}
    k = min(cfg["tasks"], len(tasks))
    xc, yc = tasks.x_context[:k].double(), tasks.y_context[:k].double()
    cm, xt = tasks.context_mask[:k], tasks.x_target[:k].double()
    p_exact = []
    for i in range(k):
        (a, b_), (c, _) = tasks.task(i)
        lw, vals = step_posterior(a, b_, c, noise_std=noise, x_range=x_range)
        p_exact.append((lw.exp()[:, None] * vals).sum(0))
    pe = torch.stack(p_exact).reshape(-1)
    amb = (pe > 0.1) & (pe < 0.9)
    setting = (
        f"1d step functions, first {k} tasks ({pe.numel()} targets, {int(amb.sum())} ambiguous)"
    )
    # the figure task with a fixed noisy context
    fx = torch.tensor(FIGURE_CONTEXT[0], dtype=torch.float64)[None, :, None]
    fy = torch.tensor(FIGURE_CONTEXT[1], dtype=torch.float64)[None, :, None]
    fy = fy + noise * torch.randn(fy.shape, generator=gen, dtype=torch.float64)
    grid = torch.linspace(x_range[0], x_range[1], 49, dtype=torch.float64)[None, :, None]
    lw, vals = step_posterior(fx[0], fy[0], grid[0], noise_std=noise, x_range=x_range)
    fig_exact = (lw.exp()[:, None] * vals).sum(0)
    fig_at = {str(p): int((grid[0, :, 0] - p).abs().argmin()) for p in (x_range[0], *FIGURE_POINTS)}
    details["figure_exact_p_upper"] = {p: float(fig_exact[j]) for p, j in fig_at.items()}
    eps_ndp = _eps(model)
    dt = model.dtype
    samplers = []
    for u in cfg["repaint_u"]:
        num = cfg["draws_large_u"] if u == max(cfg["repaint_u"]) else cfg["draws"]
        samplers.append((f"RePaint U = {u}, {num} draws", "repaint", u, num))
    pooled = cfg["smc_runs"] * cfg["smc_particles"]
    samplers.append(
        (
            f"SMC, {cfg['smc_runs']} runs x {cfg['smc_particles']} particles",
            "smc",
            None,
            pooled,
        )
    )
    for who, eps_fn, cast in (("oracle", oracle, torch.float64), ("NDP", eps_ndp, dt)):
        if who == "NDP":
            # RePaint at the smallest U only (run_nongauss has the rest)
            samplers = [s for s in samplers if s[2] in (None, min(cfg["repaint_u"]))]
        for label, kind, u, num in samplers:
            start = time.perf_counter()
            args = (xc.to(cast), yc.to(cast), cm, xt.to(cast))
            fargs = (fx.to(cast), fy.to(cast), None, grid.to(cast))
            if kind == "repaint":
                d = _repaint_draws(eps_fn, sched, *args, num, u, gen)
                fd = _repaint_draws(eps_fn, sched, *fargs, cfg["figure_draws"], u, gen)
            else:
                d = _smc_draws(eps_fn, sched, *args, cfg["smc_particles"], cfg["smc_runs"], gen)
                runs = max(1, cfg["figure_draws"] // cfg["smc_particles"])
                fd = _smc_draws(eps_fn, sched, *fargs, cfg["smc_particles"], runs, gen)
            st = _per_target_stats(d.reshape(d.shape[0], -1), pe, noise)
            name = f"{label}, {who} noise model"
            for key, what in (("abs_p_error", "|P(y > 1/2) - exact|"), ("w1", "W1 to exact")):
                rows.append(_row(f"{setting}, all targets", f"{what}, {name}", st[key]))
                if amb.any():
                    rows.append(_row(f"{setting}, ambiguous", f"{what}, {name}", st[key][amb]))
            if amb.any():
                rows.append(
                    _row(
                        f"{setting}, ambiguous",
                        f"P(y > 1/2) - exact (signed), {name}",
                        (st["p_upper"] - pe)[amb],
                    )
                )
            for p, j in fig_at.items():
                rows.append(
                    _row(
                        f"1d step functions, figure task, x* = {p} "
                        f"(exact P = {float(fig_exact[j]):.3f})",
                        f"P(y > 1/2), {name}",
                        (fd[:, 0, j] > 0.5).double(),
                    )
                )
            details["seconds"][name] = round(time.perf_counter() - start, 1)
            logger.info("diagnosis %s: %.1f s", name, details["seconds"][name])
    # the prior with the oracle: a step switches once on a grid spanning x_range
    prior = ancestral_sample(
        oracle, sched, grid.expand(cfg["draws"], -1, -1).clone(), generator=gen
    )[..., 0]
    switches = (prior > 0.5).double().diff(dim=1).abs().sum(1)
    rows.append(
        _row(
            "1d step functions, prior draws on the 49-point grid",
            "0/1 switches per draw, oracle ancestral sampling (step process: 1)",
            switches,
        )
    )
    rows.append(
        _row(
            "1d step functions, prior draws on the 49-point grid",
            "share increasing (w = +1), oracle ancestral sampling (exact: 0.5)",
            (prior[:, -1] > 0.5).double(),
        )
    )
    # the ODE with the oracle against the exact blurred law, joint and context-only
    a0 = float(sched.alpha_bars[0])
    blurred = math.sqrt(noise**2 + (1 - a0) / a0)
    a_end = float(sched.alpha_bars[-1])
    ko = min(cfg["ode_tasks"], len(tasks))
    oc, ocy, ocm = (
        tasks.x_context[:ko].double(),
        tasks.y_context[:ko].double(),
        tasks.context_mask[:ko],
    )
    ot, oty = tasks.x_target[:ko].double(), tasks.y_target[:ko].double()
    oj, ojy = torch.cat([oc, ot], 1), torch.cat([ocy, oty], 1)
    ojm = torch.cat([ocm, torch.ones(ko, ot.shape[1], dtype=torch.bool)], 1)
    ex_ctx, ex_joint = [], []
    for i in range(ko):
        (a, b_), (c, d_) = tasks.task(i)
        ex_ctx.append(_exact_evidence(a, b_, blurred))
        ex_joint.append(_exact_evidence(torch.cat([a, c]), torch.cat([b_, d_]), blurred))
    ex_ctx, ex_joint = torch.stack(ex_ctx), torch.stack(ex_joint)
    n_t = ot.shape[1]
    ode_setting = f"1d step functions, ODE with the oracle, first {ko} tasks"
    for steps in cfg["ode_steps"]:
        for terminal in ("N(0, I)", "exact"):

            def end(x, mask, terminal=terminal):
                if terminal != "exact":
                    return None
                abar = torch.full((x.shape[0],), a_end, dtype=torch.float64)
                return lambda s: oracle.log_prob(x, s, abar, mask)

            start = time.perf_counter()
            c_ = ode_log_prob(
                oracle, sched, oc, ocy, ocm, ode_steps=steps, terminal_log_prob=end(oc, ocm)
            )
            j_ = ode_log_prob(
                oracle, sched, oj, ojy, ojm, ode_steps=steps, terminal_log_prob=end(oj, ojm)
            )
            what = f"{steps} RK4 steps, terminal {terminal}"
            rows += [
                _row(
                    ode_setting,
                    f"joint log density minus exact (nats per set), {what}",
                    j_ - ex_joint,
                ),
                _row(
                    ode_setting,
                    f"context log density minus exact (nats per set), {what}",
                    c_ - ex_ctx,
                ),
                _row(
                    ode_setting,
                    f"conditional LL per target minus exact, {what}",
                    ((j_ - c_) - (ex_joint - ex_ctx)) / n_t,
                ),
            ]
            details["seconds"][f"oracle ODE {what}"] = round(time.perf_counter() - start, 1)
    # the learned model's density of small sets: the saved contexts, then fresh prior sets
    eps64 = _eps(model, double=True)
    kall = len(tasks)
    ac, acy, acm = tasks.x_context.double(), tasks.y_context.double(), tasks.context_mask
    ex_all = torch.stack([_exact_evidence(*tasks.task(i)[0], blurred) for i in range(kall)])
    sizes_ctx = acm.sum(1)
    per_task: dict[str, Any] = {"context_size": sizes_ctx.tolist(), "exact": ex_all.tolist()}
    for steps in cfg["model_ode_steps"]:
        start = time.perf_counter()
        got = ode_log_prob(eps64, sched, ac, acy, acm, ode_steps=steps)
        per_task[f"ndp_{steps}_steps"] = got.tolist()
        rows.append(
            _row(
                f"1d step functions, saved contexts ({kall} tasks, 1-9 points)",
                f"NDP context log density minus exact (nats per set), ODE {steps} steps",
                got - ex_all,
            )
        )
        details["seconds"][f"NDP context ODE {steps} steps"] = round(time.perf_counter() - start, 1)
    details["context_density_per_task"] = per_task
    steps = cfg["model_ode_steps"][0]
    by_size = {}
    for size in cfg["set_sizes"]:
        start = time.perf_counter()
        sets = sample_functions(
            "step",
            cfg["sets_per_size"],
            size,
            seed=seed + 5000 + size,
            dtype=torch.float64,
            **STEP_DATA,
        )
        got = ode_log_prob(eps64, sched, sets.x, sets.y, ode_steps=steps)
        ex = torch.stack(
            [_exact_evidence(sets.x[i], sets.y[i], blurred) for i in range(sets.x.shape[0])]
        )
        by_size[str(size)] = {"ndp": got.tolist(), "exact": ex.tolist()}
        rows.append(
            _row(
                f"1d step functions, fresh prior sets of {size} points "
                f"({cfg['sets_per_size']} sets)",
                f"NDP log density minus exact, per point, ODE {steps} steps",
                (got - ex) / size,
            )
        )
        details["seconds"][f"NDP prior sets of {size}"] = round(time.perf_counter() - start, 1)
    details["density_by_set_size"] = by_size
    return {"rows": [{**r, "seeds": [seed]} for r in rows], "details": details}


def _row(setting: str, metric: str, values: torch.Tensor) -> dict:
    v = values.to(torch.float64).reshape(-1)
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else 0.0
    return result_row(setting, metric, float(v.mean()), ours_std=se)


# --------------------------------------------- (e) Thompson-sampling optimisation

_THOMPSON_SEED = 4000
METHODS = ("NDP", "GP (true kernel)", "random search")


def se_data(dim: int) -> dict[str, Any]:
    """The SE family of the NDP benchmark in ``dim`` input dimensions (lengthscale
    ``0.25 sqrt(dim)``), as :func:`~bayesfn.data.sample_functions` arguments."""
    return {**SE_DATA, "lengthscale": SE_DATA["lengthscale"] * math.sqrt(dim), "input_dim": dim}


def _se_model(
    cfg: dict[str, Any], dim: int, seed: int, device: str, out: Path, *, progress_bar: bool
):
    """The NDP of SE draws in ``dim`` dimensions: loaded from
    ``cfg["thompson"][str(dim)]["ndp_model"]`` (a model saved by ``bayesfn reproduce
    ndp`` / ``ndp_multidim``), or for ``None`` fitted here with ``cfg``."""
    from bayesfn.processes import NeuralDiffusionProcess

    where = cfg["thompson"][str(dim)]["ndp_model"]
    if where is None:
        return fit_ndp(
            "se", se_data(dim), cfg, seed, device, out, progress_bar=progress_bar, name=f"se-{dim}"
        )
    path = Path(where)
    fit_path = path.parent / f"{path.name}_fit.json"
    info = json.loads(fit_path.read_text()) if fit_path.exists() else {}
    info["path"] = str(path)
    model = NeuralDiffusionProcess.load(path)
    if model.input_dim_ != dim:
        raise ValueError(f"{path} models {model.input_dim_}-D inputs, not {dim}-D")
    return model, info


def thompson_sampling(
    f: torch.Tensor,
    grid: torch.Tensor,
    draw,
    num_queries: int,
    first: torch.Tensor,
    noise_std: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the functions ``f (b, g)`` on the candidate inputs ``grid (g, d)`` by
    Thompson sampling: query ``first (b,)`` (grid indices), then at each step the argmin
    of ``draw(x_obs (b, k, d), y_obs (b, k, 1), generator) -> (b, g)``, one conditional
    draw per function given the ``k`` noisy observations ``f + noise_std ε`` so far.

    Returns ``(queries (b, q), simple_regret (b, q))`` with ``simple_regret[:, k] =
    min_{i <= k} f(x_i) - min f``.
    """
    grid = grid.reshape(grid.shape[0], -1)
    b = f.shape[0]
    rows = torch.arange(b)

    def observe(index: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(b, generator=generator, dtype=f.dtype)
        return (f[rows, index] + noise_std * eps)[:, None, None]

    queries = [first]
    x_obs, y_obs = grid[first][:, None, :], observe(first)
    for _ in range(num_queries - 1):
        nxt = draw(x_obs, y_obs, generator).argmin(1)
        queries.append(nxt)
        x_obs = torch.cat([x_obs, grid[nxt][:, None, :]], 1)
        y_obs = torch.cat([y_obs, observe(nxt)], 1)
    q = torch.stack(queries, 1)
    best = f.gather(1, q).cummin(1).values
    return q, best - f.min(1, keepdim=True).values


def _gp_thompson_draw(grid: torch.Tensor, data: dict[str, Any]):
    """One draw of the latent function on ``grid (g, d)`` from the exact GP posterior
    (the true SE kernel and noise of ``data``), per function."""
    kernel = _se_kernel(
        {
            "variance": torch.tensor(data["variance"]),
            "lengthscale": torch.tensor(data["lengthscale"]),
        }
    )
    noise = data["noise_std"] ** 2
    xt = grid.double()
    eye = torch.eye(xt.shape[0], dtype=torch.float64)

    def draw(x_obs, y_obs, generator):
        out = []
        for xc, yc in zip(x_obs, y_obs, strict=True):
            mu, cov = gp_predict(kernel, 0.0, noise, xc, yc[:, 0], xt)
            cov = cov - noise * eye  # of the latent f
            factor = torch.linalg.cholesky(0.5 * (cov + cov.T) + 1e-8 * eye)
            z = torch.randn(xt.shape[0], generator=generator, dtype=torch.float64)
            out.append(mu + factor @ z)
        return torch.stack(out)

    return draw


def _ndp_thompson_draw(model, grid: torch.Tensor, inner: int):
    def draw(x_obs, y_obs, generator):
        xt = grid.double()[None].expand(x_obs.shape[0], -1, -1)
        return _ndp_draws(model, x_obs, y_obs, None, xt, 1, inner, generator)[0]

    return draw


def candidate_grid(dim: int, side: int, box: tuple[float, float] | None = None) -> torch.Tensor:
    """The ``(side ** dim, dim)`` regular grid of candidates on ``box ** dim`` (default
    ``SE_DATA["x_range"]``)."""
    lo, hi = SE_DATA["x_range"] if box is None else box
    axis = torch.linspace(lo, hi, side, dtype=torch.float64)
    return torch.cartesian_prod(*([axis] * dim)).reshape(-1, dim)


def run_thompson(
    cfg: dict[str, Any], dim: int, seed: int, device: str, out: Path, *, progress_bar: bool
):
    """Row group (e) in ``dim`` dimensions: regret of NDP, exact-GP and random-search
    Thompson sampling on SE draws. Returns ``(rows, details)``."""
    from bayesfn.data import sample_functions

    setup = cfg["thompson"][str(dim)]
    model, fit = _se_model(cfg, dim, seed, device, out, progress_bar=progress_bar)
    data = se_data(dim)
    grid = candidate_grid(dim, setup["grid_side"], setup.get("box"))
    g, nf, nq = grid.shape[0], cfg["ts_functions"], setup["queries"]
    fseed = _THOMPSON_SEED + 100 * dim + seed
    f = sample_functions(
        "se",
        nf,
        g,
        x=grid,
        input_dim=dim,
        lengthscale=data["lengthscale"],
        variance=data["variance"],
        noise_std=0.0,
        seed=fseed,
        dtype=torch.float64,
    ).f[..., 0]
    first = torch.randint(g, (nf,), generator=torch.Generator().manual_seed(fseed + 1))

    def random_draw(x_obs, y_obs, generator):
        return torch.rand(x_obs.shape[0], g, generator=generator, dtype=torch.float64)

    draws = {
        "NDP": _ndp_thompson_draw(model, grid, cfg["ts_inner_steps"] or cfg["num_inner_steps"]),
        "GP (true kernel)": _gp_thompson_draw(grid, data),
        "random search": random_draw,
    }
    regret, queries, seconds = {}, {}, {}
    for name in METHODS:
        start = time.perf_counter()
        q, r = thompson_sampling(
            f,
            grid,
            draws[name],
            nq,
            first,
            data["noise_std"],
            torch.Generator().manual_seed(fseed + 2),
        )
        seconds[name] = round(time.perf_counter() - start, 1)
        regret[name], queries[name] = r, q
        logger.info("thompson %dd %s: final regret %.3f", dim, name, float(r[:, -1].mean()))
    setting = f"{dim}d Thompson sampling, SE GP draws ({nf} functions, {g}-point grid)"
    rows = []
    steps = sorted({1, min(5, nq), min(10, nq), nq})
    for name in METHODS:
        for k in steps:
            rows.append(
                _row(setting, f"simple regret after {k} queries, {name}", regret[name][:, k - 1])
            )
        rows.append(
            _row(setting, f"mean simple regret over queries 1-{nq}, {name}", regret[name].mean(1))
        )
        rows.append(
            _row(
                setting,
                f"share with the grid minimum found by query {nq}, {name}",
                (regret[name][:, -1] <= 0).double(),
            )
        )
    # the methods ran on the same functions from the same first query: paired differences
    for name in METHODS[1:]:
        rows.append(
            _row(
                setting,
                f"mean simple regret over queries 1-{nq}, NDP minus {name} (paired)",
                regret["NDP"].mean(1) - regret[name].mean(1),
            )
        )
    details = {
        "dim": dim,
        "fit": fit,
        "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()},
        "grid_side": setup["grid_side"],
        "box": list(setup.get("box") or SE_DATA["x_range"]),
        "first_query": first.tolist(),
        "regret": {k: v.tolist() for k, v in regret.items()},
        "queries": {k: v.tolist() for k, v in queries.items()},
        "seconds": seconds,
    }
    return rows, details


# ------------------------------------------------------------------- plots


def plot_nongauss(figure: dict[str, Any], path: Path) -> None:
    """Conditional NDP paths on the figure task, and at each of ``FIGURE_POINTS`` the
    histogram of NDP draws beside the exact predictive density and the two GPs'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noise = STEP_DATA["noise_std"]
    points = figure["points"]
    fig, axes = plt.subplots(1, 1 + len(points), figsize=(5 + 4.5 * len(points), 3.8))
    ax = axes[0]
    grid = torch.tensor(figure["grid"])
    for path_ in figure["ndp_paths"]:
        ax.plot(grid, path_, color="C0", alpha=0.5, lw=1)
    ax.plot(grid, figure["exact_p_upper"], color="k", lw=2, label="exact P(f = 1)")
    ax.scatter(figure["x_context"], figure["y_context"], color="C3", zorder=3, label="context")
    for point in points:
        ax.axvline(float(point), color="grey", ls=":", lw=1)
    ax.set(xlabel="x", ylabel="y", title="NDP conditional draws (step prior)")
    ax.legend(fontsize=8, loc="upper left")
    y = torch.linspace(-1.0, 2.0, 1201, dtype=torch.float64)
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), noise)
    for ax, (point, entry) in zip(axes[1:], points.items(), strict=True):
        p = entry["exact_p_upper"]
        ax.hist(
            entry["ndp_draws"],
            bins=60,
            range=(-1.0, 2.0),
            density=True,
            color="C0",
            alpha=0.6,
            label=f"NDP draws (P(y>1/2) = {entry['ndp_p_upper']:.2f})",
        )
        exact = (1 - p) * normal.log_prob(y).exp() + p * normal.log_prob(y - 1).exp()
        ax.plot(y, exact, color="k", lw=1.5, label=f"exact (P(y>1/2) = {p:.2f})")
        for color, name in (
            ("C1", "GP with the step process's moments"),
            ("C2", "SE GP, type-II ML on step draws"),
        ):
            g = entry[name]
            dens = torch.distributions.Normal(g["mean"], g["std"]).log_prob(y).exp()
            ax.plot(y, dens, color=color, lw=1.5, label=name)
        ax.set(
            xlabel=f"y at x* = {point}",
            ylabel="density",
            ylim=(0, 6),
            title=f"predictive at x* = {point}",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_thompson(details: dict[str, Any], path: Path) -> None:
    """Simple regret against the number of queries, mean ± standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for color, name in zip(("C0", "C1", "C2"), METHODS, strict=True):
        r = torch.tensor(details["regret"][name])
        mean, se = r.mean(0), r.std(0) / math.sqrt(r.shape[0])
        k = torch.arange(1, r.shape[1] + 1)
        ax.plot(k, mean, color=color, label=name)
        ax.fill_between(k, mean - se, mean + se, color=color, alpha=0.2)
    ax.set(
        xlabel="queries",
        ylabel="simple regret",
        title=f"Thompson sampling, {details['dim']}-D SE draws "
        f"({len(details['first_query'])} functions)",
    )
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------- run


def run(
    *,
    scale: str,
    seeds: list[int],
    device: str,
    out: str | Path,
    groups: tuple[str, ...] | list[str] = GROUPS,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run row groups (d) ``"nongauss"`` and/or (e) ``"thompson"`` at ``scale`` and
    return the ``results.json`` payload; plots go to ``out``
    (``ndp_nongauss_seed<seed>.png``, ``ndp_thompson_regret_<d>d_seed<seed>.png``).

    Args:
        scale: ``"smoke"``, ``"cpu"`` or ``"full"`` (module docstring).
        seeds: one step-NDP fit and one set of Thompson test functions per seed.
        device: torch device of the networks.
        out: folder of the saved step tasks (``tasks_step``), the fitted models
            (``model_step_seed<seed>``; ``model_se-<d>_seed<seed>`` where ``ndp_model`` is
            None; reloaded when their settings match) and plots.
        groups: which row groups to run.
        overrides: replaces entries of the preset (``num_samples``, ``num_tasks``,
            ``ts_dims``, ``ts_functions``, ``ts_inner_steps``, ``thompson`` (per dimension:
            ``ndp_model``, ``grid_side``, ``queries``), ...; not ``model``).
    """
    cfg = _check(scale, list(seeds), groups)
    for key, value in (overrides or {}).items():
        if key not in cfg or key == "model":
            raise ValueError(
                f"overrides may set {sorted(k for k in cfg if k != 'model')}; got {key!r}"
            )
        cfg[key] = value
    if "thompson" in groups:
        dims = cfg["ts_dims"]
        if not dims or any(str(d) not in cfg["thompson"] for d in dims):
            raise ValueError(f"ts_dims must be a non-empty subset of [1, 2]; got {dims!r}")
        for d in dims:
            where = cfg["thompson"][str(d)]["ndp_model"]
            if where is not None and not Path(where).exists():
                raise ValueError(
                    f"the {d}-D SE model {where} (ndp_model of thompson) is missing: run "
                    "`bayesfn reproduce ndp` / `ndp_multidim` first, or set ts_dims"
                )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    bar = scale != "smoke"
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for seed in seeds:
        tag = f"seed {seed}"
        if "nongauss" in groups:
            start = time.perf_counter()
            found, detail = run_nongauss(cfg, seed, device, out, progress_bar=bar)
            detail["seconds"] = round(time.perf_counter() - start, 1)
            rows += [{**r, "seeds": [seed]} for r in found]
            details.setdefault("nongauss", {})[tag] = detail
            plot_nongauss(detail["figure"], out / f"ndp_nongauss_seed{seed}.png")
        if "thompson" in groups:
            for dim in cfg["ts_dims"]:
                start = time.perf_counter()
                found, detail = run_thompson(cfg, dim, seed, device, out, progress_bar=bar)
                detail["seconds_total"] = round(time.perf_counter() - start, 1)
                rows += [{**r, "seeds": [seed]} for r in found]
                details.setdefault("thompson", {})[f"{dim}d {tag}"] = detail
                plot_thompson(detail, out / f"ndp_thompson_regret_{dim}d_seed{seed}.png")
    return make_results(
        PAPER,
        scale,
        list(seeds),
        rows,
        settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        groups=list(groups),
        data={
            "step": {k: (list(v) if isinstance(v, tuple) else v) for k, v in STEP_DATA.items()},
            "se": {k: (list(v) if isinstance(v, tuple) else v) for k, v in SE_DATA.items()},
        },
        details=details,
        notes=[
            "ours_std is the standard error over targets, tasks or test functions (per row).",
            "No published numbers: the paper shows these experiments as figures; the "
            "references are the exact step posterior and the exact GP sampler.",
            "Ambiguous targets: exact P(f = 1) in (0.1, 0.9).",
            "The 'exact posterior, S draws' rows are a perfect sampler's sample metrics, "
            "the floor that S draws allow.",
        ],
        seconds=round(time.perf_counter() - begin, 1),
    )
