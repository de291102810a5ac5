"""MNIST from the gzipped idx files (parsed here, no torchvision).

Files: ``<data root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. The idx
format is a big-endian header, two zero bytes, a type code (``0x08`` = unsigned byte) and
the number of dimensions, followed by one ``uint32`` per dimension and then the values
in C order. Images are ``(n, 28, 28)`` and labels ``(n,)``.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ._paths import data_file, resolve_root

__all__ = ["MNISTData", "load_mnist"]

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_UBYTE = 0x08


class MNISTData(NamedTuple):
    """Images and labels of one MNIST split; unpacks as ``images, labels``.

    Attributes:
        images: ``(n, 784)`` tensor, or ``(n, 1, 28, 28)`` with ``flatten=False``.
        labels: ``(n,)`` int64 tensor of digits 0-9.
    """

    images: torch.Tensor
    labels: torch.Tensor


def _read_idx(path: Path, ndim: int, limit: int | None) -> np.ndarray:
    """Read an unsigned-byte idx file with ``ndim`` dimensions, keeping ``limit`` items.

    Returns:
        A ``uint8`` array of shape ``(n, *dims[1:])`` where ``n = min(dims[0], limit)``.

    Raises:
        ValueError: the file is not gzip, has the wrong magic number, or is truncated
            or longer than its header says.
    """
    try:
        with gzip.open(path, "rb") as stream:
            header = stream.read(4 + 4 * ndim)
            if len(header) < 4 + 4 * ndim:
                raise ValueError(f"{path} is too short to hold an idx header")
            zero, dtype_code, file_ndim = struct.unpack(">HBB", header[:4])
            if zero != 0 or dtype_code != _UBYTE or file_ndim != ndim:
                magic = struct.unpack(">I", header[:4])[0]
                raise ValueError(
                    f"{path} has magic number 0x{magic:08x}; expected "
                    f"0x{0x800 + ndim:08x} (unsigned bytes, {ndim} dimensions)"
                )
            dims = struct.unpack(f">{ndim}I", header[4:])
            item = int(np.prod(dims[1:], dtype=np.int64))
            n = dims[0] if limit is None else min(dims[0], limit)
            payload = stream.read(n * item)
            if len(payload) != n * item:
                raise ValueError(
                    f"{path} is truncated: its header promises {dims[0]} items of {item} "
                    f"bytes, but only {len(payload)} bytes of values follow"
                )
            if n == dims[0] and stream.read(1):
                raise ValueError(f"{path} has bytes after the {dims[0]} items its header lists")
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} is not a readable gzip file ({err})") from err
    return np.frombuffer(payload, dtype=np.uint8).reshape((n, *dims[1:]))


def load_mnist(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    *,
    flatten: bool = True,
    normalize: bool = True,
    limit: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> MNISTData:
    """Load the MNIST training (60,000) or test (10,000) images and labels.

    Args:
        split: ``"train"`` or ``"test"``.
        root: the data root holding ``mnist/``; see :mod:`bayesfn.data._paths`.
        flatten: return images as ``(n, 784)`` rows; otherwise ``(n, 1, 28, 28)``.
        normalize: divide pixel values by 255 so they lie in ``[0, 1]``; otherwise keep
            the raw values 0-255 (pass ``dtype=torch.uint8`` to keep raw bytes).
        limit: keep only the first ``limit`` examples (only those are decompressed).
        dtype: dtype of the images.

    Returns:
        :class:`MNISTData` ``(images, labels)``: images ``(n, 784)`` or
        ``(n, 1, 28, 28)`` of ``dtype``, labels ``(n,)`` int64.

    Raises:
        ValueError: bad ``split`` / ``limit`` / ``dtype``, or a corrupt file.
        FileNotFoundError: the MNIST files are missing.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {tuple(_FILES)}; got {split!r}")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1
    ):
        raise ValueError(f"limit must be a positive int or None; got {limit!r}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype; got {dtype!r}")
    if normalize and not dtype.is_floating_point:
        raise ValueError(
            f"normalize=True needs a floating dtype (values in [0, 1]); got {dtype}. "
            "Pass normalize=False to keep the raw 0-255 values."
        )
    folder = resolve_root(root, "mnist")
    image_name, label_name = _FILES[split]
    images = _read_idx(data_file(folder, image_name, "mnist"), 3, limit)
    labels = _read_idx(data_file(folder, label_name, "mnist"), 1, limit)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split} split: {image_name} holds {images.shape[0]} images but "
            f"{label_name} holds {labels.shape[0]} labels"
        )
    if images.shape[1:] != (28, 28):
        raise ValueError(f"MNIST images should be 28 x 28; {image_name} has {images.shape[1:]}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_name} holds labels above 9; the file is corrupt")

    x = torch.from_numpy(images.copy())
    x = x.reshape(x.shape[0], 784) if flatten else x.reshape(x.shape[0], 1, 28, 28)
    x = x.to(dtype)
    if normalize:
        x = x / 255.0
    y = torch.from_numpy(labels.astype(np.int64))
    return MNISTData(images=x, labels=y)
