"""NNGP / NTK of convolutional networks with a Flatten readout (neural-tangents ``stax``).

Architecture: ``depth`` blocks ``Conv(C', (f, f), padding="SAME", W_std, b_std) → φ``,
then ``Flatten() → Dense(1, W_std_last, b_std_last)``, in NTK parameterisation. With a
Flatten readout only same-pixel covariances matter (a *diagonal spatial* covariance),
so for every pair of images the state is one ``H x W`` map per layer:

* inputs: ``K⁰[p] = x[p]·x'[p] / C`` (mean over channels at pixel ``p``);
* ``Conv``: ``K ← W_std² box(K) + b_std²`` where ``box`` is the mean over the ``f x f``
  window with SAME zero padding (``Θ ← K_new + W_std² box(Θ)``);
* ``φ``: the closed-form maps of :mod:`bayesfn.bayesnn.nngp._activations`, pixel by pixel;
* ``Flatten → Dense``: ``K ← W_last² mean_p K[p] + b_last²``, ``Θ ← K_new + W_last² mean_p Θ[p]``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bayesfn.bayesnn.nngp._activations import ab_relu_inplace, diag_map, layer_map
from bayesfn.bayesnn.nngp._threads import check_threads, intra_op_threads

__all__ = ["cnn_kernel"]


def _box(t: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over ``size x size`` windows with XLA's SAME zero padding (offsets
    ``−(f−1)//2 … f//2``) of the last two dims of ``t`` (``... x H x W``), as separable
    shifted in-place sums (no padded copy): a new tensor, never a view of ``t``."""
    out = torch.empty_like(t)
    return _box_into(t, out, torch.empty_like(t), size)


def _box_into(src: torch.Tensor, out: torch.Tensor, tmp: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`_box` of ``src`` written to ``out`` (which may be ``src`` itself), using
    ``tmp`` (same shape, distinct from both) as scratch; returns ``out``. Every entry
    sees the same additions in the same order as in :func:`_box`, so the two agree
    exactly: the diagonal of a pair block then matches the per-image variance maps."""
    low = (size - 1) // 2
    offsets = [d for d in range(-low, size - low) if d != 0]

    def shifted_sum(from_: torch.Tensor, to: torch.Tensor, dim: int) -> None:
        to.copy_(from_)
        n = from_.shape[dim]
        for d in offsets:  # to[i] += from_[i + d] where 0 <= i + d < n
            if abs(d) >= n:
                continue
            if d > 0:
                to.narrow(dim, 0, n - d).add_(from_.narrow(dim, d, n - d))
            else:
                to.narrow(dim, -d, n + d).add_(from_.narrow(dim, 0, n + d))

    shifted_sum(src, tmp, -2)  # src is dead once tmp holds its row sums: out may alias it
    shifted_sum(tmp, out, -1)
    return out.div_(size * size)


def _blocks(n: int, m: int, side: int, symmetric: bool):
    """``(i0, i1, j0, j1)`` tiles of the ``n x m`` pair grid with sides ``side``; only
    tiles on or above the diagonal when ``symmetric`` (the rest are their transposes)."""
    for i0 in range(0, n, side):
        for j0 in range(i0 if symmetric else 0, m, side):
            yield i0, min(i0 + side, n), j0, min(j0 + side, m)


def _tiled_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor,
    k1_layers: list[torch.Tensor],
    k2_layers: list[torch.Tensor],
    *,
    side: int,
    symmetric: bool,
    activation: str,
    slopes: tuple[float, float],
    want_ntk: bool,
    filter_size: int,
    scales: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """The ``n x m`` kernel without autograd, one ``side x side`` tile of image pairs at
    a time (``x1``: ``n x H x W x C``, ``x2``: ``m x H x W x C``; ``k*_layers``: the
    per-image variance maps, ``len x H x W`` per layer). All tile states live in a few
    buffers allocated once, so that they stay in cache and never page-fault."""
    w2, b2, w2_last, b2_last = scales
    n, height, width, channels = x1.shape
    m = x2.shape[0]
    a, b = slopes
    relu_family = activation not in ("erf", "gelu")
    out = torch.empty(n, m, dtype=x1.dtype, device=x1.device)
    size = min(side, n) * min(side, m) * height * width
    flat = {
        key: torch.empty(size, dtype=x1.dtype, device=x1.device)
        for key in ("c", "tmp", "prod", "det") + (("ntk",) if want_ntk else ())
    }
    mask_flat = torch.empty(size, dtype=torch.bool, device=x1.device)
    for i0, i1, j0, j1 in _blocks(n, m, side, symmetric):
        shape = (i1 - i0, j1 - j0, height, width)
        count = shape[0] * shape[1] * height * width
        buf = {key: t[:count].view(shape) for key, t in flat.items()}
        work = {"prod": buf["prod"], "det": buf["det"], "mask": mask_flat[:count].view(shape)}
        c = buf["c"]
        if channels == 1:  # an outer product: the einsum's one-term sums, without its copy
            torch.mul(x1[i0:i1, None, ..., 0], x2[None, j0:j1, ..., 0], out=c)
        else:
            c.copy_(torch.einsum("nhwc,mhwc->nmhw", x1[i0:i1], x2[j0:j1])).div_(channels)
        ntk = buf["ntk"].zero_() if want_ntk else None
        for layer in range(len(k1_layers)):
            c = _box_into(c, buf["c"], buf["tmp"], filter_size).mul_(w2).add_(b2)
            if want_ntk:
                ntk = _box_into(ntk, ntk, buf["tmp"], filter_size).mul_(w2).add_(c)
            k1 = k1_layers[layer][i0:i1, None]  # tile rows x 1 x H x W
            k2 = k2_layers[layer][None, j0:j1]  # 1 x tile cols x H x W
            if relu_family:
                c, dot = ab_relu_inplace(c, k1, k2, a, b, want_ntk, work)
            else:
                c, dot = layer_map(activation, c, k1, k2, slopes, want_ntk)
            if want_ntk:
                ntk.mul_(dot)
        tile = w2_last * c.mean((-2, -1)) + b2_last
        if want_ntk:
            tile = tile + w2_last * ntk.mean((-2, -1))
        out[i0:i1, j0:j1] = tile
        if symmetric and j0 != i0:
            out[j0:j1, i0:i1] = tile.T
    return out


def cnn_kernel(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    depth: int = 1,
    activation: str = "relu",
    kind: str = "nngp",
    filter_size: int = 3,
    w_std: Any = 1.0,
    b_std: Any = 0.0,
    w_std_last: Any = 1.0,
    b_std_last: Any = 0.0,
    slopes: tuple[float, float] = (0.0, 1.0),
    chunk_elements: int = 2**24,
    block_elements: int | None = None,
    tile_threads: int | None = 1,
    diag: bool = False,
) -> torch.Tensor:
    """NNGP or NTK of a SAME-padded CNN with a Flatten readout.

    Args:
        x1: ``n x H x W x C`` images (NHWC, as in neural-tangents).
        x2: ``m x H x W x C`` images, or ``None`` for ``x1``.
        depth: number of ``Conv → φ`` blocks.
        activation: as in
            :func:`~bayesfn.bayesnn.nngp.kernel.nngp_kernel` (scalars or 0-d tensors).
        kind: see ``activation``.
        w_std: see ``activation``.
        b_std: see ``activation``.
        w_std_last: see ``activation``.
        b_std_last: see ``activation``.
        slopes: see ``activation``.
        filter_size: side ``f`` of the square filters.
        chunk_elements: with autograd on, rows of ``x1`` are processed in chunks so that
            the per-pixel state holds at most about this many elements.
        block_elements: without autograd, the pair grid is processed in square tiles
            whose per-pixel state holds about this many elements (default: 1 MiB of
            them), so that the dozen elementwise passes per layer run from cache rather
            than from memory and each pass is long enough to hide per-call costs; when
            ``x2`` is ``None`` (or views ``x1``'s memory with its shape and strides)
            only the tiles on and above the diagonal are computed.
        tile_threads: torch intra-op threads while the matrix is built without autograd
            (the variance maps and the tiled path; default 1; ``None`` leaves torch's
            setting; torch's setting is restored afterwards). The tiled path makes
            thousands of small calls, and a call split over threads waits
            for all of them: on a 2-core machine shared with other processes two
            threads made the kernel about 20 times slower than one (see
            :mod:`bayesfn.bayesnn.nngp._threads`). Pass ``None`` to use more cores
            on a dedicated machine.
        diag: return only ``K(x1_i, x2_i)`` as ``n`` values (needs ``n == m``).

    Returns:
        ``n x m`` kernel matrix, or ``n`` values when ``diag``.
    """
    # x2 a view of x1's very memory (NNGPKernel reshapes both) means K is symmetric
    symmetric = x2 is None or (
        x2.data_ptr() == x1.data_ptr() and x2.shape == x1.shape and x2.stride() == x1.stride()
    )
    x2 = x1 if x2 is None else x2
    if x1.ndim != 4 or x2.ndim != 4 or x1.shape[1:] != x2.shape[1:]:
        raise ValueError(
            "x1 and x2 must be n x H x W x C images of one shape; got "
            f"{tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    if not isinstance(filter_size, int) or filter_size < 1:
        raise ValueError(f"filter_size must be a positive integer; got {filter_size!r}")
    if block_elements is None:
        block_elements = 2**20 // x1.element_size()
    check_threads(tile_threads, "tile_threads")
    for name, value in (("chunk_elements", chunk_elements), ("block_elements", block_elements)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    want_ntk = kind == "ntk"
    channels = x1.shape[-1]

    def as_t(v: Any) -> torch.Tensor:  # python floats must not become float32 tensors
        return torch.as_tensor(v, dtype=x1.dtype, device=x1.device)

    w2, b2 = as_t(w_std) ** 2, as_t(b_std) ** 2
    w2_last, b2_last = as_t(w_std_last) ** 2, as_t(b_std_last) ** 2
    # without autograd the pair states are tiled and updated in place (same values)
    inplace = not (
        torch.is_grad_enabled() and any(t.requires_grad for t in (x1, x2, w2, b2, w2_last, b2_last))
    )

    def variance_layers(x: torch.Tensor) -> list[torch.Tensor]:
        """Pre-activation variance maps ``K(x_i, x_i)`` per layer: ``len(x) x H x W``."""
        layers = []
        k = (x * x).sum(-1) / channels
        for _ in range(depth):
            k = w2 * _box(k, filter_size) + b2
            layers.append(k)
            k = diag_map(activation, k, slopes, False)[0]
        return layers

    # without autograd the variance maps and the tiles run at tile_threads
    with intra_op_threads(tile_threads if inplace and not diag else None):
        k2_layers = variance_layers(x2)

        if diag:
            if x1.shape[0] != x2.shape[0]:
                raise ValueError("diag=True needs x1 and x2 with the same number of images")
            k1_layers = k2_layers if symmetric else variance_layers(x1)
            # pairs (x1_i, x2_i): every state is n x H x W, elementwise
            c = (x1 * x2).sum(-1) / channels
            ntk = torch.zeros_like(c) if want_ntk else None
            for layer in range(depth):
                c = w2 * _box(c, filter_size) + b2
                if want_ntk:
                    ntk = c + w2 * _box(ntk, filter_size)
                c, dot = layer_map(
                    activation, c, k1_layers[layer], k2_layers[layer], slopes, want_ntk
                )
                if want_ntk:
                    ntk = ntk * dot
            c_out = w2_last * c.mean((-2, -1)) + b2_last
            return c_out + w2_last * ntk.mean((-2, -1)) if want_ntk else c_out

        n, m = x1.shape[0], x2.shape[0]
        pixels = x1.shape[1] * x1.shape[2]
        if inplace:
            k1_layers = k2_layers if symmetric else variance_layers(x1)
            side = max(1, math.isqrt(max(1, block_elements // pixels)))
            return _tiled_kernel(
                x1,
                x2,
                k1_layers,
                k2_layers,
                side=side,
                symmetric=symmetric,
                activation=activation,
                slopes=slopes,
                want_ntk=want_ntk,
                filter_size=filter_size,
                scales=(w2, b2, w2_last, b2_last),
            )

        rows = max(1, chunk_elements // max(1, m * pixels))
        out = []
        for start in range(0, n, rows):
            a = x1[start : start + rows]
            c = torch.einsum("nhwc,mhwc->nmhw", a, x2) / channels  # chunk x m x H x W
            k1 = ((a * a).sum(-1) / channels).unsqueeze(1)  # chunk x 1 x H x W
            ntk = torch.zeros_like(c) if want_ntk else None
            for layer in range(depth):
                c = w2 * _box(c, filter_size) + b2
                k1 = w2 * _box(k1, filter_size) + b2
                if want_ntk:
                    ntk = c + w2 * _box(ntk, filter_size)
                k2 = k2_layers[layer].unsqueeze(0)  # 1 x m x H x W
                c, dot = layer_map(activation, c, k1, k2, slopes, want_ntk)
                k1 = diag_map(activation, k1, slopes, False)[0]
                if want_ntk:
                    ntk = ntk * dot
            c_out = w2_last * c.mean((-2, -1)) + b2_last
            out.append(c_out + w2_last * ntk.mean((-2, -1)) if want_ntk else c_out)
        return torch.cat(out, 0)
