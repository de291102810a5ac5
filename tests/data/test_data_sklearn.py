"""Bundled scikit-learn data sets against their published descriptions (descr/*.rst)."""

import pytest
import torch

from bayesfn.data import load_sklearn, sklearn_names

# name: (shape of x, class counts or None for regression)
PUBLISHED = {
    "iris": ((150, 4), [50, 50, 50]),
    "wine": ((178, 13), [59, 71, 48]),
    "breast_cancer": ((569, 30), [212, 357]),
    "digits": ((1797, 64), None),
    "diabetes": ((442, 10), None),
    "linnerud": ((20, 3), None),
}


@pytest.fixture(scope="module", autouse=True)
def _needs_data(data_root):
    return data_root


def test_names():
    assert set(sklearn_names()) == set(PUBLISHED)


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_classification_sets(name):
    shape, counts = PUBLISHED[name]
    x, y, classes = load_sklearn(name)
    assert x.shape == shape and x.dtype == torch.float64
    assert y.shape == (shape[0],) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == counts
    assert len(classes) == len(counts)


def test_iris_first_row_and_class_names():
    x, y, classes = load_sklearn("iris")
    assert x[0].tolist() == [5.1, 3.5, 1.4, 0.2] and y[0].item() == 0
    assert classes == ("setosa", "versicolor", "virginica")


def test_breast_cancer_labels_are_malignant_then_benign():
    _, y, classes = load_sklearn("breast_cancer")
    assert classes == ("malignant", "benign")
    assert y[0].item() == 0  # the first record is malignant


def test_digits():
    x, y, _ = load_sklearn("digits")
    assert x.shape == (1797, 64)
    assert x.min().item() == 0 and x.max().item() == 16
    assert torch.all(x == x.round())
    assert y[:10].tolist() == list(range(10))
    assert torch.bincount(y, minlength=10).sum().item() == 1797


def test_diabetes_raw_features_and_target():
    x, y, _ = load_sklearn("diabetes")
    assert x.shape == (442, 10) and y.shape == (442,) and y.dtype == torch.float64
    assert x[0].tolist()[:4] == [59.0, 2.0, 32.1, 101.0]
    assert y[0].item() == 151.0
    assert y.min().item() == 25.0 and y.max().item() == 346.0


def test_linnerud():
    x, y, names = load_sklearn("linnerud", dtype=torch.float32)
    assert x.shape == (20, 3) and y.shape == (20, 3) and x.dtype == torch.float32
    assert x[0].tolist() == [5.0, 162.0, 60.0]
    assert y[0].tolist() == [191.0, 36.0, 50.0]
    assert names == ("Weight", "Waist", "Pulse")


def test_unknown_name():
    with pytest.raises(ValueError) as info:
        load_sklearn("boston")
    assert "'iris'" in str(info.value) and "'diabetes'" in str(info.value)


def test_header_mismatch_is_reported(tmp_path):
    folder = tmp_path / "sklearn_bundled"
    folder.mkdir()
    (folder / "iris.csv").write_text("3,4,a,b,c\n5.1,3.5,1.4,0.2,0\n")
    with pytest.raises(ValueError, match="header promises 3 rows"):
        load_sklearn("iris", root=tmp_path)
