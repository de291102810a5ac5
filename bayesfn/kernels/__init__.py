"""Compute kernels (Triton on CUDA, torch reference on CPU) for circuit evaluation.

Importing this package never imports triton. The circuit layers call exactly these
entry points:

* :func:`cp_layer` — folded CP sum layer ``W (a ⊙ b)`` in signed-log form;
* :func:`sq_layer` — squared-mode contraction ``W (A ∘ B) Wᵀ`` used for partition
  functions, marginals, moments and CDFs of squared circuits;
* :func:`signed_logsumexp`, :func:`signed_log` — helpers of the signed-log algebra.

:func:`use_backend` / :func:`set_backend` choose ``"auto"`` (Triton on CUDA, torch on
CPU), ``"torch"`` or ``"triton"``; see :mod:`bayesfn.kernels.backend`.
"""

from bayesfn.kernels.backend import get_backend, set_backend, use_backend
from bayesfn.kernels.cp_layer import cp_layer, signed_log, signed_logsumexp, sq_layer

__all__ = [
    "cp_layer",
    "get_backend",
    "set_backend",
    "signed_log",
    "signed_logsumexp",
    "sq_layer",
    "use_backend",
]
