"""The No-U-Turn Sampler (Hoffman & Gelman, 2014) through Pyro: ground truth for small
networks.

Pyro's :class:`~pyro.infer.mcmc.NUTS` runs on one flat vector ``θ`` holding every
network weight and every learned likelihood parameter (a learned noise level is
sampled like a weight), with the potential ``U(θ) = −log p(θ, D)`` from
:meth:`~bayesfn.bayesnn.inference.base.BNNTarget.log_joint` on the full data (the
marginal density of a hierarchical prior). Chains run one after another, each from its
own seed; the draws keep their chain dimension. Meant for networks of up to about a
thousand weights and a thousand data points on a CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch

from bayesfn.bayesnn.inference.base import BNNTarget, Inference, Params
from bayesfn.training import FitResult

__all__ = ["NUTS"]


def _flatten(params: Mapping[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """``(K, P)`` from ``(K, *shape)`` tensors in the order ``names``."""
    return torch.cat([params[n].reshape(params[n].shape[0], -1) for n in names], 1)


def _unflatten(flat: torch.Tensor, shapes: Mapping[str, torch.Size]) -> Params:
    """``{name: (K, *shape)}`` from ``flat (K, P)``."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[:, start : start + size].reshape(flat.shape[0], *shape)
        start += size
    return out


class NUTS(Inference):
    """Full-batch NUTS over all parameters (Pyro).

    Args:
        num_samples: kept draws per chain.
        warmup_steps: adaptation steps per chain (step size and a diagonal mass matrix).
        num_chains: chains, run sequentially.
        target_accept_prob: the dual-averaging target.
        max_tree_depth: the largest trajectory is ``2**max_tree_depth`` steps.
        init: ``"default"`` or ``"prior"`` starting points (see
            :meth:`~bayesfn.bayesnn.inference.base.BNNTarget.init_params`).
        dense_mass: adapt a dense mass matrix instead of a diagonal one.

    The fitted state is ``{"samples": {name: (C, S, *shape)}}``;
    ``fit_result_.losses`` holds ``−log p(θ, D) / n`` after every iteration (warm-up
    included, chain after chain) and ``fit_result_.diagnostics`` the step sizes and
    divergences per chain.
    """

    def __init__(
        self,
        num_samples: int = 500,
        warmup_steps: int = 500,
        num_chains: int = 2,
        target_accept_prob: float = 0.8,
        max_tree_depth: int = 10,
        init: str = "default",
        dense_mass: bool = False,
    ) -> None:
        for name, value, low in [
            ("num_samples", num_samples, 1),
            ("warmup_steps", warmup_steps, 0),
            ("num_chains", num_chains, 1),
            ("max_tree_depth", max_tree_depth, 1),
        ]:
            if not (isinstance(value, int) and value >= low):
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        if not (isinstance(target_accept_prob, float) and 0 < target_accept_prob < 1):
            raise ValueError(
                f"target_accept_prob must be a float in (0, 1); got {target_accept_prob!r}"
            )
        if init not in ("default", "prior"):
            raise ValueError(f"init must be 'default' or 'prior'; got {init!r}")
        self.num_samples = num_samples
        self.warmup_steps = warmup_steps
        self.num_chains = num_chains
        self.target_accept_prob = target_accept_prob
        self.max_tree_depth = max_tree_depth
        self.init = init
        self.dense_mass = bool(dense_mass)

    def run(
        self,
        target: BNNTarget,
        *,
        seed=None,
        progress_bar=True,
        callbacks=(),
        checkpoint_dir=None,
        **options: Any,
    ):
        self._check_options(options)
        if callbacks or checkpoint_dir is not None:
            raise ValueError("NUTS takes no callbacks= or checkpoint_dir= (Pyro runs the loop)")
        from pyro.infer.mcmc import MCMC
        from pyro.infer.mcmc import NUTS as PyroNUTS

        base = 0 if seed is None else seed
        start = target.init_params(
            self.num_chains, generator=torch.Generator().manual_seed(base), how=self.init
        )
        names = list(start)
        shapes = {n: start[n].shape[1:] for n in names}
        flat_start = _flatten(start, names)

        def potential(values: dict[str, torch.Tensor]) -> torch.Tensor:
            return -target.log_joint(_unflatten(values["theta"][None], shapes))[0]

        began = time.perf_counter()
        chains, diagnostics = [], {"step_size": [], "divergences": []}
        losses: list[float] = []

        def record(kernel, values, stage, i) -> None:  # the potential per data point
            with torch.no_grad():
                losses.append(float(potential(values)) / target.num_data)

        for c in range(self.num_chains):
            kernel = PyroNUTS(
                potential_fn=potential,
                target_accept_prob=self.target_accept_prob,
                max_tree_depth=self.max_tree_depth,
                full_mass=self.dense_mass,
            )
            mcmc = MCMC(
                kernel,
                num_samples=self.num_samples,
                warmup_steps=self.warmup_steps,
                initial_params={"theta": flat_start[c].clone()},
                disable_progbar=not progress_bar,
                hook_fn=record,
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(base + 1 + c)
                mcmc.run()
            chains.append(mcmc.get_samples()["theta"].detach())
            diagnostics["step_size"].append(float(kernel.step_size))
            # the kernel's record of divergent iterations (negative during warm-up); Pyro's
            # MCMC.diagnostics() would also compute R-hat, which needs >= 4 draws
            divergent = getattr(kernel, "_divergences", [])
            diagnostics["divergences"].append(sum(1 for t in divergent if t >= 0))
        flat = torch.stack(chains)  # (C, S, P)
        draws = _unflatten(flat.reshape(-1, flat.shape[-1]), shapes)
        samples = {
            n: v.reshape(self.num_chains, self.num_samples, *shapes[n]) for n, v in draws.items()
        }
        result = FitResult(
            losses=losses,
            num_steps=self.num_chains * (self.warmup_steps + self.num_samples),
            wall_time=time.perf_counter() - began,
            diagnostics=diagnostics,
        )
        return {"samples": samples}, result

    def draws(self, target, state, num_samples=None, *, generator=None) -> Params:
        return dict(state["samples"])  # (C, S, *shape)
