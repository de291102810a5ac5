"""The torch path of the CP layer against a direct float64 computation in linear space."""

import pytest
import torch

from bayesfn.kernels import cp_layer
from bayesfn.kernels.cp_layer import cp_layer_positive_log, signed_log


def _inputs(seed, F=3, B=5, K_in=4, K_out=6):
    g = torch.Generator().manual_seed(seed)
    left = torch.randn(F, B, K_in, generator=g, dtype=torch.float64)
    right = torch.randn(F, B, K_in, generator=g, dtype=torch.float64)
    weight = torch.randn(F, K_out, K_in, generator=g, dtype=torch.float64)
    return left, right, weight


def test_positive_log_equals_the_linear_space_layer():
    a, b, w = _inputs(0)
    la, lb, lw = a.abs().log(), b.abs().log(), w  # log-weights of exp(w)
    la[0, 1, 2] = -torch.inf  # an exact zero input
    lb[2, :, :] = -torch.inf  # a fully zero fold: the output is exactly zero
    direct = torch.einsum("fok,fbk->fbo", lw.exp(), la.exp() * lb.exp())
    out = cp_layer_positive_log(la, lb, lw)
    assert torch.isneginf(out[2]).all()
    torch.testing.assert_close(out[:2], direct[:2].log(), rtol=1e-12, atol=0)
    log_cp, sign_cp = cp_layer(la, None, lb, None, lw, signed=False)
    assert torch.equal(out, log_cp)
    assert torch.equal(sign_cp, (~torch.isneginf(log_cp)).to(sign_cp.dtype))


def test_signed_layer_equals_the_linear_space_layer_with_cancellation():
    a, b, w = _inputs(1)
    w[1, 0] = 0.0
    a[1, :, :] = 1.0
    b[1, :, :] = 1.0  # inputs all ones: output row 0 of fold 1 is exactly zero
    la, sa = signed_log(a)
    lb, sb = signed_log(b)
    log, sign = cp_layer(la, sa, lb, sb, w, signed=True)
    direct = torch.einsum("fok,fbk->fbo", w, a * b)
    assert torch.isneginf(log[1, :, 0]).all() and (sign[1, :, 0] == 0).all()
    torch.testing.assert_close(sign * log.exp(), direct, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("signed", [False, True])
def test_gradients_match_finite_differences(signed):
    a, b, w = _inputs(2, F=2, B=3, K_in=3, K_out=2)
    la = a.abs().log().requires_grad_()
    lb = b.abs().log().requires_grad_()
    w = w.requires_grad_()
    if signed:
        sa, sb = torch.sign(a), torch.sign(b)
        fn = lambda la, lb, w: cp_layer(la, sa, lb, sb, w, signed=True)[0]  # noqa: E731
        # keep away from sign changes of the output, where log|y| is not differentiable
        y = torch.einsum("fok,fbk->fbo", w.detach(), a * b)
        assert y.abs().min() > 1e-3
    else:
        fn = cp_layer_positive_log
    assert torch.autograd.gradcheck(fn, (la, lb, w))
