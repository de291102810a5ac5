"""Posterior samplers in the whitened latent space of a flow's reference measure.

If ``u = G(L z)`` with ``z ~ N(0, I)`` and ``G`` the (invertible) flow map, the posterior
of ``u`` given data ``y`` is the push-forward of ``π(z) ∝ exp(−½‖z‖²) · L(y | G(Lz))``:
no Jacobian or divergence term enters (it would only be needed to *evaluate* the
density of ``u``). Three samplers target ``π``:

* :func:`pcn` — preconditioned Crank–Nicolson (Cotter et al., 2013): the proposal
  ``z' = √(1 − β²) z + β ξ`` leaves the Gaussian prior invariant, so the acceptance ratio
  is the likelihood ratio alone and does not degrade with the grid size; or, given a
  Gaussian approximation of the posterior (:func:`gauss_newton` for Gaussian noise), the
  generalised pCN that leaves that Gaussian invariant and mixes in few steps when
  precise observations pin some directions (plain pCN then needs a tiny ``β`` and
  moves the other directions by ``~β`` a step). Vectorised over chains; ``β`` adapted
  during burn-in towards an acceptance rate of 0.25, per chain or per group of chains.
* :func:`nuts` — Pyro's No-U-Turn sampler on the potential ``½‖z‖² − log L``.
* :func:`sgld` — stochastic-gradient Langevin dynamics (the paper's choice), with the
  paper's polynomially decaying step, here on the correct latent target.

Each takes ``log_lik(z) -> (log L (C,) float64, output (C, ...))`` over a batch of
``C`` chains, and returns the kept latent draws and outputs with a chain dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["approximation_draws", "gauss_newton", "nuts", "pcn", "sgld"]

LogLik = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _check_counts(num_samples: int, burn_in: int, thin: int) -> None:
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("burn_in", burn_in, 0),
        ("thin", thin, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}")


def gauss_newton(
    observe: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    noise: float,
    z0: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    iterations: int = 4,
) -> dict:
    """A Gaussian approximation ``N(μ, P⁻¹)`` of the latent posterior
    ``π(z) ∝ exp(−½‖z‖²) · N(y; h(z), noise·I)`` per chain, by Gauss–Newton.

    ``h = observe`` is linearised at the current point (its Jacobian ``H`` by one
    backward pass per observation), ``P = I + HᵀH / noise`` and the step is the Newton step
    of the linearised problem; a step that lowers the log target is halved back instead.
    For a linear ``h`` one step is exact, and ``N(μ, P⁻¹)`` *is* the posterior.

    Args:
        observe: ``z (C, ...) -> (C, m)`` the noise-free observations, differentiable.
        y: ``(C, m)`` observed values.
        noise: observation-noise variance.
        z0: ``(C, ...)`` starting latents (e.g. zeros: the prior mean).
        mask: ``(C, m)`` 1 for observations that count, 0 for padding (default: all).
        iterations: Gauss–Newton steps (each: one forward and ``m`` backward passes).

    Returns:
        ``{"mean": (C, ...) μ (dtype of z0), "precision_chol": (C, D, D) float64 lower
        Cholesky factor of P, with D the latent size}``.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0; got {iterations!r}")
    chains = z0.shape[0]
    y = y.double().cpu()
    mask = torch.ones_like(y) if mask is None else mask.double().cpu()
    eye = torch.eye(z0[0].numel(), dtype=torch.float64)
    z = z0.detach().double().cpu().flatten(1)
    best_z = z.clone()
    best_obj = torch.full((chains,), -math.inf, dtype=torch.float64)
    best_chol = eye.expand(chains, -1, -1).clone()
    for _ in range(iterations + 1):
        zz = z.to(device=z0.device, dtype=z0.dtype).reshape(z0.shape).requires_grad_(True)
        with torch.enable_grad():
            obs = observe(zz)
            rows = []
            for j in range(obs.shape[1]):
                (g,) = torch.autograd.grad(obs[:, j].sum(), zz, retain_graph=True)
                rows.append(g.double().cpu().flatten(1))
        h = torch.stack(rows, 1) * mask[..., None]  # (C, m, D)
        resid = (y - obs.detach().double().cpu()) * mask
        obj = -0.5 * z.square().sum(1) - 0.5 * resid.square().sum(1) / noise
        chol = torch.linalg.cholesky(eye + h.transpose(1, 2) @ h / noise)
        better = obj > best_obj
        best_obj = torch.where(better, obj, best_obj)
        best_z = torch.where(better[:, None], z, best_z)
        best_chol = torch.where(better[:, None, None], chol, best_chol)
        grad = (h.transpose(1, 2) @ resid[..., None])[..., 0] / noise - z
        step = torch.cholesky_solve(grad[..., None], chol)[..., 0]
        # from a point that improved, the Newton step; otherwise halve back to the best
        z = torch.where(better[:, None], z + step, 0.5 * (z + best_z))
    return {
        "mean": best_z.reshape(z0.shape).to(device=z0.device, dtype=z0.dtype),
        "precision_chol": best_chol,
    }


def approximation_draws(approx: dict, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw of ``N(μ, P⁻¹)`` per chain from :func:`gauss_newton`'s ``approx``:
    ``(C, ...)`` like its mean."""
    mean, chol = approx["mean"], approx["precision_chol"]
    xi = torch.randn(chol.shape[:2], generator=generator, dtype=torch.float64)
    dz = torch.linalg.solve_triangular(chol.transpose(1, 2), xi[..., None], upper=True)[..., 0]
    return mean + dz.reshape(mean.shape).to(device=mean.device, dtype=mean.dtype)


def pcn(
    log_lik: LogLik,
    z0: torch.Tensor,
    *,
    num_samples: int = 200,
    burn_in: int = 200,
    thin: int = 1,
    step_size: float = 0.2,
    target_accept: float = 0.25,
    preconditioner: dict | None = None,
    groups: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> dict:
    """Preconditioned Crank–Nicolson over ``C`` vectorised chains.

    Plain pCN proposes ``z' = √(1 − β²) z + β ξ``, ``ξ ~ N(0, I)``: reversible for the
    prior, so the acceptance ratio is the likelihood ratio. When a few precise
    observations pin some latent directions, ``β`` must be as small as the posterior's
    width there, and the other directions then move by ``~β`` per step (an
    autocorrelation time of order ``1/β²`` steps). With ``preconditioner`` (a Gaussian
    approximation ``N(μ, P⁻¹)`` of the posterior, e.g. :func:`gauss_newton`) the
    proposal is the generalised pCN ``z' = μ + √(1 − β²)(z − μ) + β P^{-½} ξ``
    (Rudolf & Sprungk, 2018), reversible for that Gaussian; the acceptance ratio is
    ``π(z') N(z; μ, P⁻¹) / (π(z) N(z'; μ, P⁻¹))``. When the approximation is exact
    every proposal is accepted at ``β = 1`` (independent draws).

    ``β`` is adapted during burn-in only, by Robbins–Monro on ``log β`` towards
    ``target_accept`` with the acceptance *probabilities* ``min(1, α)`` (less noisy
    than the accept/reject outcomes), pooled over the chains of a group.

    Args:
        log_lik: ``z (C, ...) -> (log L (C,), output (C, ...))``.
        z0: ``(C, ...)`` starting latents (e.g. prior draws, or
            :func:`approximation_draws`).
        num_samples: kept draws per chain (after burn-in and thinning).
        burn_in: steps discarded first; ``β`` is adapted during them only.
        thin: keep every ``thin``-th step.
        step_size: the initial ``β`` in ``(0, 1]``.
        target_accept: the acceptance rate the adaptation aims for.
        preconditioner: ``{"mean": (C, ...), "precision_chol": (C, D, D)}`` (see
            :func:`gauss_newton`), or None for plain pCN.
        groups: ``(C,)`` integer labels: chains of one group (e.g. one problem) share
            one adapted ``β``; None: each chain its own.

    Returns:
        ``{"z": (C, S, ...), "output": (C, S, ...), "accept": mean acceptance rate after
        burn-in, "accept_per_chain": (C,) the same per chain, "step_size": (C,)
        final β}``.
    """
    from tqdm.auto import tqdm

    _check_counts(num_samples, burn_in, thin)
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1]; got {step_size!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1); got {target_accept!r}")
    chains = z0.shape[0]
    if groups is None:
        groups = torch.arange(chains)
    groups = torch.as_tensor(groups).long().cpu()
    if groups.shape != (chains,):
        raise ValueError(f"groups must have shape ({chains},); got {tuple(groups.shape)}")
    _, groups = torch.unique(groups, return_inverse=True)
    num_groups = int(groups.max()) + 1
    group_size = torch.bincount(groups, minlength=num_groups).double()
    flat = (chains, z0[0].numel())
    if preconditioner is not None:
        mean = preconditioner["mean"].double().cpu().reshape(flat)
        chol = preconditioner["precision_chol"].double().cpu()
        if chol.shape != (chains, flat[1], flat[1]):
            raise ValueError(
                f"preconditioner['precision_chol'] must have shape "
                f"({chains}, {flat[1]}, {flat[1]}); got {tuple(chol.shape)}"
            )

    def energy(z64: torch.Tensor) -> torch.Tensor:
        """``−log N(z; μ, P⁻¹) + log N(z; 0, I)`` up to a constant (zero for plain pCN)."""
        if preconditioner is None:
            return torch.zeros(chains, dtype=torch.float64)
        white = (chol.transpose(1, 2) @ (z64 - mean)[..., None])[..., 0]
        return 0.5 * white.square().sum(1) - 0.5 * z64.square().sum(1)

    z = z0.clone()
    z64 = z.double().cpu().reshape(flat)
    ll, out = log_lik(z)
    ll = ll.double().cpu()
    en = energy(z64)
    log_beta = torch.full((num_groups,), math.log(step_size), dtype=torch.float64)
    keep_z, keep_out, accepted = [], [], []
    total = burn_in + num_samples * thin
    shape = (chains,) + (1,) * (z.ndim - 1)
    for k in tqdm(range(total), desc="pCN", disable=not progress_bar, leave=False):
        beta = log_beta.exp().clamp(max=1.0)[groups][:, None]
        xi = torch.randn(flat, generator=generator, dtype=torch.float64)
        if preconditioner is None:
            prop64 = (1 - beta.square()).sqrt() * z64 + beta * xi
        else:
            step = torch.linalg.solve_triangular(chol.transpose(1, 2), xi[..., None], upper=True)
            prop64 = mean + (1 - beta.square()).sqrt() * (z64 - mean) + beta * step[..., 0]
        prop = prop64.reshape(z.shape).to(device=z.device, dtype=z.dtype)
        ll_prop, out_prop = log_lik(prop)
        ll_prop = ll_prop.double().cpu()
        en_prop = energy(prop64)
        log_alpha = ll_prop - ll + en_prop - en
        u = torch.rand(chains, generator=generator, dtype=torch.float64)
        accept = u.log() < log_alpha
        mask = accept.to(z.device)
        z = torch.where(mask.reshape(shape), prop, z)
        z64 = torch.where(accept[:, None], prop64, z64)
        out = torch.where(mask.reshape((chains,) + (1,) * (out.ndim - 1)), out_prop, out)
        ll = torch.where(accept, ll_prop, ll)
        en = torch.where(accept, en_prop, en)
        if k < burn_in:
            prob = log_alpha.clamp(max=0.0).exp().nan_to_num(0.0)
            rate = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, groups, prob)
            log_beta = log_beta + (k + 1) ** -0.6 * (rate / group_size - target_accept)
            log_beta = log_beta.clamp(math.log(1e-4), 0.0)
        else:
            accepted.append(accept.double())
            if (k - burn_in + 1) % thin == 0:
                keep_z.append(z.clone())
                keep_out.append(out.clone())
    per_chain = torch.stack(accepted).mean(0)
    return {
        "z": torch.stack(keep_z, 1),
        "output": torch.stack(keep_out, 1),
        "accept": float(per_chain.mean()),
        "accept_per_chain": per_chain,
        "step_size": log_beta.exp().clamp(max=1.0)[groups],
    }


def sgld(
    log_lik: LogLik,
    z0: torch.Tensor,
    *,
    num_samples: int = 200,
    burn_in: int = 200,
    thin: int = 10,
    step_size: float = 5e-3,
    final_step_size: float = 4e-3,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> dict:
    """Langevin dynamics ``z ← z + η ∇log π(z) + √(2η) ξ`` over ``C`` chains, with
    ``η`` decaying polynomially (exponent −0.55, as in the paper's sampler) from
    ``step_size`` to ``final_step_size``. Unadjusted: its bias shrinks with ``η``.

    Returns:
        As :func:`pcn`, without ``step_size``.
    """
    from tqdm.auto import tqdm

    _check_counts(num_samples, burn_in, thin)
    total = burn_in + num_samples * thin
    # eta_k = a (b + k)^-0.55 through both end points
    gamma = -0.55
    ratio = (final_step_size / step_size) ** (1 / gamma)
    b = (total - 1) / max(ratio - 1, 1e-12)
    a = step_size / b**gamma
    z = z0.clone()
    keep_z, keep_out = [], []
    for k in tqdm(range(total), desc="SGLD", disable=not progress_bar, leave=False):
        eta = a * (b + k) ** gamma
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            ll, out = log_lik(zz)
            logp = ll.sum() - 0.5 * zz.double().square().sum()
            (grad,) = torch.autograd.grad(logp, zz)
        xi = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        z = (zz + eta * grad + math.sqrt(2 * eta) * xi).detach()
        if k >= burn_in and (k - burn_in + 1) % thin == 0:
            keep_z.append(zz.detach().clone())
            keep_out.append(out.detach().clone())
    return {"z": torch.stack(keep_z, 1), "output": torch.stack(keep_out, 1), "accept": 1.0}


def nuts(
    log_lik: LogLik,
    z0: torch.Tensor,
    *,
    num_samples: int = 200,
    burn_in: int = 200,
    thin: int = 1,
    max_tree_depth: int = 8,
    target_accept: float = 0.8,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> dict:
    """Pyro's NUTS on ``½‖z‖² − log L(z)``, one chain after another (each chain starts at
    its row of ``z0``), with step-size and diagonal mass adaptation during burn-in.

    Pyro draws from torch's global generator: ``generator`` seeds it (with a value drawn
    from ``generator``) so that runs are reproducible.

    Returns:
        As :func:`pcn`, with ``"accept"`` Pyro's mean acceptance probability.
    """
    import pyro
    from pyro.infer.mcmc import MCMC, NUTS

    _check_counts(num_samples, burn_in, thin)
    if generator is not None:
        pyro.set_rng_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))

    def potential(params: dict) -> torch.Tensor:
        z = params["z"]
        ll, _ = log_lik(z[None])
        return 0.5 * z.double().square().sum() - ll[0]

    keep_z, accepts = [], []
    for c in range(z0.shape[0]):
        kernel = NUTS(
            potential_fn=potential,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            max_tree_depth=max_tree_depth,
            target_accept_prob=target_accept,
        )
        mcmc = MCMC(
            kernel,
            num_samples=num_samples * thin,
            warmup_steps=burn_in,
            initial_params={"z": z0[c].detach().clone()},
            disable_progbar=not progress_bar,
        )
        mcmc.run()
        keep_z.append(mcmc.get_samples()["z"][thin - 1 :: thin])
        stats = mcmc.diagnostics()
        accepts.append(float(stats.get("acceptance rate", {}).get("chain 0", float("nan"))))
    z = torch.stack(keep_z, 0).to(z0.dtype)
    with torch.no_grad():
        _, out = log_lik(z.flatten(0, 1))
    return {
        "z": z,
        "output": out.reshape(z.shape[:2] + out.shape[1:]),
        "accept": float(torch.tensor(accepts).mean()),
    }
