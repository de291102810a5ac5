"""Model.load on tampered folders: every error is a ValueError naming the file and what
is wrong (the folders are made by saving a real model and editing one file)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from bayesfn import io
from bayesfn.processes import GaussianProcess


@pytest.fixture
def saved(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 2, generator=g, dtype=torch.float64)
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(12, generator=g, dtype=torch.float64)
    GaussianProcess("rbf").fit(x, y, max_steps=2, progress_bar=False).save(tmp_path / "gp")
    return tmp_path / "gp"


def _edit_weights(folder, edit):
    tensors = load_file(str(folder / io.WEIGHTS_FILE))
    edit(tensors)
    save_file(tensors, str(folder / io.WEIGHTS_FILE))


def _edit_config(folder, edit):
    path = folder / io.CONFIG_FILE
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_the_untouched_folder_loads(saved):
    assert GaussianProcess.load(saved).posterior(torch.zeros(1, 2)).mean.shape == (1, 1)


def test_corrupt_json_names_the_config_file(saved):
    (saved / io.CONFIG_FILE).write_text('{"format": "bayesfn-model", ')
    with pytest.raises(ValueError, match=r"gp/config\.json is not valid JSON"):
        GaussianProcess.load(saved)


def test_garbage_weights_name_the_weights_file(saved):
    (saved / io.WEIGHTS_FILE).write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"gp/weights\.safetensors is not a readable safetensors"):
        GaussianProcess.load(saved)


def test_a_changed_shape_names_the_weights_file(saved):
    def widen(t):
        key = next(k for k in t if k.endswith("raw_lengthscale"))
        t[key] = torch.zeros(1, 1, 5, dtype=torch.float64)

    _edit_weights(saved, widen)
    with pytest.raises(ValueError, match=r"weights\.safetensors: the saved state does not fit"):
        GaussianProcess.load(saved)


def test_a_missing_tensor_names_the_file_and_the_tensor(saved):
    def drop(t):
        del t[next(k for k in t if k.endswith("raw_noise"))]

    _edit_weights(saved, drop)
    with pytest.raises(ValueError, match=r"weights\.safetensors lacks tensor '.*raw_noise'"):
        GaussianProcess.load(saved)


def test_inconsistent_saved_data_names_the_problem(saved):
    _edit_weights(saved, lambda t: t.update({"root.y": t["root.y"][:5]}))
    with pytest.raises(
        ValueError, match=r"weights\.safetensors: .*saved inputs \(12, 2\) and targets"
    ):
        GaussianProcess.load(saved)


def test_bad_settings_in_the_config_name_the_file(saved):
    _edit_config(saved, lambda c: c["config"].update(noise=-1.0))
    with pytest.raises(
        ValueError, match=r"config\.json: the saved settings do not build a Gaussian"
    ):
        GaussianProcess.load(saved)
    _edit_config(saved, lambda c: c.pop("class"))
    with pytest.raises(ValueError, match=r"config\.json does not name the saved model's class"):
        GaussianProcess.load(saved)
