"""Posterior samplers in the whitened latent space of a flow's reference measure.

If ``u = G(L z)`` with ``z ~ N(0, I)`` and ``G`` the (invertible) flow map, the posterior
of ``u`` given data ``y`` is the push-forward of ``π(z) ∝ exp(−½‖z‖²) · L(y | G(Lz))``:
no Jacobian or divergence term enters (it would only be needed to *evaluate* the
density of ``u``). Three samplers target ``π``:

* :func:`pcn` — preconditioned Crank–Nicolson (Cotter et al., 2013): the proposal
  ``z' = √(1 − β²) z + β ξ`` leaves the Gaussian prior invariant, so the acceptance ratio
  is the likelihood ratio alone and does not degrade with the grid size. Vectorised over
  chains; ``β`` adapted per chain during burn-in towards an acceptance rate of 0.25.
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

__all__ = ["nuts", "pcn", "sgld"]

LogLik = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _check_counts(num_samples: int, burn_in: int, thin: int) -> None:
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("burn_in", burn_in, 0),
        ("thin", thin, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}; got {value!r}")


def pcn(
    log_lik: LogLik,
    z0: torch.Tensor,
    *,
    num_samples: int = 200,
    burn_in: int = 200,
    thin: int = 1,
    step_size: float = 0.2,
    target_accept: float = 0.25,
    generator: torch.Generator | None = None,
    progress_bar: bool = False,
) -> dict:
    """Preconditioned Crank–Nicolson over ``C`` vectorised chains.

    Args:
        log_lik: ``z (C, ...) -> (log L (C,), output (C, ...))``.
        z0: ``(C, ...)`` starting latents (e.g. prior draws).
        num_samples: kept draws per chain (after burn-in and thinning).
        burn_in: steps discarded first; ``β`` is adapted during them only.
        thin: keep every ``thin``-th step.
        step_size: the initial ``β`` in ``(0, 1]``.
        target_accept: the acceptance rate the adaptation aims for.

    Returns:
        ``{"z": (C, S, ...), "output": (C, S, ...), "accept": mean acceptance after
        burn-in, "step_size": (C,) final β}``.
    """
    from tqdm.auto import tqdm

    _check_counts(num_samples, burn_in, thin)
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1]; got {step_size!r}")
    chains = z0.shape[0]
    z = z0.clone()
    ll, out = log_lik(z)
    log_beta = torch.full((chains,), math.log(step_size), dtype=torch.float64)
    keep_z, keep_out, accepted = [], [], []
    total = burn_in + num_samples * thin
    shape = (chains,) + (1,) * (z.ndim - 1)
    for k in tqdm(range(total), desc="pCN", disable=not progress_bar, leave=False):
        beta = log_beta.exp().clamp(max=1.0)
        b = beta.to(z.dtype).reshape(shape)
        xi = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        prop = (1 - b.square()).sqrt() * z + b * xi
        ll_prop, out_prop = log_lik(prop)
        u = torch.rand(chains, generator=generator, dtype=torch.float64)
        accept = u.log() < (ll_prop - ll).cpu()
        mask = accept.to(z.device)
        z = torch.where(mask.reshape(shape), prop, z)
        out = torch.where(mask.reshape((chains,) + (1,) * (out.ndim - 1)), out_prop, out)
        ll = torch.where(mask, ll_prop, ll)
        if k < burn_in:
            rate = (k + 1) ** -0.6
            log_beta = log_beta + rate * (accept.double() - target_accept)
            log_beta = log_beta.clamp(math.log(1e-4), 0.0)
        else:
            accepted.append(accept.double().mean())
            if (k - burn_in + 1) % thin == 0:
                keep_z.append(z.clone())
                keep_out.append(out.clone())
    return {
        "z": torch.stack(keep_z, 1),
        "output": torch.stack(keep_out, 1),
        "accept": float(torch.stack(accepted).mean()),
        "step_size": log_beta.exp(),
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
