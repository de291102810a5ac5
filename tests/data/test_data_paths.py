"""Where loaders look for data, and what they say when it is not there."""

from pathlib import Path

import pytest

import bayesfn.data._paths as paths_module
from bayesfn.data import ENV_VAR, load_debd, load_mnist, load_sklearn, load_uci, resolve_root

LOADERS = [
    ("uci_regression/concrete", lambda root: load_uci("concrete", root=root)),
    ("debd/nltcs", lambda root: load_debd("nltcs", root=root)),
    ("mnist", lambda root: load_mnist("test", root=root)),
    ("sklearn_bundled", lambda root: load_sklearn("iris", root=root)),
]


@pytest.mark.parametrize(("subdir", "load"), LOADERS)
def test_missing_env_root_names_the_path_and_the_fix(subdir, load, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load(None)
    message = str(info.value)
    assert str(tmp_path / subdir) in message
    assert subdir in message
    assert ENV_VAR in message and "root=" in message


@pytest.mark.parametrize(("subdir", "load"), LOADERS)
def test_missing_explicit_root_names_the_path(subdir, load, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load(missing)
    message = str(info.value)
    assert str(missing / subdir) in message
    assert "root= argument" in message
    # root= takes precedence: the environment variable's folder is not looked in
    assert str(tmp_path / "elsewhere") not in message


def test_root_argument_beats_environment(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    split = load_uci("yacht", root=data_root)
    assert split.x_train.shape == (277, 6)


def test_environment_variable_is_used(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(data_root))
    monkeypatch.chdir(tmp_path)
    assert load_uci("yacht").x_test.shape == (31, 6)


def test_defaults_include_cwd_parent_and_repository_sibling(no_data_env, tmp_path, monkeypatch):
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    roots = paths_module.default_roots()
    assert roots[0] == (tmp_path / "shared" / "data").resolve()
    repo_parent = Path(paths_module.__file__).resolve().parents[3]
    assert roots[-1].resolve() == (repo_parent / "shared" / "data").resolve()


def test_default_relative_to_cwd_is_found(no_data_env, tmp_path, monkeypatch):
    (tmp_path / "shared" / "data" / "mnist").mkdir(parents=True)
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    found = resolve_root(None, "mnist")
    assert found == (tmp_path / "shared" / "data" / "mnist").resolve()


def test_default_relative_to_repository_is_found(data_root, no_data_env, tmp_path, monkeypatch):
    repo_default = Path(paths_module.__file__).resolve().parents[3] / "shared" / "data"
    if not (repo_default / "uci_regression").is_dir():
        pytest.skip("the data is not beside the repository here")
    monkeypatch.chdir(tmp_path)
    assert load_uci("yacht").x_train.shape == (277, 6)


def test_missing_file_inside_found_folder(tmp_path):
    folder = tmp_path / "uci_regression" / "concrete"
    folder.mkdir(parents=True)
    (folder / "n_splits.txt").write_text("20\n")
    with pytest.raises(FileNotFoundError) as info:
        load_uci("concrete", root=tmp_path)
    assert str(folder / "data.txt") in str(info.value)


def test_bad_root_type():
    with pytest.raises(TypeError, match="root"):
        load_uci("concrete", root=3)
