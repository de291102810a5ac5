"""Which implementation runs behind :func:`bayesfn.kernels.cp_layer` and
:func:`bayesfn.kernels.sq_layer`.

Three settings:

* ``"auto"`` (default) — Triton for CUDA tensors of dtype float32 / float64 when triton is
  importable and the layer is in the size range where Triton measured faster
  (:data:`CP_TRITON_MAX_K`, :data:`SQ_TRITON_MAX_K`); the pure-torch reference otherwise
  (CPU tensors, other dtypes, no triton, sizes where the torch path wins);
* ``"torch"`` — always the pure-torch reference;
* ``"triton"`` — always Triton. CUDA tensors need triton installed (the ``gpu`` extra);
  CPU tensors run only under Triton's interpreter, i.e. with ``TRITON_INTERPRET=1`` set in
  the environment before triton is first imported (that is how the tests exercise the
  Triton code on machines without a GPU). Anything else raises a clear error.

Use it as a context manager or set it for the whole process::

    with bayesfn.kernels.use_backend("torch"):
        ...
    bayesfn.kernels.set_backend("triton")

This module never imports triton; it only asks whether it could.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from collections.abc import Iterator

import torch

__all__ = [
    "BACKENDS",
    "CP_TRITON_MAX_K",
    "SQ_TRITON_MAX_K",
    "get_backend",
    "set_backend",
    "use_backend",
    "use_triton",
]

BACKENDS = ("auto", "torch", "triton")
TRITON_DTYPES = (torch.float32, torch.float64)

#: With backend "auto", :func:`~bayesfn.kernels.cp_layer` runs Triton only up to this
#: ``max(K_in, K_out)``; ``None``: at every size. Since the Triton CP layer switches to
#: cuBLAS GEMMs with fused Triton prologue / epilogue above
#: :data:`bayesfn.kernels.triton_cp.GEMM_MIN_K`, it measured at least as fast as the torch
#: path at every K tried (H200, float32, signed layer: forward 1.4-2.3x, forward+backward
#: 1.04-2.3x for K = 64 ... 1024; see benchmarks/RESULTS.md). Before that path existed the
#: fused kernel lost above K = 256 (0.5x at 1024), and this limit was 256.
CP_TRITON_MAX_K: int | None = None

#: With backend "auto", :func:`~bayesfn.kernels.sq_layer` runs Triton only up to this
#: ``K_out`` and only when no gradient is needed (H200, float32: forward 2.6x / 1.7x faster
#: than torch at K = 16 / 64, but forward + backward 0.75x / 0.57x, and at K = 256 even the
#: two-stage forward is 0.48x; see benchmarks/RESULTS.md).
SQ_TRITON_MAX_K = 64

_backend: contextvars.ContextVar[str] = contextvars.ContextVar(
    "bayesfn_kernels_backend", default="auto"
)


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend() -> str:
    """The current setting: ``"auto"``, ``"torch"`` or ``"triton"``."""
    return _backend.get()


def set_backend(name: str) -> None:
    """Set the backend for the current context (thread / task) until changed again."""
    _backend.set(_check(name))


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the kernels inside the ``with`` block on backend ``name``."""
    token = _backend.set(_check(name))
    try:
        yield
    finally:
        _backend.reset(token)


@functools.cache
def triton_available() -> bool:
    """Whether triton can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_enabled() -> bool:
    """Whether Triton's CPU interpreter is switched on (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def cp_prefers_triton(weight: torch.Tensor) -> bool:
    """Whether "auto" should send a CP layer with this ``(F, K_out, K_in)`` weight to
    Triton: up to ``K = CP_TRITON_MAX_K`` (always when it is ``None``)."""
    if CP_TRITON_MAX_K is None:
        return True
    return max(weight.shape[-2], weight.shape[-1]) <= CP_TRITON_MAX_K


def sq_prefers_triton(weight: torch.Tensor, *, needs_grad: bool = False) -> bool:
    """Whether "auto" should send a squared-mode layer with this ``(F, K_out, K_in)``
    weight to Triton: for forward-only evaluation up to ``K_out = SQ_TRITON_MAX_K``;
    never when a gradient will be taken (the torch path measured faster there)."""
    return not needs_grad and weight.shape[-2] <= SQ_TRITON_MAX_K


def use_triton(*tensors: torch.Tensor, prefer: bool = True) -> bool:
    """Decide, for these input tensors, whether the Triton kernels run.

    ``prefer=False`` keeps backend "auto" on torch (shapes where Triton does not win);
    backend "triton" ignores it.

    Raises:
        RuntimeError: with backend ``"triton"`` when Triton cannot run these tensors
            (triton missing, CPU tensors without ``TRITON_INTERPRET=1``, mixed devices).
        TypeError: with backend ``"triton"`` and a dtype other than float32 / float64.
    """
    name = _backend.get()
    if name == "torch":
        return False
    devices = {t.device.type for t in tensors}
    cuda = devices == {"cuda"}
    if name == "auto":
        dtypes_ok = all(t.dtype in TRITON_DTYPES for t in tensors)
        return prefer and cuda and dtypes_ok and triton_available()
    # name == "triton": fail loudly rather than fall back silently.
    if not triton_available():
        raise RuntimeError(
            "bayesfn.kernels backend 'triton' needs triton: pip install 'bayesfn[gpu]'"
        )
    bad = [t.dtype for t in tensors if t.dtype not in TRITON_DTYPES]
    if bad:
        raise TypeError(f"the Triton kernels take float32 or float64 tensors, got {bad[0]}")
    if cuda:
        return True
    if devices == {"cpu"}:
        if not interpreter_enabled():
            raise RuntimeError(
                "bayesfn.kernels backend 'triton' got CPU tensors: Triton runs on CPU only "
                "under its interpreter; set TRITON_INTERPRET=1 in the environment before "
                "triton is imported, or use backend 'auto' / 'torch'"
            )
        return True
    raise RuntimeError(
        f"bayesfn.kernels backend 'triton' needs all tensors on one CUDA device (or on CPU "
        f"under TRITON_INTERPRET=1), got devices {sorted(devices)}"
    )
