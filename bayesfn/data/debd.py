"""The binary density-estimation benchmark (DEBD, the "twenty data sets").

Files are read from ``<data root>/debd/<name>/<name>.{train,valid,test}.data``: comma-
separated ``0``/``1`` values, one example per line, no header. The fixed splits are used
as shipped (no re-splitting, no deduplication). In the offline copy three sets are
incomplete: ``msnbc`` and ``tretail`` lack the train split and ``kdd`` lacks train and
test (see ``shared/data/README.md``).

Missing splits: :func:`load_debd` loads the splits named in ``splits`` (all three by
default). A requested split whose file is absent raises :class:`FileNotFoundError`; a
split that was not requested is ``None`` in the result. So ``load_debd("msnbc")`` fails
with a message that names the missing file, and
``load_debd("msnbc", splits=("valid", "test"))`` works.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._paths import ENV_VAR, resolve_root

__all__ = ["DEBDData", "debd_names", "load_debd"]

# Folder name -> name used in papers, for the sets present in the offline copy.
_SETS: dict[str, str] = {
    "nltcs": "NLTCS",
    "msnbc": "MSNBC",
    "kdd": "KDDCup2k",
    "plants": "Plants",
    "baudio": "Audio",
    "jester": "Jester",
    "bnetflix": "Netflix",
    "accidents": "Accidents",
    "tretail": "Retail",
    "pumsb_star": "Pumsb-star",
    "dna": "DNA",
    "bbc": "BBC",
}

_SPLITS = ("train", "valid", "test")


def debd_names() -> tuple[str, ...]:
    """The DEBD folder names accepted by :func:`load_debd`.

    Returns:
        ``("nltcs", "msnbc", "kdd", "plants", "baudio", "jester", "bnetflix",
        "accidents", "tretail", "pumsb_star", "dna", "bbc")``; ``msnbc``, ``kdd`` and
        ``tretail`` have no train split in the offline copy (``kdd`` has no test split
        either).
    """
    return tuple(_SETS)


@dataclass(frozen=True, eq=False)
class DEBDData:
    """The splits of one DEBD data set.

    Attributes:
        name: the folder name, e.g. ``"nltcs"``.
        num_vars: the number of binary variables ``d``.
        train: ``(n_train, d)`` tensor of 0/1 values, or ``None`` when not requested.
        valid: ``(n_valid, d)`` tensor of 0/1 values, or ``None`` when not requested.
        test: ``(n_test, d)`` tensor of 0/1 values, or ``None`` when not requested.
    """

    name: str
    num_vars: int
    train: torch.Tensor | None
    valid: torch.Tensor | None
    test: torch.Tensor | None


def _parse_binary_csv(path: Path, dataset: str) -> np.ndarray:
    """Parse a file of comma-separated 0/1 rows into a ``(n, d)`` uint8 array.

    The strict layout (single characters, ``,`` between values, ``\\n`` after each row)
    is decoded without a text parser; anything else falls back to ``numpy.loadtxt``.
    Values other than 0 and 1, ragged rows and empty files raise ``ValueError``.
    """
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"Data set '{dataset}': {path} is empty")
    first = raw.split(b"\n", 1)[0]
    d = first.count(b",") + 1
    width = 2 * d  # d characters, d - 1 commas and the newline
    body = raw if raw.endswith(b"\n") else raw + b"\n"
    buf = np.frombuffer(body, dtype=np.uint8)
    if buf.size % width == 0:
        grid = buf.reshape(-1, width)
        seps = grid[:, 1::2]
        sep_ok = np.all(seps[:, :-1] == ord(",")) and np.all(seps[:, -1] == ord("\n"))
        if sep_ok:
            values = grid[:, 0::2] - ord("0")
            if np.any(values > 1):
                raise ValueError(f"Data set '{dataset}': {path} holds values other than 0 and 1")
            return np.ascontiguousarray(values)
    try:
        values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(
            f"Data set '{dataset}': {path} is not a table of comma-separated 0/1 values "
            f"with the same number of columns on every row ({err})"
        ) from err
    if not np.all((values == 0) | (values == 1)):
        raise ValueError(f"Data set '{dataset}': {path} holds values other than 0 and 1")
    return values.astype(np.uint8)


def load_debd(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    splits: Sequence[str] = _SPLITS,
    dtype: torch.dtype = torch.int64,
) -> DEBDData:
    """Load a DEBD binary data set with its fixed train/valid/test splits.

    Args:
        name: a folder name from :func:`debd_names` (case is ignored).
        root: the data root holding ``debd/``; see :mod:`bayesfn.data._paths`.
        splits: which splits to load, a subset of ``("train", "valid", "test")``.
            Splits not listed are ``None`` in the result.
        dtype: dtype of the returned tensors; the default ``torch.int64`` suits
            categorical / Bernoulli leaves that index by state, pass ``torch.float32`` for
            neural models.

    Returns:
        A :class:`DEBDData` whose requested splits are ``(n, d)`` tensors of 0/1 values.

    Raises:
        ValueError: unknown ``name`` or split name, a malformed file, or splits with
            different numbers of columns.
        FileNotFoundError: the data set is missing, or a requested split's file is absent
            (msnbc, kdd and tretail have no train split here).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _SETS:
        raise ValueError(
            f"Unknown DEBD data set {name!r}; valid names are {', '.join(map(repr, _SETS))}."
        )
    if isinstance(splits, str):
        splits = (splits,)
    wanted = tuple(splits)
    bad = [s for s in wanted if s not in _SPLITS]
    if bad or not wanted:
        raise ValueError(f"splits must be a non-empty subset of {_SPLITS}; got {tuple(splits)!r}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype; got {dtype!r}")

    dataset = f"debd/{key}"
    folder = resolve_root(root, dataset)
    arrays: dict[str, torch.Tensor | None] = dict.fromkeys(_SPLITS)
    num_vars: int | None = None
    for split in _SPLITS:
        if split not in wanted:
            continue
        path = folder / f"{key}.{split}.data"
        if not path.is_file():
            present = tuple(s for s in _SPLITS if (folder / f"{key}.{s}.data").is_file())
            hint = (
                f"Load the splits that are present with splits={present!r}, or point "
                if present
                else "Point "
            )
            raise FileNotFoundError(
                f"DEBD data set {key!r} has no {split} split: {path} is missing (the "
                "offline copy in shared/data omits DEBD files of 4 MiB or more). "
                f"{hint}root= or {ENV_VAR} at a complete copy of DEBD."
            )
        values = _parse_binary_csv(path, dataset)
        if num_vars is not None and values.shape[1] != num_vars:
            raise ValueError(
                f"Data set '{dataset}': {path} has {values.shape[1]} columns but the other "
                f"splits have {num_vars}"
            )
        num_vars = values.shape[1]
        arrays[split] = torch.from_numpy(values).to(dtype)
    assert num_vars is not None
    return DEBDData(
        name=key,
        num_vars=num_vars,
        train=arrays["train"],
        valid=arrays["valid"],
        test=arrays["test"],
    )
