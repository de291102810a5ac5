"""Shared test set-up: every test starts from the same seeds, on one thread
(small models on 2 cores run faster that way and timings stay stable)."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 - tests that use the legacy global RNG
    yield


def pytest_configure(config):
    torch.set_num_threads(1)
