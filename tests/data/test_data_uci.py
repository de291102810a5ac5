"""UCI regression loader against the data README's table and a plain-numpy recomputation."""

from pathlib import Path

import numpy as np
import pytest
import torch

from bayesfn.data import UCISplit, load_uci, uci_names

# From shared/data/README.md, section 1: folder, rows, columns, features, splits, train, test.
README_TABLE = {
    "boston": ("bostonHousing", 506, 14, 13, 20, 455, 51),
    "concrete": ("concrete", 1030, 9, 8, 20, 927, 103),
    "energy": ("energy", 768, 9, 8, 20, 691, 77),
    "kin8nm": ("kin8nm", 8192, 9, 8, 20, 7373, 819),
    "naval": ("naval-propulsion-plant", 11934, 18, 16, 20, 10741, 1193),
    "power": ("power-plant", 9568, 5, 4, 20, 8611, 957),
    "protein": ("protein-tertiary-structure", 45730, 10, 9, 5, 41157, 4573),
    "wine": ("wine-quality-red", 1599, 12, 11, 20, 1439, 160),
    "yacht": ("yacht", 308, 7, 6, 20, 277, 31),
}


def _ints(path: Path) -> np.ndarray:
    return np.array([int(v) for v in path.read_text().split()], dtype=np.int64)


@pytest.fixture(scope="module")
def uci_dir(data_root) -> Path:
    return data_root / "uci_regression"


def test_names_cover_the_readme():
    assert set(uci_names()) == set(README_TABLE)


@pytest.mark.parametrize("name", list(README_TABLE))
def test_split0_matches_readme_and_numpy_reference(name, uci_dir):
    folder, rows, cols, n_feat, n_splits, n_train, n_test = README_TABLE[name]
    split = load_uci(name, 0)
    assert isinstance(split, UCISplit)
    assert split.name == name and split.split == 0 and split.standardized
    assert split.x_train.shape == (n_train, n_feat)
    assert split.y_train.shape == (n_train, 1)
    assert split.x_test.shape == (n_test, n_feat)
    assert split.y_test.shape == (n_test, 1)
    assert split.x_mean.shape == (n_feat,) and split.y_std.shape == (1,)
    assert split.x_train.dtype == torch.float64

    # Independent reference: raw file, plain index parsing, numpy statistics.
    d = uci_dir / folder
    raw = np.loadtxt(d / "data.txt")
    assert raw.shape == (rows, cols)
    assert int((d / "n_splits.txt").read_text()) == n_splits
    train, test = _ints(d / "index_train_0.txt"), _ints(d / "index_test_0.txt")
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).size == rows
    features, target = _ints(d / "index_features.txt"), _ints(d / "index_target.txt")[0]

    x_tr, x_te = raw[train][:, features], raw[test][:, features]
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std[std < 1e-12] = 1.0
    np.testing.assert_allclose(split.x_test.numpy(), (x_te - mean) / std, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(split.x_train.numpy(), (x_tr - mean) / std, rtol=1e-10, atol=1e-10)
    y_tr = raw[train, target]
    np.testing.assert_allclose(split.y_mean.numpy(), [y_tr.mean()], rtol=1e-12)
    np.testing.assert_allclose(split.y_std.numpy(), [y_tr.std()], rtol=1e-12)
    np.testing.assert_allclose(
        split.unstandardize_y(split.y_test).numpy()[:, 0],
        raw[test, target],
        rtol=1e-10,
        atol=1e-12,
    )

    # Standardised training columns: mean 0, std 1; constant columns exactly 0.
    xt = split.x_train.numpy()
    assert np.isfinite(xt).all() and np.isfinite(split.x_test.numpy()).all()
    constant = np.ptp(x_tr, axis=0) == 0
    np.testing.assert_allclose(xt.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(xt[:, ~constant].std(axis=0), 1.0, rtol=1e-10)
    assert np.all(xt[:, constant] == 0.0)
    np.testing.assert_allclose(split.y_train.numpy().mean(), 0.0, atol=1e-10)
    np.testing.assert_allclose(split.y_train.numpy().std(), 1.0, rtol=1e-10)


def test_naval_has_the_two_constant_columns():
    split = load_uci("naval")
    constant = (split.x_train == 0).all(dim=0)
    assert constant.nonzero().flatten().tolist() == [8, 11]
    assert split.x_std[8] == 1.0 and split.x_std[11] == 1.0


def test_unstandardised_values_are_the_raw_rows(uci_dir):
    split = load_uci("yacht", 3, standardize=False, dtype=torch.float32)
    d = uci_dir / "yacht"
    raw = np.loadtxt(d / "data.txt")
    test = _ints(d / "index_test_3.txt")
    assert split.x_test.dtype == torch.float32
    np.testing.assert_allclose(split.x_test.numpy(), raw[test, :6], rtol=1e-6)
    np.testing.assert_allclose(split.y_test.numpy()[:, 0], raw[test, 6], rtol=1e-6)
    assert torch.all(split.y_std == 1) and torch.all(split.x_mean == 0)


def test_folder_names_and_case_are_accepted():
    a = load_uci("bostonHousing", 1)
    b = load_uci("Boston", 1)
    assert a.name == b.name == "boston"
    assert torch.equal(a.x_test, b.x_test)


def test_splits_differ_and_last_split_loads():
    s0, s19 = load_uci("concrete", 0), load_uci("concrete", 19)
    assert s19.split == 19
    assert not torch.equal(s0.y_test, s19.y_test)


@pytest.mark.parametrize(
    ("name", "bad", "bound"), [("protein", 5, 4), ("concrete", 20, 19), ("yacht", -1, 19)]
)
def test_split_out_of_range(name, bad, bound):
    with pytest.raises(ValueError, match=rf"split must be in \[0, {bound}\]"):
        load_uci(name, bad)


def test_protein_last_valid_split():
    assert load_uci("protein", 4).x_test.shape == (4573, 9)


def test_split_type_errors():
    with pytest.raises(TypeError, match="split"):
        load_uci("yacht", 1.0)
    with pytest.raises(TypeError, match="split"):
        load_uci("yacht", True)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        load_uci("housing")
    for name in README_TABLE:
        assert repr(name) in str(info.value)


def test_corrupt_index_file_is_reported(tmp_path, uci_dir):
    folder = tmp_path / "uci_regression" / "yacht"
    folder.mkdir(parents=True)
    for f in (uci_dir / "yacht").glob("*.txt"):
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "index_test_0.txt").write_text("0\n5000\n")
    with pytest.raises(ValueError, match="outside"):
        load_uci("yacht", root=tmp_path)


def test_all_rows_are_the_file_in_order(uci_dir):
    from bayesfn.data import load_uci_rows

    x, y = load_uci_rows("yacht")
    raw = np.loadtxt(uci_dir / "yacht" / "data.txt")
    np.testing.assert_array_equal(x, raw[:, :6])
    np.testing.assert_array_equal(y, raw[:, 6])
    split = load_uci("yacht", 0, standardize=False)
    assert x.shape[0] == split.x_train.shape[0] + split.x_test.shape[0]
