"""NNGP / NTK of convolutional networks with a Flatten readout (neural-tangents ``stax``).

Architecture: ``depth`` blocks ``Conv(C', (f, f), padding="SAME", W_std, b_std) → φ``,
then ``Flatten() → Dense(1, W_std_last, b_std_last)``, in NTK parameterisation. With a
Flatten readout only same-pixel covariances matter (a *diagonal spatial* covariance),
so for every pair of images the state is one ``H x W`` map per layer:

* inputs: ``K⁰[p] = x[p]·x'[p] / C`` (mean over channels at pixel ``p``);
* ``Conv``: ``K ← W_std² box(K) + b_std²`` where ``box`` is the mean over the ``f x f``
  window with SAME zero padding (``Θ ← K_new + W_std² box(Θ)``);
* ``φ``: the closed-form maps of :mod:`bayesfn.bayesnn._activations`, pixel by pixel;
* ``Flatten → Dense``: ``K ← W_last² mean_p K[p] + b_last²``, ``Θ ← K_new + W_last² mean_p Θ[p]``.
"""

from __future__ import annotations

from typing import Any

import torch

from bayesfn.bayesnn._activations import ab_relu_inplace, diag_map, layer_map

__all__ = ["cnn_kernel"]


def _box(t: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over ``size x size`` windows with XLA's SAME zero padding (offsets
    ``−(f−1)//2 … f//2``) of the last two dims of ``t`` (``... x H x W``), as separable
    shifted in-place sums (no padded copy): a new tensor, never a view of ``t``."""
    low = (size - 1) // 2
    offsets = [d for d in range(-low, size - low) if d != 0]

    def shifted_sum(src: torch.Tensor, dim: int) -> torch.Tensor:
        out = src.clone()
        n = src.shape[dim]
        for d in offsets:  # out[i] += src[i + d] where 0 <= i + d < n
            if abs(d) >= n:
                continue
            if d > 0:
                out.narrow(dim, 0, n - d).add_(src.narrow(dim, d, n - d))
            else:
                out.narrow(dim, -d, n + d).add_(src.narrow(dim, 0, n + d))
        return out

    return shifted_sum(shifted_sum(t, -2), -1).div_(size * size)


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
    diag: bool = False,
) -> torch.Tensor:
    """NNGP or NTK of a SAME-padded CNN with a Flatten readout.

    Args:
        x1: ``n x H x W x C`` images (NHWC, as in neural-tangents).
        x2: ``m x H x W x C`` images, or ``None`` for ``x1``.
        depth: number of ``Conv → φ`` blocks.
        activation, kind, w_std, b_std, w_std_last, b_std_last, slopes: as in
            :func:`~bayesfn.bayesnn.nngp.nngp_kernel` (scalars or 0-d tensors).
        filter_size: side ``f`` of the square filters.
        chunk_elements: rows of ``x1`` are processed in chunks so that the per-pixel
            state holds at most about this many elements.
        diag: return only ``K(x1_i, x2_i)`` as ``n`` values (needs ``n == m``).

    Returns:
        ``n x m`` kernel matrix, or ``n`` values when ``diag``.
    """
    x2 = x1 if x2 is None else x2
    if x1.ndim != 4 or x2.ndim != 4 or x1.shape[1:] != x2.shape[1:]:
        raise ValueError(
            "x1 and x2 must be n x H x W x C images of one shape; got "
            f"{tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    if not isinstance(filter_size, int) or filter_size < 1:
        raise ValueError(f"filter_size must be a positive integer; got {filter_size!r}")
    want_ntk = kind == "ntk"
    channels = x1.shape[-1]

    def as_t(v: Any) -> torch.Tensor:  # python floats must not become float32 tensors
        return torch.as_tensor(v, dtype=x1.dtype, device=x1.device)

    w2, b2 = as_t(w_std) ** 2, as_t(b_std) ** 2
    w2_last, b2_last = as_t(w_std_last) ** 2, as_t(b_std_last) ** 2
    var2 = (x2 * x2).sum(-1) / channels  # m x H x W
    # without autograd the per-pixel states are updated in place (same values)
    inplace = not (
        torch.is_grad_enabled() and any(t.requires_grad for t in (x1, x2, w2, b2, w2_last, b2_last))
    )

    # the variance maps of x2 (shared by every chunk), layer by layer
    k2_layers = []
    k2 = var2
    for _ in range(depth):
        k2 = w2 * _box(k2, filter_size) + b2
        k2_layers.append(k2)
        k2 = diag_map(activation, k2, slopes, False)[0]

    if diag:
        if x1.shape[0] != x2.shape[0]:
            raise ValueError("diag=True needs x1 and x2 with the same number of images")
        # pairs (x1_i, x2_i): every state is n x H x W, elementwise
        c = (x1 * x2).sum(-1) / channels
        k1 = (x1 * x1).sum(-1) / channels
        ntk = torch.zeros_like(c) if want_ntk else None
        for layer in range(depth):
            c = w2 * _box(c, filter_size) + b2
            k1 = w2 * _box(k1, filter_size) + b2
            if want_ntk:
                ntk = c + w2 * _box(ntk, filter_size)
            c, dot = layer_map(activation, c, k1, k2_layers[layer], slopes, want_ntk)
            k1 = diag_map(activation, k1, slopes, False)[0]
            if want_ntk:
                ntk = ntk * dot
        c_out = w2_last * c.mean((-2, -1)) + b2_last
        return c_out + w2_last * ntk.mean((-2, -1)) if want_ntk else c_out

    m = x2.shape[0]
    pixels = x1.shape[1] * x1.shape[2]
    rows = max(1, chunk_elements // max(1, m * pixels))
    out = []
    for start in range(0, x1.shape[0], rows):
        a = x1[start : start + rows]
        c = torch.einsum("nhwc,mhwc->nmhw", a, x2) / channels  # chunk x m x H x W
        k1 = ((a * a).sum(-1) / channels).unsqueeze(1)  # chunk x 1 x H x W
        ntk = torch.zeros_like(c) if want_ntk else None
        work: dict[str, torch.Tensor] = {}  # scratch buffers reused across layers
        for layer in range(depth):
            c = (
                _box(c, filter_size).mul_(w2).add_(b2)
                if inplace
                else w2 * _box(c, filter_size) + b2
            )
            k1 = w2 * _box(k1, filter_size) + b2
            if want_ntk:
                ntk = c + w2 * _box(ntk, filter_size)
            k2 = k2_layers[layer].unsqueeze(0)  # 1 x m x H x W
            if inplace and activation not in ("erf", "gelu"):
                c, dot = ab_relu_inplace(c, k1, k2, slopes[0], slopes[1], want_ntk, work)
            else:
                c, dot = layer_map(activation, c, k1, k2, slopes, want_ntk)
            k1 = diag_map(activation, k1, slopes, False)[0]
            if want_ntk:
                ntk = ntk.mul_(dot) if inplace else ntk * dot
        c_out = w2_last * c.mean((-2, -1)) + b2_last
        out.append(c_out + w2_last * ntk.mean((-2, -1)) if want_ntk else c_out)
    return torch.cat(out, 0)
