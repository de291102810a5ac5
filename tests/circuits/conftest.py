"""Small fitted circuits shared by the tests, with weights scrambled so that signs matter."""

import pytest
import torch

from bayesfn.circuits import MonotonicCircuit, SquaredCircuit

KINDS = ["mpc", "mpc2", "npc2"]


def make_circuit(kind: str, **kwargs):
    # the fixtures keep the one data start they were written with (NPC²'s default fit
    # now tries four starts); test_init_restarts.py tests the other starts
    kwargs = {"init": "data", "restarts": 1, **kwargs}
    if kind == "mpc":
        return MonotonicCircuit(**kwargs)
    if kind == "mpc2":
        return MonotonicCircuit(squared=True, **kwargs)
    return SquaredCircuit(**kwargs)


def scramble(model, seed: int = 0, scale: float = 1.0):
    """Random weights (both signs for NPC²) so that tests do not sit at the init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in model.module_.weight:
            w.copy_(scale * torch.randn(w.shape, generator=g, dtype=torch.float64).to(w.dtype))
        for p in model.module_.inputs.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return model


def fitted(kind: str, x, *, steps: int = 2, seed: int = 0, **kwargs):
    model = make_circuit(kind, **kwargs).fit(x, max_steps=steps, progress_bar=False)
    return scramble(model, seed)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param
