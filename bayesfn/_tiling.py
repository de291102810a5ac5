"""Kernel matrices evaluated in row tiles, with bounded memory in the forward and the
backward pass.

A kernel such as the NNGP recursion or a GPyTorch ARD kernel builds several ``n x m``
temporaries per evaluation, and autograd keeps them all for the backward pass: at
``n = 10,000`` that is over 10 GB for one ``K(x, x)``. :func:`tiled_kernel_matrix`
writes ``K`` tile by tile (rows ``s : s + tile`` against all of ``x2``) under
``no_grad``, so the temporaries never exceed a few ``tile x m`` blocks besides the
result; its backward recomputes each tile with autograd on and contracts it with the
matching block of the incoming gradient at once, so no tile's graph outlives its own
step. Peak memory: the ``n x m`` result, the ``n x m`` incoming gradient in the
backward pass, and the temporaries of one tile (for a depth-4 NNGP about a hundred
``tile x m`` blocks, all freed before the next tile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["default_tile_rows", "tiled_kernel_matrix"]

# elements of one tile's t x m block: 2**18 float64 numbers are 2 MiB. The backward pass
# keeps about a hundred such blocks alive while it differentiates one tile of a deep
# NNGP recursion (measured: ~100 blocks at depth 4), about 200 MiB in all.
_TILE_ELEMENTS = 2**18


def default_tile_rows(num_columns: int, batch: int = 1) -> int:
    """Rows per tile so that one ``batch x tile x num_columns`` block holds about
    ``2**18`` numbers (at least one row)."""
    return max(1, _TILE_ELEMENTS // max(1, num_columns * batch))


class _TiledKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, full, x1, x2, tile, *params):
        n = x1.shape[-2]
        with torch.no_grad():
            if full is not None:
                out = full(x1, x2)
            else:
                first = fn(x1[..., :tile, :], x2)
                out = first.new_empty(first.shape[:-2] + (n, first.shape[-1]))
                out[..., : first.shape[-2], :] = first
                del first
                for start in range(tile, n, tile):
                    out[..., start : start + tile, :] = fn(x1[..., start : start + tile, :], x2)
        ctx.fn, ctx.tile, ctx.params = fn, tile, params
        ctx.save_for_backward(x1, x2)
        return out

    @staticmethod
    def backward(ctx, grad):
        x1, x2 = ctx.saved_tensors
        wanted = [i for i, p in enumerate(ctx.params) if ctx.needs_input_grad[5 + i]]
        grads: list[torch.Tensor | None] = [None] * len(ctx.params)
        if wanted:
            targets = [ctx.params[i] for i in wanted]
            for start in range(0, x1.shape[-2], ctx.tile):
                with torch.enable_grad():
                    block = ctx.fn(x1[..., start : start + ctx.tile, :], x2)
                    parts = torch.autograd.grad(
                        block,
                        targets,
                        grad[..., start : start + ctx.tile, :],
                        allow_unused=True,
                    )
                for i, g in zip(wanted, parts, strict=True):
                    if g is not None:
                        grads[i] = g if grads[i] is None else grads[i] + g
        return (None, None, None, None, None, *grads)


def tiled_kernel_matrix(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x1: torch.Tensor,
    x2: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    tile_rows: int | None = None,
    full: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``fn(x1, x2)`` computed in tiles of ``tile_rows`` rows of ``x1``.

    Args:
        fn: maps ``(..., t, d)`` and ``(..., m, d)`` inputs to a ``(..., t, m)`` kernel
            block; it may read ``params`` (e.g. a module's parameters) directly.
        x1: ``(..., n, d)`` inputs (not differentiated: they must not require grad).
        x2: ``(..., m, d)`` inputs (idem).
        params: every tensor ``fn`` reads that needs a gradient; the result's backward
            gives theirs.
        tile_rows: rows per tile (default :func:`default_tile_rows`).
        full: computes the whole ``(..., n, m)`` value of ``fn(x1, x2)`` without autograd
            in the forward pass instead of the tiles (for a kernel with a faster or
            leaner no-grad route of its own); the backward pass is tiled either way.

    Returns:
        The ``(..., n, m)`` matrix, differentiable in ``params``.
    """
    if x1.requires_grad or x2.requires_grad:
        raise ValueError("tiled_kernel_matrix does not differentiate in x1 or x2")
    if tile_rows is None:
        tile_rows = default_tile_rows(x2.shape[-2])
    if not isinstance(tile_rows, int) or tile_rows < 1:
        raise ValueError(f"tile_rows must be a positive integer; got {tile_rows!r}")
    return _TiledKernel.apply(fn, full, x1, x2, tile_rows, *params)
