"""The diffusion of neural diffusion processes: schedule, training loss, ancestral, RePaint
and SMC sampling, and likelihoods (probability-flow ODE and moment matching).

Everything here takes the noise model as a plain callable
``eps_fn(x, y_t, t, mask) -> eps`` with ``x (b, n, d)``, ``y_t (b, n, m)``, ``t (b,)``
(integer levels ``0 .. T-1``; fractional times between them for the ODE) and ``mask
(b, n)`` bool (True at real points) or ``None``, so that the samplers and the likelihood
can be checked with an exact (oracle) noise model for Gaussian data, without a network.

Forward process (DDPM, on the function values only; inputs are never noised):
``q(y_t | y) = N(sqrt(abar_t) y, (1 - abar_t) I)``, ``abar_t = prod_{s <= t} (1 - beta_s)``,
``t = 0 .. T-1``. The reverse step with ``sigma_t^2 = beta_t`` is

    y_{t-1} = (y_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(1 - beta_t) + sqrt(beta_t) z,

``z = 0`` at ``t = 0`` (its output is the clean value).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "EpsFn",
    "Schedule",
    "ancestral_sample",
    "diffusion_loss",
    "moment_matched_log_prob",
    "ode_log_prob",
    "repaint_sample",
    "smc_sample",
    "stratified_times",
]

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class Schedule:
    """The NDP noise schedule: a cosine schedule whose betas are min-max rescaled to
    ``[beta_start, beta_end]``.

    With ``f(s) = cos^2((s / T + 0.008) / 1.008 * pi / 2)``, ``s = 0 .. T``, the raw betas
    are ``clip(1 - f(s + 1) / f(s), 1e-4, 0.9999)``; they are then mapped linearly so that
    their minimum is ``beta_start`` and their maximum ``beta_end`` (the official
    ``cosine_schedule``; unlike Nichol & Dhariwal's, the last beta is 0.5). Quantities are
    float64 tensors of length ``T``.

    Continuous times (for the probability-flow ODE) interpolate the log signal-to-noise
    ratio ``rho_t = log(abar_t / (1 - abar_t))`` linearly between the integer levels.

    Args:
        num_steps: ``T`` (the paper: 500).
        beta_start: the range of the rescaled betas (the paper: 3e-4 and 0.5).
        beta_end: as ``beta_start`` (described together above).
    """

    def __init__(
        self, num_steps: int = 500, beta_start: float = 3e-4, beta_end: float = 0.5
    ) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ValueError(f"num_steps must be an int >= 2; got {num_steps!r}")
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(
                f"need 0 < beta_start < beta_end < 1; got beta_start={beta_start!r}, "
                f"beta_end={beta_end!r}"
            )
        self.num_steps = num_steps
        s = torch.arange(num_steps + 1, dtype=torch.float64)
        f = torch.cos((s / num_steps + 0.008) / 1.008 * math.pi / 2) ** 2
        raw = (1 - f[1:] / f[:-1]).clamp(1e-4, 0.9999)
        self.betas = beta_start + (beta_end - beta_start) * (raw - raw.min()) / (
            raw.max() - raw.min()
        )
        self.alphas = 1 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        self.log_snr = torch.log(self.alpha_bars) - torch.log1p(-self.alpha_bars)

    def log_snr_at(self, t: torch.Tensor) -> torch.Tensor:
        """``rho(t)`` at continuous times ``t`` in ``[0, T - 1]`` (float64)."""
        t = t.to(torch.float64).clamp(0, self.num_steps - 1)
        low = t.floor().long().clamp(max=self.num_steps - 2)
        w = t - low
        return (1 - w) * self.log_snr[low] + w * self.log_snr[low + 1]

    def time_at(self, log_snr: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`log_snr_at`: continuous times of log-SNR values."""
        rho = log_snr.to(torch.float64)
        neg = -self.log_snr  # increasing in t
        k = torch.searchsorted(neg, -rho).clamp(1, self.num_steps - 1)
        lo, hi = neg[k - 1], neg[k]
        w = ((-rho - lo) / (hi - lo)).clamp(0, 1)
        return (k - 1).to(torch.float64) + w

    def to(self, device: torch.device) -> Schedule:
        for name in ("betas", "alphas", "alpha_bars", "log_snr"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def _coef(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped ``(b, 1, 1)`` in ``like``'s dtype."""
    return values.to(like.device)[t].to(like.dtype)[:, None, None]


def stratified_times(
    batch: int, num_steps: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """One level per function, stratified over the batch:
    ``t_i = floor((u_i + i) T / b)``, ``u_i ~ U(0, 1)``; ``(b,)`` int64."""
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    i = torch.arange(batch, device=device, dtype=torch.float64)
    return ((u + i) * num_steps / batch).floor().long().clamp(max=num_steps - 1)


def diffusion_loss(
    eps_fn: EpsFn,
    schedule: Schedule,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    loss_type: str = "l1",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The NDP training loss (a scalar, the batch mean).

    Per function: noise ``y`` to a stratified level ``t``, predict the noise, and take
    ``sum over outputs of |eps - eps_hat|`` (``"l1"``) or its square (``"l2"``) averaged
    over the function's real points.

    Args:
        x: ``(b, n, d)`` inputs; y: ``(b, n, m)`` values; mask: ``(b, n)`` bool or None.
        loss_type: ``"l1"`` (the released configuration) or ``"l2"``.
    """
    if loss_type not in ("l1", "l2"):
        raise ValueError(f"loss_type must be 'l1' or 'l2'; got {loss_type!r}")
    b = y.shape[0]
    t = stratified_times(b, schedule.num_steps, generator=generator, device=y.device)
    noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    abar = _coef(schedule.alpha_bars, t, y)
    y_t = abar.sqrt() * y + (1 - abar).sqrt() * noise
    err = eps_fn(x, y_t, t, mask) - noise
    per_point = (err.abs() if loss_type == "l1" else err.square()).sum(-1)
    if mask is None:
        return per_point.mean()
    weight = mask.to(y.dtype)
    return ((per_point * weight).sum(1) / weight.sum(1)).mean()


def _reverse_step(
    eps_fn: EpsFn,
    schedule: Schedule,
    x: torch.Tensor,
    y_t: torch.Tensor,
    t: int,
    mask: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One DDPM step from level ``t`` to ``t - 1`` (to the clean value at ``t = 0``)."""
    b = y_t.shape[0]
    beta = float(schedule.betas[t])
    abar = float(schedule.alpha_bars[t])
    tt = torch.full((b,), t, dtype=torch.long, device=y_t.device)
    eps = eps_fn(x, y_t, tt, mask)
    mean = (y_t - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)
    if t == 0:
        return mean
    z = torch.randn(y_t.shape, generator=generator, device=y_t.device, dtype=y_t.dtype)
    return mean + math.sqrt(beta) * z


def _progress(levels: range, progress_bar: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(levels, desc=desc, disable=not progress_bar, leave=False, dynamic_ncols=True)


@torch.no_grad()
def ancestral_sample(
    eps_fn: EpsFn,
    schedule: Schedule,
    x: torch.Tensor,
    *,
    output_dim: int = 1,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> torch.Tensor:
    """Draw function values at ``x (b, n, d)`` from the learned prior: ``y_{T-1} ~ N(0, I)``
    then ``T`` reverse steps. Returns ``(b, n, output_dim)``; ``T`` noise-model calls."""
    b, n, _ = x.shape
    y = torch.randn(b, n, output_dim, generator=generator, device=x.device, dtype=x.dtype)
    for t in _progress(range(schedule.num_steps - 1, -1, -1), progress_bar, "NDP prior"):
        y = _reverse_step(eps_fn, schedule, x, y, t, mask, generator)
    return y


@torch.no_grad()
def repaint_sample(
    eps_fn: EpsFn,
    schedule: Schedule,
    x_context: torch.Tensor,
    y_context: torch.Tensor,
    x_target: torch.Tensor,
    *,
    num_inner_steps: int = 5,
    context_mask: torch.Tensor | None = None,
    target_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> torch.Tensor:
    """Conditional draws of the target values given the context by RePaint
    (Lugmayr et al., 2022), as in NDP with two slips of the official code fixed.

    At each level ``t = T-1 .. 0`` the target values at level ``t`` are refined
    ``num_inner_steps = U`` times: the context is noised to level ``t`` with a fresh draw
    of ``q(y_t | y_c)``, one reverse step is taken on the joint set, its target part (now
    at level ``t - 1``) is noised back to level ``t`` with the transition
    ``q(y_t | y_{t-1}) = N(sqrt(1 - beta_t) y, beta_t I)`` (the official code uses
    ``beta_{t-1}``) and fresh noise; after the ``U`` refinements one more joint reverse
    step moves the targets to level ``t - 1``. The last level ``t = 0`` is included, so
    the output is clean. ``T (U + 1)`` noise-model calls.

    Args:
        x_context: ``(b, n_c, d)``; y_context: ``(b, n_c, m)``; x_target: ``(b, n_t, d)``.
        num_inner_steps: ``U >= 0`` (0: plain replacement conditioning).
        context_mask: ``(b, n_c)`` / ``(b, n_t)`` bool or None.
        target_mask: as ``context_mask`` (described together above).

    Returns:
        ``(b, n_t, m)`` draws of the target values.
    """
    if isinstance(num_inner_steps, bool) or not isinstance(num_inner_steps, int):
        raise TypeError(f"num_inner_steps must be an int; got {num_inner_steps!r}")
    if num_inner_steps < 0:
        raise ValueError(f"num_inner_steps must be >= 0; got {num_inner_steps}")
    b, n_c, _ = x_context.shape
    n_t = x_target.shape[1]
    m = y_context.shape[-1]
    x = torch.cat([x_context, x_target], 1)
    if context_mask is None and target_mask is None:
        mask = None
    else:
        cm = context_mask if context_mask is not None else x_context.new_ones(b, n_c).bool()
        tm = target_mask if target_mask is not None else x_target.new_ones(b, n_t).bool()
        mask = torch.cat([cm, tm], 1)

    def randn(shape) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)

    y_target = randn((b, n_t, m))
    for t in _progress(range(schedule.num_steps - 1, -1, -1), progress_bar, "NDP RePaint"):
        abar = float(schedule.alpha_bars[t])
        beta = float(schedule.betas[t])
        for inner in range(num_inner_steps + 1):
            y_c = math.sqrt(abar) * y_context + math.sqrt(1 - abar) * randn(y_context.shape)
            joint = _reverse_step(
                eps_fn, schedule, x, torch.cat([y_c, y_target], 1), t, mask, generator
            )
            y_target = joint[:, n_c:]
            if inner < num_inner_steps:
                y_target = math.sqrt(1 - beta) * y_target + math.sqrt(beta) * randn(y_target.shape)
    return y_target


@torch.no_grad()
def smc_sample(
    eps_fn: EpsFn,
    schedule: Schedule,
    x_context: torch.Tensor,
    y_context: torch.Tensor,
    x_target: torch.Tensor,
    *,
    num_particles: int = 128,
    context_mask: torch.Tensor | None = None,
    target_mask: torch.Tensor | None = None,
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> torch.Tensor:
    """Conditional draws of the target values given the context by sequential Monte
    Carlo over the reverse chain (the particle filter of SMCDiff, Trippe et al., 2022).

    Per task, one noising path of the context is drawn from the forward chain,
    ``y_c^t = sqrt(1 - beta_t) y_c^{t-1} + sqrt(beta_t) z`` from the data ``y_c``
    up to level ``T-1``. ``num_particles = K`` target particles start from ``N(0, I)``;
    at each level ``t = T-1 .. 0`` the joint set ``(y_c^t, y^t)`` takes one reverse step
    (mean ``mu``, variance ``beta_t``), the targets move to ``mu_target + sqrt(beta_t) z``
    (no noise at ``t = 0``), and each particle's log weight grows by the reverse step's
    log density of the context's next value, ``log N(y_c^{t-1}; mu_context, beta_t I)``
    (at ``t = 0`` the next value is the data). The reverse transition factorises over
    points given the current set, so this is importance sampling of the reverse chain
    conditioned on the context path; with the exact noise model and a reverse chain that
    reverses the forward one, the output law tends to the exact conditional as ``K``
    grows. Particles are resampled (systematic resampling, per task) when the effective
    sample size falls below ``ess_threshold · K`` and once at the end, so the ``K``
    draws are equally weighted but not independent (they share ancestors): average over
    several tasks or calls rather than trusting one call's spread. ``T`` noise-model
    calls on ``b K`` sets (RePaint's cost at ``U = 0`` for ``K`` draws).

    Args:
        x_context: ``(b, n_c, d)``; y_context: ``(b, n_c, m)``; x_target: ``(b, n_t, d)``.
        num_particles: ``K >= 1`` draws per task.
        context_mask: ``(b, n_c)`` / ``(b, n_t)`` bool or None.
        target_mask: as ``context_mask`` (described together above).
        ess_threshold: in ``[0, 1]``; resample when ``ESS < ess_threshold · K``.

    Returns:
        ``(K, b, n_t, m)`` draws of the target values.
    """
    if isinstance(num_particles, bool) or not isinstance(num_particles, int):
        raise TypeError(f"num_particles must be an int; got {num_particles!r}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1; got {num_particles}")
    if not 0 <= ess_threshold <= 1:
        raise ValueError(f"ess_threshold must be in [0, 1]; got {ess_threshold!r}")
    b, n_c, _ = x_context.shape
    n_t = x_target.shape[1]
    m = y_context.shape[-1]
    k = num_particles
    device, dtype = x_context.device, x_context.dtype

    def per_particle(v: torch.Tensor) -> torch.Tensor:  # (b, ...) -> (b k, ...)
        return v[:, None].expand(b, k, *v.shape[1:]).reshape(b * k, *v.shape[1:])

    def randn(shape) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    x = per_particle(torch.cat([x_context, x_target], 1))
    if context_mask is None and target_mask is None:
        mask = None
        cm = torch.ones(b, n_c, dtype=torch.bool, device=device)
    else:
        cm = context_mask if context_mask is not None else x_context.new_ones(b, n_c).bool()
        tm = target_mask if target_mask is not None else x_target.new_ones(b, n_t).bool()
        mask = per_particle(torch.cat([cm, tm], 1))
    context_real = per_particle(cm)[..., None].expand(b * k, n_c, m)
    # the context's noising path, one per task: path[t + 1] is level t, path[0] the data
    path = [y_context]
    for t in range(schedule.num_steps):
        beta = float(schedule.betas[t])
        path.append(math.sqrt(1 - beta) * path[-1] + math.sqrt(beta) * randn(y_context.shape))
    offsets = (k * torch.arange(b, device=device))[:, None]
    y_target = randn((b * k, n_t, m))
    log_w = torch.zeros(b, k, dtype=torch.float64, device=device)
    for t in _progress(range(schedule.num_steps - 1, -1, -1), progress_bar, "NDP SMC"):
        beta = float(schedule.betas[t])
        abar = float(schedule.alpha_bars[t])
        joint = torch.cat([per_particle(path[t + 1]), y_target], 1)
        tt = torch.full((b * k,), t, dtype=torch.long, device=device)
        eps = eps_fn(x, joint, tt, mask)
        mean = (joint - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta)
        resid = (per_particle(path[t]) - mean[:, :n_c]).square()
        resid = torch.where(context_real, resid, torch.zeros_like(resid))
        log_w = log_w - 0.5 * resid.sum((1, 2)).to(torch.float64).reshape(b, k) / beta
        y_target = mean[:, n_c:]
        if t > 0:
            y_target = y_target + math.sqrt(beta) * randn(y_target.shape)
        weights = torch.softmax(log_w, 1)
        ess = 1 / weights.square().sum(1)
        again = (ess < ess_threshold * k) if t > 0 else torch.ones_like(ess, dtype=torch.bool)
        if bool(again.any()):
            u = torch.rand(b, 1, generator=generator, device=device, dtype=torch.float64)
            grid = (u + torch.arange(k, device=device, dtype=torch.float64)) / k
            cdf = weights.cumsum(1)
            cdf[:, -1] = 1.0
            pick = torch.searchsorted(cdf.contiguous(), grid.contiguous()).clamp(max=k - 1)
            keep = torch.arange(k, device=device).expand(b, k)
            pick = torch.where(again[:, None], pick, keep)
            y_target = y_target[(pick + offsets).reshape(-1)]
            log_w = torch.where(again[:, None], torch.zeros_like(log_w), log_w)
    return y_target.reshape(b, k, n_t, m).transpose(0, 1)


def _trace_exact(eps: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum_j weight_j d eps_j / d y_j`` per function by one backward pass per
    coordinate (``n m`` passes); ``weight (b, n, m)``."""
    b, n, m = y.shape
    flat_eps = eps.reshape(b, n * m)
    total = torch.zeros(b, dtype=y.dtype, device=y.device)
    for j in range(n * m):
        (g,) = torch.autograd.grad(flat_eps[:, j].sum(), y, retain_graph=True)
        total = total + g.reshape(b, n * m)[:, j] * weight.reshape(b, n * m)[:, j]
    return total


def ode_log_prob(
    eps_fn: EpsFn,
    schedule: Schedule,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    ode_steps: int = 100,
    divergence: str = "auto",
    max_exact: int = 64,
    num_probes: int = 4,
    terminal_log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> torch.Tensor:
    """Log density of ``y`` under the model by the probability-flow ODE.

    The marginals ``q_t`` of the diffusion are transported by the deterministic flow

        dy / d rho = (sigma^2 y - sigma eps(y, t(rho))) / 2,   sigma^2 = 1 / (1 + e^rho),

    written in the log signal-to-noise ratio ``rho`` (the ODE of the variance-preserving
    SDE). It is integrated from level 0 (``rho_0``) to level ``T-1`` with ``ode_steps``
    classical Runge–Kutta (RK4) steps uniform in ``rho``, together with the integral of
    the divergence, ``d log q / d rho = -div``. At level ``T-1`` the density is the
    standard normal (the sampler's starting law) unless ``terminal_log_prob`` is given.

    What is returned is the density of ``y`` as the model's level-0 variable rescaled by
    ``1 / sqrt(abar_0)``: ``log q_0(sqrt(abar_0) y) + (n m / 2) log abar_0``, the data law
    blurred by ``N(0, (1 - abar_0) / abar_0) = N(0, 3e-4)`` for the paper's schedule (the
    finest level the network is trained on).

    Args:
        x: ``(b, n, d)``; y: ``(b, n, m)``; mask: ``(b, n)`` bool or None (padded points
            are carried along but excluded from the density).
        ode_steps: RK4 steps (4 noise-model evaluations and divergences each).
        divergence: ``"exact"`` (``n m`` backward passes per evaluation),
            ``"hutchinson"`` (``num_probes`` Rademacher probes, fixed along the path: an
            unbiased estimate) or ``"auto"`` (exact when ``n m <= max_exact``).
        terminal_log_prob: ``(b, n, m) -> (b,)`` log density at level ``T-1``.
        generator: for the Hutchinson probes.

    Returns:
        ``(b,)`` log densities (float64 bookkeeping, in ``y``'s dtype).
    """
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ValueError(f"divergence must be 'auto', 'exact' or 'hutchinson'; got {divergence!r}")
    if isinstance(ode_steps, bool) or not isinstance(ode_steps, int) or ode_steps < 1:
        raise ValueError(f"ode_steps must be a positive int; got {ode_steps!r}")
    b, n, m = y.shape
    weight = torch.ones_like(y) if mask is None else mask[..., None].to(y.dtype).expand_as(y)
    count = weight.sum((1, 2))
    exact = divergence == "exact" or (divergence == "auto" and n * m <= max_exact)
    probes = None
    if not exact:
        shape = (num_probes, b, n, m)
        probes = torch.randint(0, 2, shape, generator=generator, device=y.device).to(y.dtype)
        probes = (2 * probes - 1) * weight
    rho_start = float(schedule.log_snr[0])
    rho_end = float(schedule.log_snr[-1])
    span = rho_end - rho_start

    def field(state: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        rho = rho_start + s * span
        sigma = math.sqrt(1.0 / (1.0 + math.exp(rho)))
        t = schedule.time_at(torch.tensor(rho)).to(y.device).expand(b)
        with torch.enable_grad():
            z = state.detach().requires_grad_(True)
            eps = eps_fn(x, z, t.to(y.dtype), mask)
            if exact:
                tr = _trace_exact(eps, z, weight)
            else:
                tr = torch.zeros(b, dtype=y.dtype, device=y.device)
                for p in probes:
                    (g,) = torch.autograd.grad((eps * p).sum(), z, retain_graph=True)
                    tr = tr + (g * p).sum((1, 2)) / num_probes
        velocity = 0.5 * (sigma**2 * z.detach() - sigma * eps.detach())
        div = 0.5 * (sigma**2 * count - sigma * tr.detach())
        return velocity * span, div * span

    state = math.sqrt(float(schedule.alpha_bars[0])) * y
    integral = torch.zeros(b, dtype=torch.float64, device=y.device)
    h = 1.0 / ode_steps
    for i in _progress(range(ode_steps), progress_bar, "NDP likelihood"):
        s = i * h
        k1, d1 = field(state, s)
        k2, d2 = field(state + 0.5 * h * k1, s + 0.5 * h)
        k3, d3 = field(state + 0.5 * h * k2, s + 0.5 * h)
        k4, d4 = field(state + h * k3, s + h)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        integral = integral + (h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)).to(torch.float64)
    if terminal_log_prob is None:
        z = (state * weight).to(torch.float64)
        terminal = -0.5 * z.square().sum((1, 2)) - 0.5 * count.to(torch.float64) * math.log(
            2 * math.pi
        )
    else:
        terminal = terminal_log_prob(state).to(torch.float64)
    log_q0 = terminal + integral
    scale = 0.5 * count.to(torch.float64) * math.log(float(schedule.alpha_bars[0]))
    return (log_q0 + scale).to(y.dtype)


def moment_matched_log_prob(
    samples: torch.Tensor, y: torch.Tensor, *, jitter: float = 1e-6, diagonal: bool = False
) -> torch.Tensor:
    """The paper's evaluation metric: ``log N(y; mean, cov)`` with the mean and covariance
    of ``S`` draws (``cov + jitter I``), in float64.

    Args:
        samples: ``(S, b, n, m)`` draws; y: ``(b, n, m)`` values.
        diagonal: keep only the marginal variances (a diagonal Gaussian).

    Returns:
        ``(b,)`` joint log densities over the ``n m`` values.
    """
    s = samples.to(torch.float64).flatten(2)
    v = y.to(torch.float64).flatten(1)
    mean = s.mean(0)
    centred = s - mean
    k = v.shape[-1]
    if diagonal:
        var = centred.square().sum(0) / (s.shape[0] - 1) + jitter
        return (
            -0.5 * ((v - mean).square() / var).sum(-1)
            - 0.5 * var.log().sum(-1)
            - 0.5 * k * math.log(2 * math.pi)
        )
    cov = torch.einsum("sbi,sbj->bij", centred, centred) / (s.shape[0] - 1)
    cov = 0.5 * (cov + cov.transpose(-1, -2)) + jitter * torch.eye(k, dtype=cov.dtype)
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return dist.log_prob(v)
