"""The nine UCI regression benchmarks with the Hernández-Lobato & Adams (2015) splits.

The data are read from ``<data root>/uci_regression/<folder>/`` (the origin's
``<folder>/data/`` layout is accepted too), which holds ``data.txt`` (whitespace-separated
numbers, one row per example), ``index_features.txt`` and ``index_target.txt`` (0-based
column indices), ``index_train_<i>.txt`` and ``index_test_<i>.txt`` (0-based row indices)
and ``n_splits.txt``. See ``shared/data/README.md`` for the origin and licence
(CC BY-NC 4.0 for the collection).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._paths import data_file, resolve_root

__all__ = ["UCISplit", "load_uci", "load_uci_rows", "uci_names"]

# Short name -> folder name on disk, in the order the benchmark tables list them.
_FOLDERS: dict[str, str] = {
    "boston": "bostonHousing",
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
    "yacht": "yacht",
}


def uci_names() -> tuple[str, ...]:
    """The short names accepted by :func:`load_uci`.

    Returns:
        ``("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein",
        "wine", "yacht")``. The folder names (``"bostonHousing"``,
        ``"naval-propulsion-plant"``, ...) are accepted too.
    """
    return tuple(_FOLDERS)


def _short_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    key = name.strip().lower()
    for short, folder in _FOLDERS.items():
        if key in (short, folder.lower()):
            return short
    valid = ", ".join(f"{s!r} (or {f!r})" if s != f else repr(s) for s, f in _FOLDERS.items())
    raise ValueError(f"Unknown UCI regression data set {name!r}; valid names are {valid}.")


@dataclass(frozen=True, eq=False)
class UCISplit:
    """One train/test split of a UCI regression data set.

    With ``standardize=True`` the inputs and targets are standardised with the mean and
    (population, ``ddof=0``) standard deviation of the *training* rows; columns that are
    constant on the training rows get std 1, so they become exactly 0 on the training
    rows and never NaN. ``x_mean``/``x_std``/``y_mean``/``y_std`` hold the statistics
    (zeros and ones when ``standardize=False``).

    Attributes:
        x_train: ``(n_train, d)`` tensor of inputs.
        y_train: ``(n_train, 1)`` tensor of targets.
        x_test: ``(n_test, d)`` tensor of inputs.
        y_test: ``(n_test, 1)`` tensor of targets.
        x_mean: ``(d,)`` tensor, the training mean of each input column.
        x_std: ``(d,)`` tensor, the training std of each input column (1 where constant).
        y_mean: ``(1,)`` tensor, the training mean of the target.
        y_std: ``(1,)`` tensor, the training std of the target.
        name: the short name of the data set, e.g. ``"concrete"``.
        split: the index of the split.
        standardized: whether the tensors above are standardised.

    To report results in the original units: predictions are ``y * y_std + y_mean``
    (see :meth:`unstandardize_y`), RMSE scales by ``y_std``, and a per-point Gaussian NLL
    becomes ``nll + log(y_std)``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor
    name: str
    split: int
    standardized: bool

    @property
    def input_dim(self) -> int:
        """The number of input features ``d``."""
        return self.x_train.shape[1]

    def unstandardize_y(self, y: torch.Tensor) -> torch.Tensor:
        """Map targets (or predictive means/samples) back to the original units.

        Args:
            y: a tensor whose last dimension is 1, e.g. ``(n, 1)`` or ``(s, n, 1)``.

        Returns:
            ``y * y_std + y_mean``, shaped like ``y``.
        """
        return y * self.y_std.to(y) + self.y_mean.to(y)


def _read_indices(path: Path, dataset: str) -> np.ndarray:
    """Read a file of whitespace-separated non-negative integer indices as ``(k,)`` int64."""
    values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise ValueError(f"Data set '{dataset}': {path} should hold integer indices")
    return values.astype(np.int64)


def _check_indices(idx: np.ndarray, bound: int, path: Path, dataset: str) -> None:
    if idx.size == 0:
        raise ValueError(f"Data set '{dataset}': {path} holds no indices")
    if idx.min() < 0 or idx.max() >= bound:
        raise ValueError(
            f"Data set '{dataset}': {path} has indices outside [0, {bound - 1}] "
            f"(min {idx.min()}, max {idx.max()}); the file is corrupt"
        )


def _stats(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and ``ddof=0`` stds of a ``(n, k)`` array; constant columns get std 1.

    For a constant column the mean is set to the column's value exactly, so standardised
    training values are exactly 0 (a floating-point mean could differ by one ulp).
    """
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    constant = train.max(axis=0) == train.min(axis=0)
    mean = np.where(constant, train[0], mean)
    std = np.where(constant | (std == 0), 1.0, std)
    return mean, std


def _folder(short: str, root: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The folder holding ``data.txt`` for short name ``short``, and its label in errors."""
    folder = resolve_root(root, f"uci_regression/{_FOLDERS[short]}")
    if (folder / "data" / "data.txt").is_file():
        folder = folder / "data"
    return folder, f"uci_regression/{_FOLDERS[short]}"


def _read_table(folder: Path, dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``data.txt`` as ``(rows, columns)`` float64, with the checked feature and target
    column indices."""
    raw = np.loadtxt(data_file(folder, "data.txt", dataset), dtype=np.float64, ndmin=2)
    n_cols = raw.shape[1]
    feature_path = data_file(folder, "index_features.txt", dataset)
    target_path = data_file(folder, "index_target.txt", dataset)
    features = _read_indices(feature_path, dataset)
    target = _read_indices(target_path, dataset)
    _check_indices(features, n_cols, feature_path, dataset)
    _check_indices(target, n_cols, target_path, dataset)
    if target.size != 1:
        raise ValueError(f"Data set '{dataset}': {target_path} should hold one column index")
    return raw, features, target


def load_uci_rows(
    name: str, root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every row of a UCI regression set in file order, unsplit and unstandardised.

    For protocols other than the published splits (e.g. a paper's own permutation).

    Args:
        name: as for :func:`load_uci`.
        root: the data root holding ``uci_regression/``.

    Returns:
        ``x (n, d)`` and ``y (n,)`` as float64 numpy arrays.
    """
    folder, dataset = _folder(_short_name(name), root)
    raw, features, target = _read_table(folder, dataset)
    return raw[:, features], raw[:, int(target[0])]


def load_uci(
    name: str,
    split: int = 0,
    root: str | os.PathLike[str] | None = None,
    *,
    standardize: bool = True,
    dtype: torch.dtype = torch.float64,
) -> UCISplit:
    """Load one train/test split of a UCI regression benchmark.

    Args:
        name: a short name from :func:`uci_names` (``"boston"``, ``"concrete"``,
            ``"energy"``, ``"kin8nm"``, ``"naval"``, ``"power"``, ``"protein"``, ``"wine"``,
            ``"yacht"``) or the folder name on disk (``"bostonHousing"``, ...); case is
            ignored.
        split: which of the published splits, ``0 <= split < n_splits`` (20 for every set
            but protein, which has 5).
        root: the data root holding ``uci_regression/``; see :mod:`bayesfn.data._paths`.
        standardize: standardise inputs and target with training-split statistics.
        dtype: floating dtype of the returned tensors.

    Returns:
        A :class:`UCISplit` with ``x_train (n_train, d)``, ``y_train (n_train, 1)``,
        ``x_test (n_test, d)``, ``y_test (n_test, 1)`` and the statistics.

    Raises:
        ValueError: unknown ``name``, or ``split`` outside the set's range, or corrupt
            index files.
        FileNotFoundError: the data set or one of its files is missing.
    """
    short = _short_name(name)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    folder, dataset = _folder(short, root)

    n_splits_path = data_file(folder, "n_splits.txt", dataset)
    n_splits = int(float(n_splits_path.read_text().split()[0]))
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)):
        raise TypeError(f"split must be an int in [0, {n_splits - 1}]; got {split!r}")
    if not 0 <= split < n_splits:
        raise ValueError(
            f"split must be in [0, {n_splits - 1}] for UCI data set {short!r} "
            f"(it has {n_splits} splits); got {split}"
        )
    split = int(split)

    raw, features, target = _read_table(folder, dataset)
    n_rows = raw.shape[0]

    train_path = data_file(folder, f"index_train_{split}.txt", dataset)
    test_path = data_file(folder, f"index_test_{split}.txt", dataset)
    train_idx = _read_indices(train_path, dataset)
    test_idx = _read_indices(test_path, dataset)
    _check_indices(train_idx, n_rows, train_path, dataset)
    _check_indices(test_idx, n_rows, test_path, dataset)
    if np.intersect1d(train_idx, test_idx).size:
        raise ValueError(
            f"Data set '{dataset}': split {split} has rows in both train and test; "
            "the index files are corrupt"
        )

    x_train = raw[np.ix_(train_idx, features)]
    x_test = raw[np.ix_(test_idx, features)]
    y_train = raw[train_idx][:, target]
    y_test = raw[test_idx][:, target]

    if standardize:
        x_mean, x_std = _stats(x_train)
        y_mean, y_std = _stats(y_train)
        x_train = (x_train - x_mean) / x_std
        x_test = (x_test - x_mean) / x_std
        y_train = (y_train - y_mean) / y_std
        y_test = (y_test - y_mean) / y_std
    else:
        x_mean, x_std = np.zeros(features.size), np.ones(features.size)
        y_mean, y_std = np.zeros(1), np.ones(1)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    return UCISplit(
        x_train=tensor(x_train),
        y_train=tensor(y_train),
        x_test=tensor(x_test),
        y_test=tensor(y_test),
        x_mean=tensor(x_mean),
        x_std=tensor(x_std),
        y_mean=tensor(y_mean),
        y_std=tensor(y_std),
        name=short,
        split=split,
        standardized=standardize,
    )
