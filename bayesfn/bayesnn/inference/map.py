"""Maximum a posteriori weights: the point-estimate baseline."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bayesfn.bayesnn.inference.base import BNNTarget, Inference
from bayesfn.training import optimize

__all__ = ["MAP"]


class MAP(Inference):
    """Maximise ``log p(w, D)`` (marginal prior for hierarchical priors) with Adam.

    Args:
        max_steps: optimisation steps.
        lr: Adam's learning rate.
        batch_size: minibatch size (``None``: full batch).
        init: ``"default"`` or ``"prior"`` starting point (see
            :meth:`~bayesfn.bayesnn.inference.base.BNNTarget.init_params`).
    """

    is_point_estimate = True

    def __init__(
        self,
        max_steps: int = 2000,
        lr: float = 1e-2,
        batch_size: int | None = None,
        init: str = "default",
    ) -> None:
        if not (isinstance(max_steps, int) and max_steps >= 0):
            raise ValueError(f"max_steps must be a non-negative integer; got {max_steps!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive; got {lr!r}")
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        if init not in ("default", "prior"):
            raise ValueError(f"init must be 'default' or 'prior'; got {init!r}")
        self.max_steps = max_steps
        self.lr = lr
        self.batch_size = batch_size
        self.init = init

    def run(
        self,
        target: BNNTarget,
        *,
        seed=None,
        progress_bar=True,
        callbacks=(),
        checkpoint_dir=None,
        max_steps: int | None = None,
        **options: Any,
    ):
        self._check_options(options)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        start = target.init_params(1, generator=generator, how=self.init)
        holder = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v) for k, v in start.items()})

        def params() -> dict[str, torch.Tensor]:
            return {k.replace("__", "."): v for k, v in holder.items()}

        def loss(batch):
            batch = batch if batch else None
            return -target.log_joint(params(), batch)[0] / target.num_data

        batch_size = target.batch_size(self.batch_size)
        result = optimize(
            holder,
            loss,
            data=(target.x, target.y),
            batch_size=batch_size,
            max_steps=self.max_steps if max_steps is None else max_steps,
            lr=self.lr,
            seed=seed,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            progress_bar=progress_bar,
            desc="MAP",
        )
        return {"params": {k: v.detach().clone() for k, v in params().items()}}, result

    def draws(self, target, state, num_samples=None, *, generator=None):
        return {k: v.unsqueeze(0) for k, v in state["params"].items()}  # (1, 1, *shape)
