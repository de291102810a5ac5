"""Saving and loading without pickle: tensors in safetensors, everything else in JSON.

Nested states (a model's fitted state, an optimiser's ``state_dict``, RNG states)
are split into a flat ``{key: tensor}`` map and a JSON skeleton whose leaves point
at those keys. Writes go to a temporary folder that is renamed into place, so a
crash mid-write never leaves a half-written checkpoint behind.
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

__all__ = ["join_tensors", "read_state", "split_tensors", "write_state"]

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_DTYPE = "__dtype__"
_INTKEYS = "__intkeys__"

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"


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
            return tensors[skeleton[_TENSOR]]
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


def write_state(path: str | os.PathLike, header: dict[str, Any], state: Any) -> Path:
    """Write ``header`` (JSON) plus a nested ``state`` holding tensors to folder ``path``.

    The folder is replaced atomically: readers see either the old or the new one.
    """
    path = Path(path)
    skeleton, tensors = split_tensors(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        with open(tmp / CONFIG_FILE, "w") as f:
            json.dump({**header, "state": skeleton}, f, indent=2, allow_nan=True)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_state(path: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """Read what :func:`write_state` wrote: ``(header, state)``. Never unpickles."""
    path = Path(path)
    backup = path.with_name(f".{path.name}.old")
    if not path.exists() and backup.exists():
        path = backup  # a crash fell between the two renames of write_state
    config, weights = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (config, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing; {path} is not a saved bayesfn folder")
    with open(config) as f:
        header = json.load(f)
    state = join_tensors(header.pop("state"), load_file(str(weights)))
    return header, state
