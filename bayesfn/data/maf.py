"""The five tabular density-estimation sets of Papamakarios et al. (MAF, NeurIPS 2017):
POWER, GAS, HEPMASS, MINIBOONE and BSDS300, with MAF's preprocessing.

The raw files are the ones in MAF's ``data.tar.gz`` on Zenodo (record 1161203,
https://zenodo.org/record/1161203), unpacked so that ``<data root>/maf/`` holds::

    power/data.npy                     2049280 x 8: 7 household power readings and the time
    gas/ethylene_CO.pickle             pandas DataFrame of the ethylene-CO sensor array
    hepmass/1000_train.csv, 1000_test.csv
    miniboone/data.npy                 36488 x 43 (outliers and 7 features already removed)
    BSDS300/BSDS300.hdf5               groups train / validation / test, 63 columns

``<data root>`` is found as for every loader (``root=``, ``BAYESFN_DATA``, then
``../shared/data``). The offline copy in ``shared/data`` has none of these; it has only
MINIBOONE's validation and test splits, already preprocessed
(``miniboone_maf_partial/{val,test}.npy``), which :func:`load_miniboone_partial` reads.

Preprocessing (as MAF's code does it; reimplemented here):

* **power**: shuffle the rows with ``numpy.random.RandomState(42)``; drop columns 3 and 1
  (global intensity and global reactive power); add uniform dequantisation noise drawn
  from the same generator (``U(0, 0.001)`` to the active power, ``U(0, 0.01)`` to the
  voltage, ``U(0, 1)`` to the three sub-meterings, none to the time); test is the last
  10 %, validation the last 10 % of the rest; standardise with train+validation
  statistics. 6 columns.
* **gas**: drop the ``Meth``, ``Eth`` and ``Time`` columns; repeatedly drop the first
  column that has a correlation above 0.98 with another column; standardise with the
  statistics of all rows; split as for power (no shuffle). 8 columns.
* **hepmass**: keep the signal rows (label 1) of both files and drop the label (and the
  test file's trailing extra column); standardise with the training statistics; drop every
  feature whose *smallest* value occurs more than 5 times in the training data (MAF's
  code counts the smallest value, not the most frequent one); validation is the last 10 %
  of the training rows. 21 columns.
* **miniboone**: test is the last 10 %, validation the last 10 % of the rest; standardise
  with train+validation statistics. 43 columns.
* **bsds300**: used as stored (63 columns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._paths import resolve_root

__all__ = ["MAFData", "load_maf", "load_miniboone_partial", "maf_names", "preprocess"]

_FILES = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}
_WHERE = (
    "Download data.tar.gz from https://zenodo.org/record/1161203 (MAF, Papamakarios et al. "
    "2017), unpack it and put its folders power/, gas/, hepmass/, miniboone/ and BSDS300/ "
    "into <data root>/maf/ (data root: root=, $BAYESFN_DATA or ../shared/data)."
)


@dataclass
class MAFData:
    """One MAF data set.

    Attributes:
        name: the set's name.
        train, valid, test: ``(n, d)`` preprocessed tensors.
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


def maf_names() -> tuple[str, ...]:
    """``("power", "gas", "hepmass", "miniboone", "bsds300")``."""
    return tuple(_FILES)


def _split_tail(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF's split: test = last 10 %, validation = last 10 % of what is left."""
    n_test = int(0.1 * data.shape[0])
    test, rest = data[data.shape[0] - n_test :], data[: data.shape[0] - n_test]
    n_val = int(0.1 * rest.shape[0])
    return rest[: rest.shape[0] - n_val], rest[rest.shape[0] - n_val :], test


def _standardise_by(stats: np.ndarray, *parts: np.ndarray) -> list[np.ndarray]:
    mean, std = stats.mean(axis=0), stats.std(axis=0)
    return [(p - mean) / std for p in parts]


def preprocess(name: str, raw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF's preprocessing of one set's raw contents (see the module docstring).

    Args:
        name: one of :func:`maf_names`.
        raw: ``power`` / ``miniboone``: the ``(n, d)`` array of ``data.npy``; ``gas``: the
            ``pandas.DataFrame``; ``hepmass``: the ``(train, test)`` DataFrames as read
            from the two CSV files; ``bsds300``: ``(train, valid, test)`` arrays.

    Returns:
        ``(train, valid, test)`` float64 arrays.
    """
    if name == "power":
        data = np.array(raw, dtype=np.float64)
        rng = np.random.RandomState(42)
        rng.shuffle(data)
        n = data.shape[0]
        data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
        noise = np.hstack(
            [
                0.001 * rng.rand(n, 1),  # global active power
                0.01 * rng.rand(n, 1),  # voltage
                rng.rand(n, 3),  # the three sub-meterings (integer watt-hours)
                np.zeros((n, 1)),  # time of day
            ]
        )
        tr, va, te = _split_tail(data + noise)
        return tuple(_standardise_by(np.vstack([tr, va]), tr, va, te))
    if name == "gas":
        frame = raw.drop(columns=["Meth", "Eth", "Time"])
        while True:
            high = (frame.corr() > 0.98).to_numpy().sum(axis=1)
            if not np.any(high > 1):  # the diagonal always counts once
                break
            frame = frame.drop(columns=frame.columns[int(np.flatnonzero(high > 1)[0])])
        frame = (frame - frame.mean()) / frame.std()
        return _split_tail(frame.to_numpy(dtype=np.float64))
    if name == "hepmass":
        train, test = raw
        train = train[train[train.columns[0]] == 1].drop(columns=train.columns[0])
        test = test[test[test.columns[0]] == 1].drop(columns=test.columns[0])
        test = test.drop(columns=test.columns[-1])
        mean, std = train.mean(), train.std()
        train = ((train - mean) / std).to_numpy(dtype=np.float64)
        test = ((test - mean.to_numpy()) / std.to_numpy()).to_numpy(dtype=np.float64)
        keep = []
        for j in range(train.shape[1]):
            _, counts = np.unique(train[:, j], return_counts=True)
            if counts[0] <= 5:  # count of the smallest value, as in MAF's code
                keep.append(j)
        train, test = train[:, keep], test[:, keep]
        n_val = int(0.1 * train.shape[0])
        return train[: train.shape[0] - n_val], train[train.shape[0] - n_val :], test
    if name == "miniboone":
        tr, va, te = _split_tail(np.asarray(raw, dtype=np.float64))
        return tuple(_standardise_by(np.vstack([tr, va]), tr, va, te))
    if name == "bsds300":
        return tuple(np.asarray(p, dtype=np.float64) for p in raw)
    raise ValueError(f"unknown MAF data set {name!r}; valid names are {', '.join(_FILES)}")


# what a pickled pandas DataFrame of numbers needs, and nothing that reaches files, the
# shell or an evaluator: numpy's array rebuilders, a few builtins, and pandas' own
# rebuilders; any other pandas name must be a data-container class (see safe_bases)
_PICKLE_EXACT = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("builtins", "complex"),
    ("builtins", "object"),
    ("__builtin__", "slice"),
    ("__builtin__", "object"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("_codecs", "encode"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pandas.core.indexes.base", "_new_Index"),
}


class UnsafePickleError(ValueError):
    """A pickle asked for something a DataFrame of numbers never needs."""


def read_dataframe_pickle(path: str | os.PathLike[str]):
    """Read a pickled pandas ``DataFrame`` without running arbitrary code: the unpickler
    resolves only numpy's and pandas' data rebuilders (and pandas' own renames of old
    pickles), so a tampered file that asks for ``os.system``, ``eval``, a file reader or
    anything else raises :class:`UnsafePickleError` instead of running it.

    Raises:
        UnsafePickleError: the file names a callable outside the allowed set.
        ValueError: the file does not hold a DataFrame.
    """
    import pickle

    import pandas as pd
    from pandas.api.extensions import ExtensionArray, ExtensionDtype
    from pandas.compat import pickle_compat
    from pandas.core.internals.blocks import Block
    from pandas.core.internals.managers import BaseBlockManager

    # data containers only: frames, series, indexes, blocks, arrays, dtypes, scalars
    safe_bases = (
        pd.DataFrame,
        pd.Series,
        pd.Index,
        BaseBlockManager,
        Block,
        ExtensionArray,
        ExtensionDtype,
        pd.Timestamp,
        pd.Timedelta,
    )

    class _Restricted(pickle_compat.Unpickler):
        def find_class(self, module: str, name: str):
            key = pickle_compat._class_locations_map.get((module, name), (module, name))
            obj = None
            if key in _PICKLE_EXACT:
                obj = super().find_class(module, name)
            elif key[0].split(".")[0] == "pandas":
                obj = super().find_class(module, name)
                if not (isinstance(obj, type) and issubclass(obj, safe_bases)):
                    obj = None
            if obj is None:
                raise UnsafePickleError(
                    f"{path}: refusing to unpickle {module}.{name}; a DataFrame of numbers "
                    "never needs it (the file may have been tampered with)"
                )
            return obj

    errors = []
    for encoding in ("ASCII", "latin-1"):  # latin-1: pickles written by Python 2
        with open(path, "rb") as f:
            try:
                frame = _Restricted(f, encoding=encoding).load()
                break
            except UnsafePickleError:
                raise
            except (UnicodeDecodeError, pickle.UnpicklingError, EOFError, TypeError) as err:
                errors.append(err)
    else:
        raise ValueError(f"{path} is not a readable pickle of a DataFrame ({errors[-1]})")
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{path} holds a {type(frame).__name__}, not a pandas DataFrame")
    return frame


def _read_raw(name: str, folder: Path):
    paths = [folder / f for f in _FILES[name]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"MAF data set {name!r}: missing {', '.join(absent)}. {_WHERE}")
    if name in ("power", "miniboone"):
        return np.load(paths[0])
    if name == "gas":
        return read_dataframe_pickle(paths[0])
    if name == "hepmass":
        import pandas as pd

        return tuple(pd.read_csv(p, index_col=False) for p in paths)
    import h5py

    with h5py.File(paths[0], "r") as f:
        return tuple(f[k][:] for k in ("train", "validation", "test"))


def load_maf(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> MAFData:
    """Load and preprocess one MAF set from ``<data root>/maf/``.

    Args:
        name: one of :func:`maf_names` (case is ignored).
        root: the data root holding ``maf/``.
        dtype: floating dtype of the tensors.

    Returns:
        A :class:`MAFData`.

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: the raw files are absent; the message says where to get them.
    """
    key = str(name).strip().lower()
    if key not in _FILES:
        raise ValueError(f"unknown MAF data set {name!r}; valid names are {', '.join(_FILES)}")
    try:
        folder = resolve_root(root, "maf")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"MAF data set {key!r} not found. {_WHERE}\n{err}") from None
    tr, va, te = preprocess(key, _read_raw(key, folder))
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
    return MAFData(key, as_t(tr), as_t(va), as_t(te))


def load_miniboone_partial(
    root: str | os.PathLike[str] | None = None, *, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """MINIBOONE's MAF validation ``(3284, 43)`` and test ``(3648, 43)`` splits, already
    preprocessed (``<data root>/miniboone_maf_partial/{val,test}.npy``); the training split
    is not in the offline copy.

    Returns:
        ``(valid, test)`` tensors.
    """
    folder = resolve_root(root, "miniboone_maf_partial")
    out = []
    for split in ("val", "test"):
        path = folder / f"{split}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}. {_WHERE}")
        out.append(torch.as_tensor(np.load(path)).to(dtype))
    return out[0], out[1]
