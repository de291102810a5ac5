"""Deep ensembles (Lakshminarayanan et al., NeurIPS 2017): ``M`` independent MAP (or
maximum-likelihood) fits from their own starting points, trained together.

The members are one stacked parameter dict with a leading member dimension, evaluated
with :func:`~bayesfn.bayesnn.nets.batched_forward` and trained by one Adam optimiser on
the sum of their losses. Adam acts entry by entry, so this is exactly ``M`` separate
fits that share one minibatch order; member ``i`` starts from
``BNNTarget.init_params(1, generator=Generator().manual_seed(seed + i))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bayesfn.bayesnn.inference.base import BNNTarget, Inference, Params
from bayesfn.training import optimize

__all__ = ["DeepEnsemble"]


class DeepEnsemble(Inference):
    """``M`` networks fitted from independent initialisations.

    Args:
        num_members: ``M``.
        max_steps: optimisation steps (of all members at once).
        lr: Adam's learning rate.
        batch_size: minibatch size (``None``: full batch); all members see the same
            minibatches.
        init: ``"default"`` or ``"prior"`` starting points (see
            :meth:`~bayesfn.bayesnn.inference.base.BNNTarget.init_params`).
        use_prior: maximise the log posterior (MAP members, the default) or, with
            ``False``, the log likelihood alone.

    The fitted state is ``{"params": {name: (M, *shape)}}``; :meth:`draws` returns the
    ``M`` members as one chain of ``M`` draws.
    """

    def __init__(
        self,
        num_members: int = 5,
        max_steps: int = 2000,
        lr: float = 1e-2,
        batch_size: int | None = None,
        init: str = "default",
        use_prior: bool = True,
    ) -> None:
        if not (isinstance(num_members, int) and num_members >= 1):
            raise ValueError(f"num_members must be a positive integer; got {num_members!r}")
        if not (isinstance(max_steps, int) and max_steps >= 0):
            raise ValueError(f"max_steps must be a non-negative integer; got {max_steps!r}")
        if not (isinstance(lr, int | float) and lr > 0):
            raise ValueError(f"lr must be positive; got {lr!r}")
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        if init not in ("default", "prior"):
            raise ValueError(f"init must be 'default' or 'prior'; got {init!r}")
        self.num_members = num_members
        self.max_steps = max_steps
        self.lr = float(lr)
        self.batch_size = batch_size
        self.init = init
        self.use_prior = bool(use_prior)

    def initial_params(self, target: BNNTarget, seed: int | None) -> Params:
        """The members' starting points, ``(M, *shape)`` each: member ``i`` from a
        generator seeded with ``seed + i`` (``seed`` 0 when ``None``)."""
        base = 0 if seed is None else seed
        starts = [
            target.init_params(1, generator=torch.Generator().manual_seed(base + i), how=self.init)
            for i in range(self.num_members)
        ]
        return {n: torch.cat([s[n] for s in starts]) for n in starts[0]}

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
        start = self.initial_params(target, seed)
        holder = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v) for k, v in start.items()})

        def params() -> dict[str, torch.Tensor]:
            return {k.replace("__", "."): v for k, v in holder.items()}

        def loss(batch):
            p = params()
            objective = target.log_likelihood(p, batch if batch else None)
            if self.use_prior:
                objective = objective + target.log_prior(p)
            return -objective.sum() / target.num_data  # members' gradients stay separate

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
            desc=f"ensemble of {self.num_members}",
        )
        return {"params": {k: v.detach().clone() for k, v in params().items()}}, result

    def draws(self, target, state, num_samples=None, *, generator=None) -> Params:
        return {k: v.unsqueeze(0) for k, v in state["params"].items()}  # (1, M, *shape)
