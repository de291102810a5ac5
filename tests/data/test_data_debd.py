"""DEBD loader against the README's table and independent line counts of the files."""

import numpy as np
import pytest
import torch

from bayesfn.data import DEBDData, debd_names, load_debd

# From shared/data/README.md, section 6: rows x cols per split; None = file absent here.
README_TABLE = {
    "nltcs": ((16181, 16), (2157, 16), (3236, 16)),
    "plants": ((17412, 69), (2321, 69), (3482, 69)),
    "baudio": ((15000, 100), (2000, 100), (3000, 100)),
    "jester": ((9000, 100), (1000, 100), (4116, 100)),
    "bnetflix": ((15000, 100), (2000, 100), (3000, 100)),
    "accidents": ((12758, 111), (1700, 111), (2551, 111)),
    "pumsb_star": ((12262, 163), (1635, 163), (2452, 163)),
    "dna": ((1600, 180), (400, 180), (1186, 180)),
    "bbc": ((1670, 1058), (225, 1058), (330, 1058)),
    "msnbc": (None, (38843, 17), (58265, 17)),
    "kdd": (None, (19907, 64), None),
    "tretail": (None, (2938, 135), (4408, 135)),
}
SPLITS = ("train", "valid", "test")


def test_names_cover_the_readme():
    assert set(debd_names()) == set(README_TABLE)


@pytest.mark.parametrize("name", list(README_TABLE))
def test_shapes_values_and_first_row(name, data_root):
    shapes = README_TABLE[name]
    present = tuple(s for s, shape in zip(SPLITS, shapes, strict=True) if shape is not None)
    data = load_debd(name, splits=present)
    assert isinstance(data, DEBDData) and data.name == name
    for split, shape in zip(SPLITS, README_TABLE[name], strict=True):
        tensor = getattr(data, split)
        if shape is None:
            assert tensor is None
            continue
        path = data_root / "debd" / name / f"{name}.{split}.data"
        raw = path.read_bytes()
        first_line = raw.split(b"\n", 1)[0].decode()
        # independent counts: newline-terminated rows, comma-separated columns
        assert (raw.count(b"\n"), len(first_line.split(","))) == shape
        assert tensor.shape == shape and tensor.dtype == torch.int64
        assert data.num_vars == shape[1]
        assert set(torch.unique(tensor).tolist()) <= {0, 1}
        assert tensor[0].tolist() == [int(v) for v in first_line.split(",")]
        last_line = raw.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
        assert tensor[-1].tolist() == [int(v) for v in last_line.split(",")]


def test_nltcs_column_sums_match_numpy(data_root):
    path = data_root / "debd" / "nltcs" / "nltcs.valid.data"
    reference = np.loadtxt(path, delimiter=",", dtype=np.int64)
    data = load_debd("nltcs", splits=("valid",), dtype=torch.float32)
    assert data.train is None and data.test is None
    assert data.valid.dtype == torch.float32
    np.testing.assert_array_equal(data.valid.numpy(), reference)


@pytest.mark.parametrize("name", ["msnbc", "kdd", "tretail"])
def test_missing_train_split_is_a_clear_error(name):
    with pytest.raises(FileNotFoundError) as info:
        load_debd(name)
    message = str(info.value)
    assert f"{name}.train.data" in message and "splits=(" in message


def test_unknown_name_and_split():
    with pytest.raises(ValueError) as info:
        load_debd("mushrooms")
    assert "'nltcs'" in str(info.value) and "'bbc'" in str(info.value)
    with pytest.raises(ValueError, match="splits"):
        load_debd("nltcs", splits=("training",))


def _write(tmp_path, name, text):
    folder = tmp_path / "debd" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.valid.data").write_text(text)


def test_general_layout_falls_back_to_a_text_parser(tmp_path):
    _write(tmp_path, "nltcs", "0, 1,1\r\n1,0, 0\r\n")
    data = load_debd("nltcs", root=tmp_path, splits="valid")
    assert data.valid.tolist() == [[0, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("text", ["0,1\n1,2\n", "0,1\n1,0,1\n", "a,b\n", "\n"])
def test_malformed_files_raise(tmp_path, text):
    _write(tmp_path, "dna", text)
    with pytest.raises(ValueError, match="dna"):
        load_debd("dna", root=tmp_path, splits=("valid",))
