"""Splitting batches of functions into context and target points (neural-process tasks)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._rng import make_generator
from .functions import FunctionBatch

__all__ = ["ContextTargetSplit", "split_context_target"]


class ContextTargetSplit(NamedTuple):
    """Context and target sets; unpacks as ``(x_c, y_c), (x_t, y_t) = split``.

    Attributes:
        context: ``(x_c, y_c)`` with shapes ``(b, n_c, d)`` and ``(b, n_c, m)``.
        target: ``(x_t, y_t)`` with shapes ``(b, n_t, d)`` and ``(b, n_t, m)``.
    """

    context: tuple[torch.Tensor, torch.Tensor]
    target: tuple[torch.Tensor, torch.Tensor]


def _count(value: int | tuple[int, int], name: str, generator: torch.Generator | None) -> int:
    """An int, or one draw uniform on the inclusive range ``(low, high)``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or an inclusive (min, max) pair; got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        low, high = value
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value) or low > high:
            raise ValueError(f"{name} range must be two ints with min <= max; got {value!r}")
        return int(torch.randint(low, high + 1, (), generator=generator).item())
    raise TypeError(f"{name} must be an int or an inclusive (min, max) pair; got {value!r}")


def split_context_target(
    batch: FunctionBatch | tuple[torch.Tensor, torch.Tensor],
    num_context: int | tuple[int, int],
    *,
    num_target: int | tuple[int, int] | None = None,
    include_context: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> ContextTargetSplit:
    """Pick random context points of each function; the others (or all) are targets.

    Each function gets its own random permutation of its ``n`` points; its first
    ``n_c`` points are the context. The targets are

    * ``include_context=False`` (default): points that are not context, i.e. the next
      ``n_t`` points of the permutation, ``n_t = n - n_c`` unless ``num_target`` says
      fewer. Context and target are disjoint, as when evaluating predictive likelihoods.
    * ``include_context=True``: the first ``n_t`` points of the permutation, ``n_t = n``
      unless ``num_target`` says fewer (it must be at least ``n_c``). The contexts come
      first among the targets, the usual neural-process training convention.

    ``n_c`` (and ``n_t``) are the same for every function in the batch so the results
    stack; a ``(min, max)`` pair draws one count per call, uniform on the inclusive
    range.

    Args:
        batch: a :class:`FunctionBatch`, or a pair ``(x, y)`` of ``(b, n, d)`` and
            ``(b, n, m)`` tensors.
        num_context: ``n_c``, an int ``>= 0`` or an inclusive ``(min, max)`` range.
        num_target: ``n_t``, ``None`` (as many as available), an int or a range.
        include_context: whether targets include the context points (see above).
        generator: the ``torch.Generator`` to draw from.
        seed: alternatively, an int seeding a fresh generator.

    Returns:
        :class:`ContextTargetSplit` ``((x_c, y_c), (x_t, y_t))``.

    Raises:
        ValueError: mismatched shapes or counts that do not fit in ``n``.
    """
    if isinstance(batch, FunctionBatch):
        x, y = batch.x, batch.y
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
    else:
        raise TypeError(
            f"batch must be a FunctionBatch or an (x, y) pair; got {type(batch).__name__}"
        )
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise TypeError("batch x and y must be torch tensors")
    if x.ndim != 3 or y.ndim != 3 or x.shape[:2] != y.shape[:2]:
        raise ValueError(
            "batch must hold x of shape (b, n, d) and y of shape (b, n, m) with the same "
            f"b and n; got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    b, n = x.shape[:2]
    rng = make_generator(generator, seed)
    n_c = _count(num_context, "num_context", rng)
    if include_context:
        if not 0 <= n_c <= n:
            raise ValueError(f"num_context must be in [0, {n}] (the number of points); got {n_c}")
        available, start = n, 0
    else:
        if not 0 <= n_c < n:
            raise ValueError(
                f"num_context must be in [0, {n - 1}] so that some target points remain "
                f"(n = {n}, include_context=False); got {n_c}"
            )
        available, start = n - n_c, n_c
    n_t = available if num_target is None else _count(num_target, "num_target", rng)
    low = max(n_c, 1) if include_context else 1
    if not low <= n_t <= available:
        raise ValueError(
            f"num_target must be in [{low}, {available}] here (n = {n}, n_c = {n_c}, "
            f"include_context={include_context}); got {n_t}"
        )

    keys = torch.rand(b, n, generator=rng, device=rng.device if rng is not None else "cpu")
    perm = keys.argsort(dim=1).to(x.device)
    context_idx = perm[:, :n_c]
    target_idx = perm[:, start : start + n_t]

    def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return t.gather(1, idx[..., None].expand(-1, -1, t.shape[-1]))

    return ContextTargetSplit(
        context=(take(x, context_idx), take(y, context_idx)),
        target=(take(x, target_idx), take(y, target_idx)),
    )
