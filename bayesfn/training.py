"""The one optimisation loop every bayesfn model trains with.

:func:`optimize` runs a gradient-based fit of a ``torch.nn.Module`` against a loss
closure and gives every model the same behaviour: a ``tqdm`` progress bar,
callbacks, early stopping on a validation metric with restoration of the best
parameters, seeding, checkpoints every ``N`` steps with exact resume (parameters,
optimiser, scheduler, data order and RNG states), data-parallel training when
launched under ``torchrun``, and on one GPU an optional replay of each step's forward and
backward as a recorded CUDA graph (``cuda_graph=True``), for models whose step is bound
by kernel launches.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bayesfn import io

__all__ = [
    "FitResult",
    "StepInfo",
    "distributed_context",
    "optimize",
    "seed_everything",
]

logger = logging.getLogger(__name__)

_CKPT_FORMAT = "bayesfn-checkpoint"


@dataclass
class FitResult:
    """What a fit recorded.

    Attributes:
        losses: training loss after each step (the global-batch mean under DDP).
        val_history: ``[step, value]`` pairs of the validation metric.
        num_steps: steps taken (including those before a resume).
        wall_time: seconds spent in this process (not counting earlier runs).
        best_step: step whose parameters were kept by early stopping, if used.
        stopped_early: whether early stopping ended the fit.
        resumed_from: the step a checkpoint resumed from, if any.
        diagnostics: model-specific extras (hyperparameters, ESS, ...).
    """

    losses: list[float] = field(default_factory=list)
    val_history: list[list[float]] = field(default_factory=list)
    num_steps: int = 0
    wall_time: float = 0.0
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from: int | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StepInfo:
    """Handed to every callback after each step; a callback returning ``True`` stops."""

    step: int
    loss: float
    module: torch.nn.Module
    val_metric: float | None
    result: FitResult


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG is the point
    torch.manual_seed(seed)


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1


def distributed_context() -> _Dist:
    """The process's rank and world size, starting ``torch.distributed`` (gloo on CPU,
    NCCL on CUDA) when launched by ``torchrun`` with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return _Dist(rank=dist.get_rank(), world_size=dist.get_world_size())


def _make_optimizer(
    optimizer: str | Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    params: list[torch.nn.Parameter],
    lr: float,
) -> torch.optim.Optimizer:
    if callable(optimizer):
        return optimizer(params)
    choices = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if optimizer not in choices:
        raise ValueError(
            f"optimizer must be one of {sorted(choices)} or a callable; got {optimizer!r}"
        )
    extra = {}
    if optimizer != "sgd":
        # the fused update is one kernel per device and dtype instead of several per
        # tensor: a small model's training step on a GPU is bound by such launches
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        extra["fused"] = fused or None
    return choices[optimizer](params, lr=lr, **extra)


def _check_data(
    data: Sequence[torch.Tensor] | None, batch_size: int | None
) -> tuple[tuple[torch.Tensor, ...], int]:
    """``data`` as a tuple of tensors sharing their first dimension ``n``, checked together
    with ``batch_size``; ``((), 0)`` without data."""
    tensors: tuple[torch.Tensor, ...] = tuple(data) if data is not None else ()
    n = tensors[0].shape[0] if tensors else 0
    if tensors:
        for i, t in enumerate(tensors):
            if t.shape[0] != n:
                raise ValueError(f"data[{i}] has {t.shape[0]} rows; data[0] has {n}")
        if n == 0:
            raise ValueError("data is empty")
    if batch_size is not None:
        if batch_size < 1 or (tensors and batch_size > n):
            raise ValueError(f"batch_size must be in [1, {n}]; got {batch_size}")
        if not tensors:
            raise ValueError("batch_size= needs data=")
    return tensors, n


def _shared_seed(seed: int | None, d: _Dist) -> int:
    """``seed``, or a fresh random one that every rank agrees on (rank 0's)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        if d.active:
            s = torch.tensor([seed])
            dist.broadcast(s, 0)
            seed = int(s.item())
    return seed


class _BatchStream:
    """Shuffled minibatches over ``n`` examples, epoch after epoch, with state that can be
    saved and restored exactly. Each rank takes its own strided share of a global batch."""

    def __init__(self, n: int, batch_size: int | None, generator: torch.Generator, d: _Dist):
        self.n, self.d, self.generator = n, d, generator
        self.batch_size = n if batch_size is None else batch_size
        self.shuffle = batch_size is not None  # full batch: the data as given, every step
        self.perm = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            # drop the ragged tail so every step sees a full global batch
            if self.shuffle:
                self.perm = torch.randperm(self.n, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx[self.d.rank :: self.d.world_size]

    def state(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos, "generator": self.generator.get_state()}

    def load(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], state["pos"]
        self.generator.set_state(state["generator"])


def _average_gradients(params: list[torch.nn.Parameter], weight: float, total: float) -> None:
    """All-reduce gradients weighted by local batch size: with a per-batch *mean* loss
    this gives exactly the gradient of the global-batch mean (what DDP computes)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.mul_(weight)
        dist.all_reduce(p.grad)
        p.grad.div_(total)


def _loss_and_grad(loss_fn, batch) -> torch.Tensor:
    """``loss_fn(batch)``, checked to be a scalar, and its backward."""
    loss = loss_fn(batch)
    if loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar; got shape {tuple(loss.shape)}")
    loss.backward()
    return loss


def _forward_backward(loss_fn, batch, side: torch.cuda.Stream | None) -> torch.Tensor:
    """:func:`_loss_and_grad`, on the CUDA stream ``side`` when given (the warm-up before
    a CUDA graph recording, which must not run on the current stream); the current
    stream then waits for it."""
    if side is None:
        return _loss_and_grad(loss_fn, batch)
    current = torch.cuda.current_stream(side.device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        loss = _loss_and_grad(loss_fn, batch)
    current.wait_stream(side)
    return loss


class _GraphedStep:
    """The forward and backward of ``loss_fn`` on one batch shape, recorded once as a
    CUDA graph. The graph owns static copies of the batch, the loss and (allocated
    during the recording, because they are ``None`` then) the parameters' ``.grad``
    tensors; :meth:`replay` copies a new batch in and reruns every recorded kernel,
    overwriting those same tensors."""

    def __init__(self, loss_fn, batch: tuple[torch.Tensor, ...]):
        self.batch = tuple(t.clone() for t in batch)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.loss = _loss_and_grad(loss_fn, self.batch)
        except RuntimeError as err:
            raise RuntimeError(
                "cuda_graph=True: recording the training step failed; its loss_fn must not "
                f"synchronise with the host or change shapes between steps ({err})"
            ) from err

    def replay(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        for static, new in zip(self.batch, batch, strict=True):
            if new is not static:
                static.copy_(new)
        self.graph.replay()
        return self.loss


def optimize(
    module: torch.nn.Module,
    loss_fn: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    *,
    data: Sequence[torch.Tensor] | None = None,
    batch_size: int | None = None,
    max_steps: int = 1000,
    optimizer: str | Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] = "adam",
    lr: float = 1e-2,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    grad_clip: float | None = None,
    seed: int | None = None,
    callbacks: Sequence[Callable[[StepInfo], bool | None]] = (),
    val_fn: Callable[[], float] | None = None,
    val_every: int = 50,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress_bar: bool = True,
    desc: str = "fit",
    result: FitResult | None = None,
    on_nonfinite: Callable[[tuple[torch.Tensor, ...], torch.Tensor], None] | None = None,
    cuda_graph: bool = False,
) -> FitResult:
    """Minimise ``loss_fn`` over ``module``'s trainable parameters.

    Args:
        module: holds the parameters; trained in place (``train()`` mode during the fit,
            ``eval()`` after).
        loss_fn: maps a batch (a tuple of tensors sliced from ``data`` along dim 0, or
            ``()`` when ``data`` is None) to a scalar loss. With ``data`` it must be the
            *mean* over the batch's examples, which makes data-parallel sharding exact.
        data: tensors sharing their first dimension ``n``.
        batch_size: global minibatch size (``None``: the full data every step). Under
            ``torchrun`` each of ``W`` ranks takes a strided ``1/W`` share.
        max_steps: total optimisation steps (a resumed fit counts earlier steps).
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``callable(params) -> Optimizer``.
        lr: learning rate for the named optimisers.
        scheduler: ``callable(optimizer) -> LRScheduler``, stepped after every step.
        grad_clip: clip the global gradient norm to this value.
        seed: seeds torch's global RNG (``seed + rank``) and the data order (``seed``).
        callbacks: called with a :class:`StepInfo` after each step; ``True`` stops.
        val_fn: validation metric (lower is better), evaluated every ``val_every`` steps
            under ``torch.no_grad()`` with the module in eval mode.
        patience: stop after this many evaluations without an improvement larger than
            ``min_delta``.
        restore_best: whenever ``val_fn`` is given, end the fit (early or not) with the
            parameters of the best evaluation.
        checkpoint_dir: write a checkpoint here every ``checkpoint_every`` steps and at
            the end; if one exists, resume from it exactly.
        progress_bar: show a ``tqdm`` bar (rank 0 only).
        result: an existing :class:`FitResult` to extend (its ``diagnostics`` are kept).
        on_nonfinite: called with ``(batch, loss)`` when the loss is not finite, before
            the generic ``FloatingPointError``; a model raises a more precise error from
            it (which layer or parameter went bad). It lets ``loss_fn`` itself stay free
            of host synchronisations.
        cuda_graph: after two eager warm-up steps, record the forward and backward of a
            step as a CUDA graph and replay it at every later step (the optimiser update
            stays eager). A small model's step on a GPU is bound by kernel launches; a
            replay launches them all at once. Needs CUDA parameters, a single process,
            and a ``loss_fn`` that never synchronises with the host (no ``.item()``, no
            Python branch on a tensor value); each step still reads the loss once, to
            stop on a non-finite value before the update.

    Returns:
        The :class:`FitResult`; the module holds the final (or best) parameters.
    """
    from tqdm.auto import tqdm

    if max_steps < 0:
        raise ValueError(f"max_steps must be non-negative; got {max_steps}")
    if checkpoint_every < 1 or val_every < 1:
        raise ValueError("checkpoint_every and val_every must be positive")
    if patience is not None and val_fn is None:
        raise ValueError("patience= needs val_fn= to measure improvement")
    d = distributed_context()
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("module has no trainable parameters")
    device = params[0].device
    if cuda_graph:
        if not all(p.device.type == "cuda" for p in params):
            raise ValueError(f"cuda_graph=True needs CUDA parameters; they are on {device}")
        if d.active:
            raise ValueError("cuda_graph=True does not support data-parallel (torchrun) runs")

    tensors, n = _check_data(data, batch_size)
    global_batch = batch_size if batch_size is not None else n
    if d.active and tensors and global_batch < d.world_size:
        raise ValueError(
            f"a global batch of {global_batch} cannot be split over {d.world_size} ranks"
        )

    seed = _shared_seed(seed, d)  # every rank must see the same data order
    torch.manual_seed(seed + d.rank)
    data_gen = torch.Generator().manual_seed(seed)
    stream = _BatchStream(n, batch_size, data_gen, d) if tensors else None
    whole = None
    if tensors and batch_size is None and not d.active:
        whole = tuple(t.to(device) for t in tensors)

    if d.active:  # identical starting point on every rank
        with torch.no_grad():
            for p in module.parameters():
                dist.broadcast(p.data, 0)

    opt = _make_optimizer(optimizer, params, lr)
    sched = scheduler(opt) if scheduler is not None else None
    result = result if result is not None else FitResult()
    best = {"value": math.inf, "step": None, "state": None, "bad": 0}

    ckpt_path = None
    if checkpoint_dir is not None:
        ckpt_path = Path(checkpoint_dir) / (f"rank{d.rank}" if d.active else "latest")
    step = 0

    def capture() -> dict[str, Any]:
        return {
            "step": step,
            "module": module.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "stream": stream.state() if stream is not None else None,
            "torch_rng": torch.get_rng_state(),
            "result": {k: v for k, v in result.to_dict().items() if k != "wall_time"},
            "best": best,
        }

    def save_checkpoint() -> None:
        io.write_state(ckpt_path, {"format": _CKPT_FORMAT}, capture())

    if ckpt_path is not None and (ckpt_path / io.CONFIG_FILE).exists():
        header, state = io.read_state(ckpt_path)
        if header.get("format") != _CKPT_FORMAT:
            raise ValueError(f"{ckpt_path} is not a bayesfn checkpoint")
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
        if stream is not None and state["stream"] is not None:
            stream.load(state["stream"])
        torch.set_rng_state(state["torch_rng"])
        for k, v in state["result"].items():
            setattr(result, k, v)
        best.update(state["best"])
        step = state["step"]
        result.resumed_from = step
        logger.info("resumed from %s at step %d", ckpt_path, step)

    start = time.perf_counter()
    module.train()
    bar = tqdm(
        total=max_steps,
        initial=step,
        desc=desc,
        disable=not progress_bar or d.rank != 0,
        dynamic_ncols=True,
        leave=False,
    )
    stop = result.stopped_early
    graphed: _GraphedStep | None = None
    side = torch.cuda.Stream(device) if cuda_graph else None
    first_step = step  # two eager steps of this call, then the recording
    try:
        while step < max_steps and not stop:
            if whole is not None:  # the full data every step: no per-step gather
                batch, local = whole, float(n)
            elif stream is not None:
                idx = stream.next()
                batch = tuple(t[idx].to(device) for t in tensors)
                local = float(len(idx))
            else:
                batch, local = (), 1.0
            if side is not None and step - first_step >= 2:
                opt.zero_grad(set_to_none=True)  # the recording allocates static grads
                graphed, side = _GraphedStep(loss_fn, batch), None
            if graphed is not None:
                loss = graphed.replay(batch)  # forward and backward; grads in place
            else:
                opt.zero_grad(set_to_none=True)
                loss = _forward_backward(loss_fn, batch, side)
            loss_value = loss.detach()
            value = float(loss_value)  # the step's one host synchronisation
            if not math.isfinite(value):
                if on_nonfinite is not None:
                    on_nonfinite(batch, loss)
                raise FloatingPointError(
                    f"{desc}: the loss became {value} at step {step + 1}; lower lr= or check "
                    "the data and initialisation"
                )
            if d.active:
                total = float(global_batch) if stream is not None else float(d.world_size)
                _average_gradients(params, local, total)
                loss_value = loss_value * local
                dist.all_reduce(loss_value)
                loss_value = loss_value / total
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            if d.active:
                value = float(loss_value)
            result.losses.append(value)
            result.num_steps = step

            val = None
            if val_fn is not None and (step % val_every == 0 or step == max_steps):
                module.eval()
                with torch.no_grad():
                    val = float(val_fn())
                module.train()
                result.val_history.append([step, val])
                if val < best["value"] - min_delta:
                    best.update(
                        value=val, step=step, bad=0, state=copy.deepcopy(module.state_dict())
                    )
                else:
                    best["bad"] += 1
                    if patience is not None and best["bad"] >= patience:
                        stop = result.stopped_early = True
            for cb in callbacks:
                if cb(StepInfo(step, value, module, val, result)):
                    stop = True
            bar.update(1)
            if step % 10 == 0 or step == max_steps:
                bar.set_postfix(loss=f"{value:.4g}")
            if ckpt_path is not None and (
                step % checkpoint_every == 0 or step == max_steps or stop
            ):
                save_checkpoint()
    finally:
        bar.close()
        module.eval()
    if val_fn is not None and restore_best and best["state"] is not None:
        module.load_state_dict(best["state"])
        result.best_step = best["step"]
    result.wall_time += time.perf_counter() - start
    return result
