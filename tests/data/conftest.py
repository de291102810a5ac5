"""Fixtures for the data tests: where the offline data lives (tests skip when it is absent)."""

from pathlib import Path

import pytest

from bayesfn.data import resolve_root


def _find(subdir: str) -> Path:
    try:
        return resolve_root(None, subdir)
    except FileNotFoundError as err:
        pytest.skip(f"offline data '{subdir}' not available: {err}")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root (the folder holding uci_regression/, mnist/, ...)."""
    return _find("uci_regression").parent


@pytest.fixture
def no_data_env(monkeypatch):
    """Unset BAYESFN_DATA so that the default locations are used."""
    monkeypatch.delenv("BAYESFN_DATA", raising=False)
