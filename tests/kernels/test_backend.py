"""Backend selection for the kernels (no triton import, no GPU needed)."""

import subprocess
import sys

import pytest
import torch

from bayesfn.kernels import backend, cp_layer, get_backend, set_backend, sq_layer, use_backend


def test_importing_kernels_never_imports_triton():
    code = "import sys, bayesfn.kernels; assert 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_use_backend_nests_and_restores():
    assert get_backend() == "auto"
    with use_backend("torch"):
        assert get_backend() == "torch"
        with use_backend("triton"):
            assert get_backend() == "triton"
        assert get_backend() == "torch"
    assert get_backend() == "auto"
    set_backend("torch")
    try:
        assert get_backend() == "torch"
    finally:
        set_backend("auto")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        set_backend("cuda")
    with pytest.raises(ValueError, match="backend must be one of"), use_backend("gpu"):
        pass


def test_auto_on_cpu_uses_the_torch_reference():
    x = torch.zeros(1, 2, 3, dtype=torch.float64)
    w = torch.ones(1, 2, 3, dtype=torch.float64)
    assert not backend.use_triton(x, w)
    with use_backend("torch"):
        ref = cp_layer(x, torch.ones_like(x), x, torch.ones_like(x), w, signed=True)
    out = cp_layer(x, torch.ones_like(x), x, torch.ones_like(x), w, signed=True)
    torch.testing.assert_close(out, ref)


@pytest.mark.skipif(backend.interpreter_enabled(), reason="TRITON_INTERPRET=1 is set")
def test_forcing_triton_on_cpu_without_interpreter_is_a_clear_error():
    x = torch.zeros(1, 2, 3, dtype=torch.float64)
    w = torch.ones(1, 2, 3, dtype=torch.float64)
    with use_backend("triton"), pytest.raises(RuntimeError, match=r"TRITON_INTERPRET=1|triton"):
        cp_layer(x, torch.ones_like(x), x, torch.ones_like(x), w, signed=True)
    xm = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    with use_backend("triton"), pytest.raises(RuntimeError, match=r"TRITON_INTERPRET=1|triton"):
        sq_layer(xm, torch.ones_like(xm), xm, torch.ones_like(xm), w)
