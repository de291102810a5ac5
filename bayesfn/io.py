"""Saving and loading without pickle: tensors in safetensors, everything else in JSON.

Nested states (a model's fitted state, an optimiser's ``state_dict``, RNG states)
are split into a flat ``{key: tensor}`` map and a JSON skeleton whose leaves point
at those keys. Writes go to a temporary folder whose files are flushed to disk
(``fsync``) before it is renamed into place, so a crash mid-write never leaves a
half-written checkpoint behind; a crash between the two renames leaves the previous
folder as ``.<name>.old``, which :func:`read_state` and :func:`state_exists` fall back
to, and temporary folders left by a killed writer are removed by the next successful
write.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["join_tensors", "read_state", "split_tensors", "state_exists", "write_state"]

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_DTYPE = "__dtype__"
_INTKEYS = "__intkeys__"

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
_TMP_TAG = "tmp-"


class MissingTensorError(KeyError):
    """A JSON skeleton refers to a tensor the weights file does not hold."""


def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor in a nested dict / list / tuple by a reference.

    Returns:
        ``(skeleton, tensors)``: a JSON-serialisable skeleton and the flat map of
        contiguous CPU tensors it refers to.
    """
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            ptr = t.untyped_storage().data_ptr()
            if ptr in storages and t.numel():
                t = t.clone()  # safetensors refuses tensors sharing memory (tied weights)
            storages.add(ptr)
            key = path
            while key in tensors:  # {"a.b": t, "a": {"b": u}} both map to "root.a.b"
                key += "'"
            tensors[key] = t
            return {_TENSOR: key}
        if isinstance(x, torch.dtype):
            return {_DTYPE: str(x).removeprefix("torch.")}
        if isinstance(x, dict):
            if x and all(isinstance(k, int) and not isinstance(k, bool) for k in x):
                # optimiser state is keyed by parameter index; JSON keys must be strings
                return {_INTKEYS: {str(k): walk(v, f"{path}.{k}") for k, v in x.items()}}
            bad = [k for k in x if not isinstance(k, str)]
            if bad:
                raise TypeError(f"cannot save a dict with non-string key {bad[0]!r} at {path!r}")
            return {k: walk(v, f"{path}.{k}") for k, v in x.items()}
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, bool | int | float | str):
            return x
        raise TypeError(f"cannot save an object of type {type(x).__name__} at {path!r}")

    return walk(obj, prefix or "root"), tensors


def join_tensors(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            key = skeleton[_TENSOR]
            if key not in tensors:
                raise MissingTensorError(key)
            return tensors[key]
        if _DTYPE in skeleton:
            return getattr(torch, skeleton[_DTYPE])
        if _TUPLE in skeleton:
            return tuple(join_tensors(v, tensors) for v in skeleton[_TUPLE])
        if _INTKEYS in skeleton:
            return {int(k): join_tensors(v, tensors) for k, v in skeleton[_INTKEYS].items()}
        return {k: join_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_tensors(v, tensors) for v in skeleton]
    return skeleton


def _backup(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _fsync(path: Path, *, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk; a no-op where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def state_exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` (or the ``.old`` copy a crash between renames left) holds a
    folder that :func:`read_state` can read."""
    path = Path(path)
    return any((p / CONFIG_FILE).is_file() for p in (path, _backup(path)))


def write_state(path: str | os.PathLike, header: dict[str, Any], state: Any) -> Path:
    """Write ``header`` (JSON) plus a nested ``state`` holding tensors to folder ``path``.

    The folder is replaced atomically: readers see either the old or the new one. Files
    are flushed to disk before the rename; leftovers of earlier killed writes of
    ``path`` (temporary folders, a stale ``.old`` copy) are removed afterwards.
    """
    path = Path(path)
    skeleton, tensors = split_tensors(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_TMP_TAG}", dir=path.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        with open(tmp / CONFIG_FILE, "w") as f:
            json.dump({**header, "state": skeleton}, f, indent=2, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        _fsync(tmp / WEIGHTS_FILE)
        _fsync(tmp, directory=True)
        old = _backup(path)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the new folder is in place: what earlier crashes left behind can go
    shutil.rmtree(old, ignore_errors=True)
    for leftover in path.parent.glob(f".{path.name}.{_TMP_TAG}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return path


def read_state(path: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """Read what :func:`write_state` wrote: ``(header, state)``. Never unpickles.

    Raises:
        FileNotFoundError: ``path`` is not a saved folder.
        ValueError: a file is corrupt or the two files do not match; the message names
            the file and what is wrong.
    """
    path = Path(path)
    backup = _backup(path)
    if not path.exists() and backup.exists():
        path = backup  # a crash fell between the two renames of write_state
    config, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (config, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; {path} is not a saved bayesfn folder")
    try:
        with open(config) as f:
            header = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{config} is not valid JSON ({err}); the saved folder is corrupt"
        ) from None
    if not isinstance(header, dict) or "state" not in header:
        raise ValueError(f"{config} holds no 'state' entry; it was not written by bayesfn.io")
    try:
        flat = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(
            f"{weights} is not a readable safetensors file ({type(err).__name__}: {err})"
        ) from None
    try:
        state = join_tensors(header.pop("state"), flat)
    except MissingTensorError as err:
        raise ValueError(
            f"{weights} lacks tensor {err.args[0]!r}, which {config} refers to; the two "
            "files do not belong together"
        ) from None
    return header, state
