"""Time series and Snelson loaders against the data README (section 5) and the raw files."""

import numpy as np
import pytest
import torch

from bayesfn.data import load_series, load_snelson, series_names

# name: (rows kept, columns, first time, last time, first values) from the README / files
EXPECTED = {
    "co2": (2284 - 59, ("co2",), 1958, 2001, [316.1]),
    "sunspots": (309, ("sunactivity",), 1700, 2008, [5.0]),
    "nile": (100, ("volume",), 1871, 1970, [1120.0]),
    "elnino": (61 * 12, ("sst",), 1950, 2010, [23.11]),
    "lynx_hare": (21, ("lynx", "hare"), 1900, 1920, [4.0, 30.0]),
}


@pytest.fixture(scope="module", autouse=True)
def _needs_data(data_root):
    return data_root


@pytest.mark.parametrize("name", list(EXPECTED))
def test_series_shapes_and_values(name):
    rows, columns, first, last, values = EXPECTED[name]
    t, y, cols = load_series(name)
    assert t.shape == (rows, 1) and y.shape == (rows, len(columns))
    assert cols == columns and t.dtype == y.dtype == torch.float64
    assert int(t[0].item()) == first and int(t[-1].item()) == last
    assert y[0].tolist() == pytest.approx(values)
    assert torch.isfinite(y).all()
    assert torch.all(t.diff(dim=0) > 0)


def test_names():
    assert series_names() == tuple(EXPECTED)


def test_co2_missing_weeks_kept_as_nan(data_root):
    t, y, _ = load_series("co2", drop_missing=False)
    assert t.shape == (2284, 1)
    raw = (data_root / "mauna_loa_co2" / "co2.csv").read_text().splitlines()[1:]
    missing = np.array([line.split(",")[1] == "" for line in raw])
    assert missing.sum() == 59
    np.testing.assert_array_equal(torch.isnan(y[:, 0]).numpy(), missing)
    # weekly spacing in decimal years
    assert abs(float(t[1, 0] - t[0, 0]) - 7 / 365) < 1e-9


def test_elnino_months_are_twelfths():
    t, y, _ = load_series("elnino", dtype=torch.float32)
    assert y.dtype == torch.float32
    assert t[1].item() == pytest.approx(1950 + 1 / 12)
    assert y[11].item() == pytest.approx(21.80)  # December 1950


def test_snelson(data_root):
    x_train, y_train, x_test = load_snelson()
    assert x_train.shape == y_train.shape == (200, 1) and x_test.shape == (301, 1)
    raw = np.load(data_root / "snelson1d" / "snelson.npz")
    np.testing.assert_array_equal(y_train[:, 0].numpy(), raw["y_train"])
    assert x_test.min().item() == -3.0 and x_test.max().item() == 10.0


def test_unknown_series():
    with pytest.raises(ValueError) as info:
        load_series("mauna_loa")
    assert "'co2'" in str(info.value) and "'lynx_hare'" in str(info.value)
