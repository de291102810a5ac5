"""Tests of bayesfn.io: the pickle-free safetensors + JSON state writer.

The reference for every round trip is the original object itself, compared with a strict
structural equality (types of containers, keys and scalars; tensor dtype, shape and bits).
"""

from __future__ import annotations

import json
import math
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file

from bayesfn import io


def _same(a, b, where="root") -> None:
    """Structural equality that also checks types (tuple vs list, int vs float, key types)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        bits_a = a.contiguous().reshape(-1).view(torch.uint8)
        bits_b = b.contiguous().reshape(-1).view(torch.uint8)
        assert torch.equal(bits_a, bits_b), where  # bit-exact: NaN and -0.0 included
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _same(u, v, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def _forbid_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def _nested_state():
    g = torch.Generator().manual_seed(0)
    return {
        "weights": {
            "w": torch.randn(3, 4, generator=g, dtype=torch.float64),
            "t": torch.randn(4, 3, generator=g).t(),  # not contiguous
            "half": torch.randn(5, generator=g).to(torch.float16),
            "bf16": torch.randn(5, generator=g).to(torch.bfloat16),
            "ints": torch.arange(-3, 3, dtype=torch.int64),
            "bytes": torch.tensor([0, 7, 255], dtype=torch.uint8),
            "mask": torch.tensor([True, False, True]),
            "scalar": torch.tensor(2.5, dtype=torch.float64),
            "empty": torch.empty(0, 3),
            "special": torch.tensor([math.nan, math.inf, -math.inf, -0.0]),
        },
        "optimizer": {  # shaped like torch.optim state_dicts: parameter-index keys
            "state": {
                0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)},
                1: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)},
            },
            "param_groups": [
                {
                    "params": [0, 1],
                    "betas": (0.9, 0.999),
                    "lr": 1e-3,
                    "foreach": None,
                    "maximize": False,
                }
            ],
        },
        "dtypes": [torch.float32, torch.float64, torch.int64, torch.bfloat16, torch.bool],
        "tuple": (1, "two", 3.0, None, (torch.ones(1), [])),
        "floats": [math.nan, math.inf, -math.inf, 0.1, 1e-300, -0.0],
        "ints": [0, -1, 2**62],
        "nothing": None,
        "empty_dict": {},
        "empty_list": [],
        "empty_tuple": (),
        "text": "ünïcode",
        7: "an int key at the top level makes the whole dict int-keyed?",
    }


def test_round_trip_of_nested_state(tmp_path, monkeypatch):
    state = _nested_state()
    del state[7]  # mixed key types are refused; see test_unsaveable_objects_raise_type_error
    header = {"class": "Thing", "version": 2, "settings": {"alpha": 0.5, "n": None}}
    io.write_state(tmp_path / "s", header, state)
    _forbid_pickle(monkeypatch)
    got_header, got = io.read_state(tmp_path / "s")
    _same(got_header, header)
    _same(got, state)


def test_round_trip_without_tensors(tmp_path):
    state = {"a": 1, "b": [None, (2.0, math.nan)], "c": {3: "x"}}
    io.write_state(tmp_path / "s", {}, state)
    header, got = io.read_state(tmp_path / "s")
    assert header == {}
    _same(got, state)
    assert load_file(str(tmp_path / "s" / io.WEIGHTS_FILE)) == {}


def test_files_are_json_and_safetensors(tmp_path):
    io.write_state(tmp_path / "s", {"k": 1}, {"x": torch.arange(4.0), "y": [1.5]})
    assert sorted(os.listdir(tmp_path / "s")) == [io.CONFIG_FILE, io.WEIGHTS_FILE]
    config = json.loads((tmp_path / "s" / io.CONFIG_FILE).read_text())
    assert config["k"] == 1 and config["state"]["y"] == [1.5]
    weights = load_file(str(tmp_path / "s" / io.WEIGHTS_FILE))
    assert next(iter(weights.values())).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_key_paths_that_collide_keep_their_own_tensors(tmp_path):
    a, b, c = torch.ones(2), torch.zeros(2), torch.full((2,), 2.0)
    state = {"a.b": a, "a": {"b": b, "b'": c}}
    io.write_state(tmp_path / "s", {}, state)
    _same(io.read_state(tmp_path / "s")[1], state)


def test_shared_and_tied_tensors_round_trip(tmp_path):
    w = torch.randn(3, 3)
    lin = torch.nn.Linear(3, 3)
    lin2 = torch.nn.Linear(3, 3)
    lin2.weight = lin.weight  # weight tying: state_dicts name one tensor twice
    state = {
        "w": w,
        "again": w,
        "row": w[1],
        "tied": {**lin.state_dict(), **{f"2.{k}": v for k, v in lin2.state_dict().items()}},
    }
    io.write_state(tmp_path / "s", {}, state)
    got = io.read_state(tmp_path / "s")[1]
    _same(got, {k: v for k, v in state.items()})
    assert torch.equal(got["tied"]["2.weight"], lin.weight.detach())


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    """An Adam state_dict saved and loaded gives the same next step as the original."""
    torch.manual_seed(0)
    x = torch.randn(10, 2, dtype=torch.float64)

    def make():
        p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        return p, torch.optim.Adam([p], lr=0.1)

    def step(p, opt):
        opt.zero_grad()
        ((x @ p).sin() ** 2).sum().backward()
        opt.step()

    p, opt = make()
    for _ in range(3):
        step(p, opt)
    io.write_state(tmp_path / "s", {}, {"p": p, "opt": opt.state_dict()})
    step(p, opt)

    state = io.read_state(tmp_path / "s")[1]
    q, opt2 = make()
    with torch.no_grad():
        q.copy_(state["p"])
    opt2.load_state_dict(state["opt"])
    step(q, opt2)
    assert torch.equal(p.detach(), q.detach())


def test_second_write_replaces_the_first(tmp_path):
    target = tmp_path / "s"
    io.write_state(target, {"v": 1}, {"x": torch.zeros(3), "old_only": torch.ones(1)})
    io.write_state(target, {"v": 2}, {"x": torch.ones(2)})
    header, state = io.read_state(target)
    assert header == {"v": 2}
    _same(state, {"x": torch.ones(2)})
    assert sorted(os.listdir(tmp_path)) == ["s"]  # no temporary or backup folders left
    assert "old_only" not in json.dumps(json.loads((target / io.CONFIG_FILE).read_text()))


@pytest.mark.parametrize("bad", [object(), {1, 2}, {"x": [torch.ones(1), lambda: 0]}])
def test_failed_write_leaves_the_old_folder_intact(tmp_path, bad):
    target = tmp_path / "s"
    io.write_state(target, {"v": 1}, {"x": torch.arange(3.0)})
    with pytest.raises(TypeError, match="cannot save an object of type"):
        io.write_state(target, {"v": 2}, {"x": torch.zeros(3), "bad": bad})
    header, state = io.read_state(target)
    assert header == {"v": 1}
    _same(state, {"x": torch.arange(3.0)})
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_failure_while_writing_files_leaves_the_old_folder_intact(tmp_path, monkeypatch):
    target = tmp_path / "s"
    io.write_state(target, {"v": 1}, {"x": torch.arange(3.0)})

    def disk_full(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(io, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.write_state(target, {"v": 2}, {"x": torch.zeros(3)})
    monkeypatch.undo()
    header, state = io.read_state(target)
    assert header == {"v": 1}
    _same(state, {"x": torch.arange(3.0)})
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_unserialisable_header_leaves_the_old_folder_intact(tmp_path):
    target = tmp_path / "s"
    io.write_state(target, {"v": 1}, {"x": torch.arange(3.0)})
    with pytest.raises(TypeError, match="not JSON serializable"):
        io.write_state(target, {"v": 2, "bad": object()}, {"x": torch.zeros(3)})
    assert io.read_state(target)[0] == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_read_falls_back_to_backup_after_a_crash_between_renames(tmp_path):
    target = tmp_path / "s"
    io.write_state(target, {"v": 1}, {"x": torch.arange(3.0)})
    os.replace(target, tmp_path / ".s.old")  # the state write_state passes through
    header, state = io.read_state(target)
    assert header == {"v": 1}
    _same(state, {"x": torch.arange(3.0)})


def test_missing_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing; .* not a saved"):
        io.read_state(tmp_path / "nowhere")
    io.write_state(tmp_path / "s", {}, {"x": torch.ones(1)})
    (tmp_path / "s" / io.WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"weights\.safetensors is missing"):
        io.read_state(tmp_path / "s")


def test_unsaveable_objects_raise_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"non-string key 7 at 'root'"):
        io.write_state(tmp_path / "s", {}, _nested_state())
    with pytest.raises(TypeError, match=r"non-string key \(1, 2\)"):
        io.split_tensors({"a": {(1, 2): 3}})
    # bool keys are not int keys: they would be written as "True" and fail to read back
    with pytest.raises(TypeError, match=r"non-string key True"):
        io.split_tensors({True: 1, False: 2})
    with pytest.raises(TypeError, match=r"object of type complex at 'root\.z'"):
        io.split_tensors({"z": 1j})
    assert not (tmp_path / "s").exists()
    assert os.listdir(tmp_path) == []


def test_split_and_join_are_inverse_and_json_serialisable():
    state = _nested_state()
    del state[7]
    skeleton, tensors = io.split_tensors(state)
    text = json.dumps(skeleton, allow_nan=True)
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in tensors.values())
    _same(io.join_tensors(json.loads(text), tensors), state)
