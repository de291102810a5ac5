"""Small 1-D regression and time-series data sets (GP, neural-process and BNN illustrations).

Files (see ``shared/data/README.md``, section 5, for origins and licences):

* ``"co2"``: ``mauna_loa_co2/co2.csv``, weekly Mauna Loa CO2 (ppmv), 1958-2001;
* ``"sunspots"``: ``sunspots/sunspots.csv``, yearly sunspot numbers, 1700-2008;
* ``"nile"``: ``nile/nile.csv``, Nile annual flow (1e8 m^3), 1871-1970;
* ``"elnino"``: ``elnino/elnino.csv``, monthly Niño 1+2 sea-surface temperature (°C),
  1950-2010;
* ``"lynx_hare"``: ``lynx_hare/hudson-bay-lynx-hare.csv``, lynx and hare pelts
  (thousands), 1900-1920, two output columns.

Time is in decimal years: ``year + (day of year - 1) / days in year`` for the weekly
CO2 dates, ``year + (month - 1) / 12`` for the monthly El Niño table, the year itself
for yearly series. :func:`load_snelson` reads the Snelson & Ghahramani (2006) 1-D toy
regression data from ``snelson1d/snelson.npz``.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ._paths import data_file, resolve_root

__all__ = ["SnelsonData", "TimeSeries", "load_series", "load_snelson", "series_names"]

_FILES = {
    "co2": ("mauna_loa_co2", "co2.csv"),
    "sunspots": ("sunspots", "sunspots.csv"),
    "nile": ("nile", "nile.csv"),
    "elnino": ("elnino", "elnino.csv"),
    "lynx_hare": ("lynx_hare", "hudson-bay-lynx-hare.csv"),
}


class TimeSeries(NamedTuple):
    """A time series; unpacks as ``t, y, columns``.

    Attributes:
        t: ``(n, 1)`` tensor of times in decimal years.
        y: ``(n, m)`` tensor of values (``m = 2`` for lynx_hare, else 1); NaN marks a
            missing value when ``drop_missing=False``.
        columns: the ``m`` column names.
    """

    t: torch.Tensor
    y: torch.Tensor
    columns: tuple[str, ...]


class SnelsonData(NamedTuple):
    """The Snelson 1-D data; unpacks as ``x_train, y_train, x_test``.

    Attributes:
        x_train: ``(200, 1)`` tensor of inputs.
        y_train: ``(200, 1)`` tensor of targets.
        x_test: ``(301, 1)`` tensor, a grid of test inputs (there are no test targets).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor


def series_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_series`.

    Returns:
        ``("co2", "sunspots", "nile", "elnino", "lynx_hare")``.
    """
    return tuple(_FILES)


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and data rows of a CSV file, skipping ``#`` comments and blank lines."""
    with path.open(newline="") as stream:
        lines = [line for line in stream if line.strip() and not line.lstrip().startswith("#")]
    rows = [[field.strip() for field in row] for row in csv.reader(lines)]
    if len(rows) < 2:
        raise ValueError(f"{path} should hold a header line and at least one data row")
    return rows[0], rows[1:]


def _number(text: str, path: Path) -> float:
    if text == "" or text.upper() in ("NA", "NAN"):
        return math.nan
    try:
        return float(text)
    except ValueError as err:
        raise ValueError(f"{path}: {text!r} is not a number") from err


def _decimal_year(stamp: str, path: Path) -> float:
    try:
        day = datetime.date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
    except ValueError as err:
        raise ValueError(f"{path}: {stamp!r} is not a YYYYMMDD date") from err
    days = 366 if day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0) else 365
    return day.year + (day.timetuple().tm_yday - 1) / days


def load_series(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    drop_missing: bool = True,
    dtype: torch.dtype = torch.float64,
) -> TimeSeries:
    """Load one of the small time series.

    Args:
        name: one of :func:`series_names`.
        root: the data root; see :mod:`bayesfn.data._paths`.
        drop_missing: drop rows with a missing value (only co2 has any: 59 weeks);
            otherwise keep them as NaN.
        dtype: floating dtype of ``t`` and ``y``.

    Returns:
        :class:`TimeSeries` ``(t (n, 1), y (n, m), columns)`` in time order.

    Raises:
        ValueError: unknown ``name`` or a malformed file.
        FileNotFoundError: the file is missing.
    """
    if not isinstance(name, str) or name not in _FILES:
        raise ValueError(
            f"Unknown time series {name!r}; valid names are {', '.join(map(repr, _FILES))}."
        )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    subdir, filename = _FILES[name]
    path = data_file(resolve_root(root, subdir), filename, subdir)
    header, rows = _read_rows(path)
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"{path}: every row should have {len(header)} fields")

    if name == "co2":
        t = [_decimal_year(row[0], path) for row in rows]
        values = [[_number(row[1], path)] for row in rows]
        columns: tuple[str, ...] = ("co2",)
    elif name == "elnino":
        if len(header) != 13:
            raise ValueError(f"{path}: expected a YEAR column and 12 month columns")
        t, values = [], []
        for row in rows:
            year = _number(row[0], path)
            for month in range(12):
                t.append(year + month / 12.0)
                values.append([_number(row[month + 1], path)])
        columns = ("sst",)
    else:
        t = [_number(row[0], path) for row in rows]
        values = [[_number(v, path) for v in row[1:]] for row in rows]
        columns = tuple(h.lower() for h in header[1:])

    t_arr = np.asarray(t, dtype=np.float64)[:, None]
    y_arr = np.asarray(values, dtype=np.float64)
    if drop_missing:
        keep = ~np.isnan(y_arr).any(axis=1)
        t_arr, y_arr = t_arr[keep], y_arr[keep]
    order = np.argsort(t_arr[:, 0], kind="stable")
    return TimeSeries(
        t=torch.from_numpy(t_arr[order]).to(dtype),
        y=torch.from_numpy(y_arr[order]).to(dtype),
        columns=columns,
    )


def load_snelson(
    root: str | os.PathLike[str] | None = None, *, dtype: torch.dtype = torch.float64
) -> SnelsonData:
    """Load the Snelson & Ghahramani (2006) 1-D regression toy data.

    Args:
        root: the data root holding ``snelson1d/``; see :mod:`bayesfn.data._paths`.
        dtype: floating dtype of the tensors.

    Returns:
        :class:`SnelsonData` ``(x_train (200, 1), y_train (200, 1), x_test (301, 1))``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file lacks one of the arrays.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    path = data_file(resolve_root(root, "snelson1d"), "snelson.npz", "snelson1d")
    with np.load(path, allow_pickle=False) as archive:
        missing = {"x_train", "y_train", "x_test"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        arrays = {
            k: np.asarray(archive[k], dtype=np.float64).reshape(-1, 1)
            for k in ("x_train", "y_train", "x_test")
        }
    if arrays["x_train"].shape != arrays["y_train"].shape:
        raise ValueError(f"{path}: x_train and y_train have different lengths")
    return SnelsonData(**{k: torch.from_numpy(v).to(dtype) for k, v in arrays.items()})
