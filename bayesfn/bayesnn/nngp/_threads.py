"""Torch intra-op threads for the NNGP kernels' no-autograd paths.

Those paths make many elementwise passes (the FC kernel a dozen per layer over ``n x m``
buffers, the CNN kernel thousands of small calls over cache-sized tiles). A call split
over threads waits for the slowest of them, so on a machine whose cores are shared with
other processes two threads ran 1.2 to 9 times (FC) and about 20 times (CNN) slower
than one (measurements in benchmarks/RESULTS.md, ``benchmarks/nngp_threads_study.py``).
The kernels therefore run those paths at one thread by default and restore torch's
setting afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def check_threads(value: object, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is ``None`` or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be None or a positive integer; got {value!r}")


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block at ``threads`` torch intra-op threads (``None``: torch's setting),
    restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
