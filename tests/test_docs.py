"""The documentation: every public name has a reference entry and a docstring that
gives tensor shapes, and a strict build fails on a broken reference."""

import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = [
    "bayesfn",
    "bayesfn.bayesnn",
    "bayesfn.processes",
    "bayesfn.circuits",
    "bayesfn.kernels",
    "bayesfn.data",
]
# a shape in a docstring: "(n, d)", "``(b, n, d)``", "batch x q x d", "(S,) + batch"...
_SHAPE = re.compile(r"\(\s*[\w*+.]+\s*,|\(\s*\w+\s*,?\s*\)|\bshape\b|\bx\b \w+ \bx\b")


def _documented_modules() -> set[str]:
    names = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        names.update(re.findall(r"^:::\s*([\w.]+)", page.read_text(), flags=re.M))
    return names


def _public():
    for package in SUBPACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            if name.startswith("__"):
                continue
            yield package, name, getattr(module, name)


def _takes_tensors(obj) -> bool:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        hints = inspect.signature(target)
    except (TypeError, ValueError):
        return False
    text = str(hints)
    return "Tensor" in text


def test_every_public_name_has_a_reference_entry():
    documented = _documented_modules()
    missing = []
    for package, name, obj in _public():
        home = getattr(obj, "__module__", package)
        if package not in documented and not any(
            home == m or home.startswith(m + ".") for m in documented
        ):
            missing.append(f"{package}.{name}")
    assert not missing, f"no API page renders {missing}; add a ':::' entry in docs/api/"


def test_every_public_name_has_a_docstring_with_tensor_shapes():
    undocumented, shapeless = [], []
    for package, name, obj in _public():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        if inspect.isclass(obj) and obj.__init__ is not object.__init__:
            doc += "\n" + (inspect.getdoc(obj.__init__) or "")
        if not doc.strip():
            undocumented.append(f"{package}.{name}")
        elif _takes_tensors(obj) and not _SHAPE.search(doc):
            shapeless.append(f"{package}.{name}")
    assert not undocumented, f"public names without a docstring: {undocumented}"
    assert not shapeless, f"docstrings that take tensors but state no shape: {shapeless}"


def _build(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        # not -q: a quiet build stops counting warnings, and strict mode fails on them
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(folder / "mkdocs.yml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )


def test_a_strict_build_fails_on_a_broken_reference(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nplugins:\n  - mkdocstrings:\n      handlers:\n"
        f"        python:\n          paths: ['{ROOT}']\n"
    )
    page = tmp_path / "docs" / "index.md"
    page.write_text("# ok\n\n::: bayesfn.covariance.build_kernel\n")
    good = _build(tmp_path)
    assert good.returncode == 0, good.stderr
    page.write_text("# broken\n\nSee [the contract](contract.md).\n")
    assert _build(tmp_path).returncode != 0
    page.write_text("# broken\n\n::: bayesfn.covariance.no_such_function\n")
    assert _build(tmp_path).returncode != 0
    shutil.rmtree(tmp_path / "site", ignore_errors=True)
