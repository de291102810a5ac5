"""The small data sets bundled with scikit-learn, read from their files without sklearn.

Files live in ``<data root>/sklearn_bundled/`` (copied from scikit-learn 1.9.1):

* ``iris.csv``, ``wine_data.csv``, ``breast_cancer.csv``: a header line
  ``n_samples,n_features,<class names...>``, then rows of features with the integer
  label last;
* ``digits.csv.gz``: 1797 rows of 64 pixel values (0-16) and the label, no header;
* ``diabetes_data_raw.csv.gz`` (442 x 10, space-separated, unscaled) and
  ``diabetes_target.csv.gz`` (442 targets);
* ``linnerud_exercise.csv`` / ``linnerud_physiological.csv``: a line of column names,
  then 20 rows of 3 space-separated values each (exercise = inputs,
  physiological = targets, as in ``sklearn.datasets.load_linnerud``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ._paths import data_file, resolve_root

__all__ = ["SklearnData", "load_sklearn", "sklearn_names"]

_CLASSIFICATION = {
    "iris": "iris.csv",
    "wine": "wine_data.csv",
    "breast_cancer": "breast_cancer.csv",
}
_NAMES = ("iris", "wine", "breast_cancer", "digits", "diabetes", "linnerud")
_DATASET = "sklearn_bundled"


class SklearnData(NamedTuple):
    """Inputs and targets of a bundled scikit-learn data set; unpacks as ``x, y``.

    Attributes:
        x: ``(n, d)`` float tensor of features.
        y: ``(n,)`` int64 class labels (iris, wine, breast_cancer, digits), ``(n,)``
            float targets (diabetes) or ``(n, 3)`` float targets (linnerud).
        target_names: the class names for classification sets, else the target names.
    """

    x: torch.Tensor
    y: torch.Tensor
    target_names: tuple[str, ...]


def sklearn_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_sklearn`.

    Returns:
        ``("iris", "wine", "breast_cancer", "digits", "diabetes", "linnerud")``.
    """
    return _NAMES


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as stream:
            return stream.read()
    return path.read_text()


def _table(text: str, path: Path, delimiter: str | None) -> np.ndarray:
    rows = [line for line in text.splitlines() if line.strip()]
    try:
        return np.array(
            [[float(v) for v in row.split(delimiter)] for row in rows], dtype=np.float64
        )
    except ValueError as err:
        raise ValueError(f"{path} is not a numeric table with equal-length rows ({err})") from err


def _labelled_csv(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Parse a sklearn classification CSV with its ``n_samples,n_features,...`` header."""
    header, _, body = _read_text(path).partition("\n")
    fields = header.strip().split(",")
    try:
        n_samples, n_features = int(fields[0]), int(fields[1])
    except (ValueError, IndexError) as err:
        raise ValueError(
            f"{path} should start with a header 'n_samples,n_features,<class names>'"
        ) from err
    table = _table(body, path, ",")
    if table.shape != (n_samples, n_features + 1):
        raise ValueError(
            f"{path}: the header promises {n_samples} rows of {n_features} features and a "
            f"label, but the file holds a {table.shape[0]} x {table.shape[1]} table"
        )
    return table[:, :-1], table[:, -1], tuple(fields[2:])


def _labels(values: np.ndarray, path: Path) -> torch.Tensor:
    if np.any(values != np.round(values)) or np.any(values < 0):
        raise ValueError(f"{path}: the last column should hold non-negative integer labels")
    return torch.from_numpy(values.astype(np.int64))


def load_sklearn(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    dtype: torch.dtype = torch.float64,
) -> SklearnData:
    """Load a small data set bundled with scikit-learn (scikit-learn is not needed).

    Args:
        name: one of :func:`sklearn_names`: ``"iris"`` (150 x 4, 3 classes), ``"wine"``
            (178 x 13, 3 classes), ``"breast_cancer"`` (569 x 30, 2 classes),
            ``"digits"`` (1797 x 64, 10 classes), ``"diabetes"`` (442 x 10 unscaled
            features, real target) or ``"linnerud"`` (20 x 3 inputs, 20 x 3 targets).
        root: the data root holding ``sklearn_bundled/``; see :mod:`bayesfn.data._paths`.
        dtype: floating dtype of ``x`` (and of ``y`` for the regression sets).

    Returns:
        :class:`SklearnData` ``(x, y, target_names)`` with ``x`` an ``(n, d)`` tensor and
        ``y`` as described there. No scaling is applied.

    Raises:
        ValueError: unknown ``name`` or a malformed file.
        FileNotFoundError: the files are missing.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _NAMES:
        raise ValueError(
            f"Unknown scikit-learn data set {name!r}; valid names are "
            f"{', '.join(map(repr, _NAMES))}."
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    folder = resolve_root(root, _DATASET)

    def floats(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    if key in _CLASSIFICATION:
        path = data_file(folder, _CLASSIFICATION[key], _DATASET)
        x, y, classes = _labelled_csv(path)
        return SklearnData(floats(x), _labels(y, path), classes)
    if key == "digits":
        path = data_file(folder, "digits.csv.gz", _DATASET)
        table = _table(_read_text(path), path, ",")
        if table.ndim != 2 or table.shape[1] != 65:
            raise ValueError(f"{path}: expected rows of 64 pixels and a label")
        return SklearnData(
            floats(table[:, :-1]), _labels(table[:, -1], path), tuple(str(i) for i in range(10))
        )
    if key == "diabetes":
        x_path = data_file(folder, "diabetes_data_raw.csv.gz", _DATASET)
        y_path = data_file(folder, "diabetes_target.csv.gz", _DATASET)
        x = _table(_read_text(x_path), x_path, None)
        y = _table(_read_text(y_path), y_path, None).reshape(-1)
        if x.ndim != 2 or x.shape[1] != 10 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{x_path} and {y_path} should hold n x 10 features and n targets; got "
                f"{x.shape} and {y.shape}"
            )
        return SklearnData(floats(x), floats(y), ("disease progression",))
    # linnerud
    x_path = data_file(folder, "linnerud_exercise.csv", _DATASET)
    y_path = data_file(folder, "linnerud_physiological.csv", _DATASET)
    x_header, _, x_body = _read_text(x_path).partition("\n")
    y_header, _, y_body = _read_text(y_path).partition("\n")
    x = _table(x_body, x_path, None)
    y = _table(y_body, y_path, None)
    if x.shape != y.shape or x.shape[1] != len(x_header.split()):
        raise ValueError(f"{x_path} and {y_path} should hold tables of the same shape")
    return SklearnData(floats(x), floats(y), tuple(y_header.split()))
