"""Sets of functions for stochastic-process learners (NDP, OFM): padded training batches,
a training sampler, and evaluation task sets that are generated once, saved and reloaded
identically by every method.

Three small things:

* :class:`FunctionSet` — ``b`` functions observed at up to ``n`` points each, padded to a
  common ``n`` with a boolean ``mask`` (True at real points). :func:`as_function_set`
  builds one from a :class:`~bayesfn.data.FunctionBatch`, an ``(x, y)`` pair of
  ``(b, n, d)`` / ``(b, n, m)`` tensors, or a sequence of ``(x_i, y_i)`` sets of varying
  size (``(n_i, d)`` and ``(n_i,)`` or ``(n_i, m)``).
* :class:`FunctionSampler` — a callable that draws a fresh padded batch from a family of
  :func:`~bayesfn.data.sample_functions` at every call (one point count per batch,
  uniform on a range, as in the NDP training data).
* :class:`TaskSet` with :func:`make_tasks` — context/target regression tasks with a
  varying number of context points per task; ``save(path)`` writes safetensors + JSON and
  :meth:`TaskSet.load` reads them back bit for bit, so that every method is scored on the
  same file.

Example:
    >>> tasks = make_tasks("se", 128, lengthscale=0.25, variance=1.0, noise_std=0.05, seed=0)
    >>> tasks.save("tasks/se_1d")
    >>> same = TaskSet.load("tasks/se_1d")
    >>> for i in range(len(same)):
    ...     (x_c, y_c), (x_t, y_t) = same.task(i)   # unpadded tensors of task i
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from bayesfn import io

from ._rng import make_generator
from .functions import FunctionBatch, sample_functions

__all__ = ["FunctionSampler", "FunctionSet", "TaskSet", "as_function_set", "make_tasks"]

_TASKS_FORMAT = "bayesfn-tasks"


@dataclass
class FunctionSet:
    """``b`` functions padded to ``n`` points.

    Attributes:
        x: ``(b, n, d)`` inputs (padding holds arbitrary finite values).
        y: ``(b, n, m)`` values.
        mask: ``(b, n)`` bool, True at real points; every function has at least one.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 3 or self.y.ndim != 3 or self.x.shape[:2] != self.y.shape[:2]:
            raise ValueError(
                "FunctionSet needs x (b, n, d) and y (b, n, m) with the same b and n; got "
                f"x {tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )
        if self.mask.shape != self.x.shape[:2] or self.mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(self.x.shape[:2])}; got "
                f"{self.mask.dtype} {tuple(self.mask.shape)}"
            )

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def input_dim(self) -> int:
        return self.x.shape[-1]

    @property
    def output_dim(self) -> int:
        return self.y.shape[-1]

    def to(self, device=None, dtype=None) -> FunctionSet:
        """A copy on ``device`` with floating tensors in ``dtype``."""
        return FunctionSet(
            self.x.to(device=device, dtype=dtype),
            self.y.to(device=device, dtype=dtype),
            self.mask.to(device=device),
        )


def _check_values(t: torch.Tensor, name: str) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")


def as_function_set(
    data: Any, *, dtype: torch.dtype = torch.float32, device=None, name: str = "functions"
) -> FunctionSet:
    """Turn function data into a padded :class:`FunctionSet`.

    Args:
        data: a :class:`FunctionSet`, a :class:`FunctionBatch` (its noisy ``y``), an
            ``(x, y)`` pair of ``(b, n, d)`` / ``(b, n, m)`` tensors or arrays, or a
            sequence of ``(x_i, y_i)`` sets with ``x_i (n_i, d)`` and ``y_i (n_i,)`` or
            ``(n_i, m)`` (padded to ``max n_i``).
        dtype: of the returned tensors.
        device: as ``dtype`` (described together above).
        name: what to call ``data`` in error messages.

    Raises:
        TypeError: an unsupported type; ValueError: bad shapes, empty sets or NaN / inf.
    """
    import numpy as np

    def tensor(v: Any, what: str) -> torch.Tensor:
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor or numpy array; got {type(v).__name__}")
        return v.to(device=device, dtype=dtype)

    if isinstance(data, FunctionSet):
        out = data.to(device, dtype)
    elif isinstance(data, FunctionBatch):
        mask = torch.ones(data.x.shape[:2], dtype=torch.bool, device=device)
        out = FunctionSet(tensor(data.x, f"{name}.x"), tensor(data.y, f"{name}.y"), mask)
    elif (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(v, torch.Tensor | np.ndarray) for v in data)
        and getattr(data[0], "ndim", 0) == 3
    ):
        x, y = tensor(data[0], f"{name}[0]"), tensor(data[1], f"{name}[1]")
        if y.ndim != 3 or y.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"{name} as an (x, y) pair needs x (b, n, d) and y (b, n, m); got x "
                f"{tuple(x.shape)} and y {tuple(y.shape)}"
            )
        out = FunctionSet(x, y, torch.ones(x.shape[:2], dtype=torch.bool, device=device))
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if len(data) == 0:
            raise ValueError(f"{name} is an empty sequence; give at least one (x, y) set")
        xs, ys = [], []
        for i, pair in enumerate(data):
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise TypeError(f"{name}[{i}] must be an (x, y) pair; got {type(pair).__name__}")
            x, y = tensor(pair[0], f"{name}[{i}][0]"), tensor(pair[1], f"{name}[{i}][1]")
            if y.ndim == 1:
                y = y[:, None]
            if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
                raise ValueError(
                    f"{name}[{i}] must be x (n, d) and y (n,) or (n, m) with the same n >= 1; "
                    f"got x {tuple(x.shape)} and y {tuple(pair[1].shape)}"
                )
            if xs and (x.shape[1] != xs[0].shape[1] or y.shape[1] != ys[0].shape[1]):
                raise ValueError(
                    f"{name}[{i}] has d={x.shape[1]}, m={y.shape[1]}; {name}[0] has "
                    f"d={xs[0].shape[1]}, m={ys[0].shape[1]}; all sets must agree"
                )
            xs.append(x)
            ys.append(y)
        n = max(x.shape[0] for x in xs)
        b = len(xs)
        x_pad = torch.zeros(b, n, xs[0].shape[1], dtype=dtype, device=device)
        y_pad = torch.zeros(b, n, ys[0].shape[1], dtype=dtype, device=device)
        mask = torch.zeros(b, n, dtype=torch.bool, device=device)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            x_pad[i, : len(x)], y_pad[i, : len(y)], mask[i, : len(x)] = x, y, True
        out = FunctionSet(x_pad, y_pad, mask)
    else:
        raise TypeError(
            f"{name} must be a FunctionBatch, an (x, y) pair of (b, n, d) / (b, n, m) "
            f"tensors, a sequence of (x, y) sets or a sampler; got {type(data).__name__}"
        )
    if len(out) == 0 or out.x.shape[1] == 0:
        raise ValueError(f"{name} holds no functions or no points (x {tuple(out.x.shape)})")
    _check_values(out.x, f"{name} x")
    _check_values(out.y, f"{name} y")
    if not out.mask.any(1).all():
        raise ValueError(f"every function in {name} needs at least one point")
    return out


class FunctionSampler:
    """Fresh padded batches of random functions, one per call.

    Each call draws ``n`` uniform on the inclusive range ``num_points`` (one count per
    batch), then ``batch_size`` functions of ``family`` at ``n`` points with
    :func:`~bayesfn.data.sample_functions` (function draws and observation noise are
    independent), padded to ``max(num_points)`` with ``mask`` False.

    Args:
        family: a family of :func:`~bayesfn.data.function_families`.
        batch_size: functions per batch.
        num_points: an int or an inclusive ``(min, max)`` range (NDP: ``(50, 59)`` in 1-D).
        dtype: of the returned tensors.
        **family_kwargs: passed to :func:`~bayesfn.data.sample_functions` (``input_dim``,
            ``x_range``, ``lengthscale``, ``noise_std``, ...).

    Call: ``sampler(generator=None) -> FunctionSet`` (torch's global generator when
    ``None``, so that a seeded training loop is reproducible).
    """

    def __init__(
        self,
        family: str,
        batch_size: int,
        num_points: int | tuple[int, int],
        *,
        dtype: torch.dtype = torch.float32,
        **family_kwargs: Any,
    ) -> None:
        low, high = (num_points, num_points) if isinstance(num_points, int) else num_points
        if not 1 <= low <= high:
            raise ValueError(f"num_points must be >= 1 or a (min, max) range; got {num_points!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        sample_functions(family, 1, 1, **family_kwargs)  # fail now on a bad family / setting
        self.family = family
        self.batch_size = batch_size
        self.num_points = (int(low), int(high))
        self.dtype = dtype
        self.family_kwargs = family_kwargs

    @property
    def input_dim(self) -> int:
        return int(self.family_kwargs.get("input_dim", 1))

    def __call__(self, generator: torch.Generator | None = None) -> FunctionSet:
        low, high = self.num_points
        n = int(torch.randint(low, high + 1, (), generator=generator))
        batch = sample_functions(
            self.family,
            self.batch_size,
            n,
            generator=generator,
            dtype=self.dtype,
            **self.family_kwargs,
        )
        pad = high - n
        x = torch.nn.functional.pad(batch.x, (0, 0, 0, pad))
        y = torch.nn.functional.pad(batch.y, (0, 0, 0, pad))
        mask = torch.arange(high) < n
        return FunctionSet(x, y, mask.expand(self.batch_size, high).clone())


@dataclass
class TaskSet:
    """Context/target regression tasks, padded.

    Attributes:
        x_context: ``(b, c, d)``; y_context: ``(b, c, m)``; context_mask: ``(b, c)`` bool
            (task ``i`` has ``context_mask[i].sum()`` context points, first in order).
        x_target: ``(b, t, d)``; y_target: ``(b, t, m)``; target_mask: ``(b, t)`` bool.
        f_target: ``(b, t, m)`` noise-free values at the targets (NaN when unknown).
        info: how the tasks were made (family, hyperparameters, seed, ...).
    """

    x_context: torch.Tensor
    y_context: torch.Tensor
    context_mask: torch.Tensor
    x_target: torch.Tensor
    y_target: torch.Tensor
    target_mask: torch.Tensor
    f_target: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    #: the names of the tensor attributes, in saved order
    TENSORS: ClassVar[tuple[str, ...]] = (
        "x_context",
        "y_context",
        "context_mask",
        "x_target",
        "y_target",
        "target_mask",
        "f_target",
    )

    def __len__(self) -> int:
        return self.x_target.shape[0]

    @property
    def num_context(self) -> torch.Tensor:
        """``(b,)`` context counts."""
        return self.context_mask.sum(1)

    def task(self, i: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]:
        """Task ``i`` without padding: ``((x_c (c_i, d), y_c (c_i, m)), (x_t, y_t))``."""
        cm, tm = self.context_mask[i], self.target_mask[i]
        return (self.x_context[i][cm], self.y_context[i][cm]), (
            self.x_target[i][tm],
            self.y_target[i][tm],
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tasks into folder ``path`` (``weights.safetensors`` + ``config.json``)."""
        state = {name: getattr(self, name) for name in self.TENSORS}
        return io.write_state(path, {"format": _TASKS_FORMAT, "info": self.info}, state)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskSet:
        """Read tasks written by :meth:`save` (JSON and safetensors only; never unpickles)."""
        header, state = io.read_state(path)
        if header.get("format") != _TASKS_FORMAT:
            raise ValueError(f"{path} does not hold a bayesfn task set")
        return cls(**state, info=header.get("info", {}))


def make_tasks(
    family: str,
    num_tasks: int,
    *,
    num_context: int | tuple[int, int] = (1, 9),
    num_target: int = 50,
    input_dim: int = 1,
    x_range: tuple[float, float] = (-2.0, 2.0),
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    **family_kwargs: Any,
) -> TaskSet:
    """Generate evaluation tasks: per task a function, ``c_i`` context points (uniform on
    the inclusive range ``num_context``, independently per task) and ``num_target`` target
    points, all inputs uniform on ``x_range^d`` (disjoint draws).

    The NDP interpolation protocol in 1-D is the default: 1–9 context points, 50 targets,
    ``x ~ U(-2, 2)``; pass ``lengthscale=0.25, variance=1.0, noise_std=0.05`` for its SE /
    Matérn sets and ``x_range=(2.0, 6.0)`` for "generalisation" tasks.

    Args:
        family: a family of :func:`~bayesfn.data.function_families`.
        num_tasks: ``b``.
        num_context: an int or an inclusive ``(min, max)`` range (``min >= 0``).
        num_target: targets per task.
        seed: seeds the one generator that draws everything.
        **family_kwargs: passed to :func:`~bayesfn.data.sample_functions`.
    """
    low, high = (num_context, num_context) if isinstance(num_context, int) else num_context
    if not 0 <= low <= high:
        raise ValueError(f"num_context must be >= 0 or a (min, max) range; got {num_context!r}")
    if num_target < 1:
        raise ValueError(f"num_target must be >= 1; got {num_target!r}")
    rng = make_generator(None, seed)
    counts = torch.randint(low, high + 1, (num_tasks,), generator=rng)
    c = max(high, 1)
    batch = sample_functions(
        family,
        num_tasks,
        c + num_target,
        input_dim=input_dim,
        x_range=x_range,
        generator=rng,
        dtype=dtype,
        **family_kwargs,
    )
    context_mask = torch.arange(c)[None, :] < counts[:, None]
    info = {
        "family": family,
        "num_tasks": num_tasks,
        "num_context": [low, high],
        "num_target": num_target,
        "input_dim": input_dim,
        "x_range": list(x_range),
        "seed": seed,
        "family_kwargs": {k: _jsonable(v) for k, v in family_kwargs.items()},
    }
    return TaskSet(
        x_context=batch.x[:, :c],
        y_context=batch.y[:, :c],
        context_mask=context_mask,
        x_target=batch.x[:, c:],
        y_target=batch.y[:, c:],
        target_mask=torch.ones(num_tasks, num_target, dtype=torch.bool),
        f_target=batch.f[:, c:],
        info=info,
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(u) for u in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
