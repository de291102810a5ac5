"""The signed-log kernels against dense linear-algebra references."""

import pytest
import torch

from bayesfn.kernels import cp_layer, signed_log, signed_logsumexp, sq_layer


def _rand_signed(shape, g):
    v = torch.randn(shape, generator=g, dtype=torch.float64)
    return signed_log(v), v


def test_cp_layer_signed_matches_dense():
    g = torch.Generator().manual_seed(0)
    (al, as_), a = _rand_signed((3, 5, 4), g)
    (bl, bs), b = _rand_signed((3, 5, 4), g)
    w = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    ol, os_ = cp_layer(al, as_, bl, bs, w, signed=True)
    ref = torch.einsum("foi,fbi->fbo", w, a * b)
    torch.testing.assert_close(os_ * ol.exp(), ref, rtol=1e-12, atol=0)
    assert ol.shape == (3, 5, 2)


def test_cp_layer_log_weights_match_dense_and_survive_huge_magnitudes():
    g = torch.Generator().manual_seed(1)
    al = torch.randn(2, 3, 4, generator=g, dtype=torch.float64) - 800.0  # e^-800 underflows
    bl = torch.randn(2, 3, 4, generator=g, dtype=torch.float64) - 900.0
    theta = torch.randn(2, 5, 4, generator=g, dtype=torch.float64) + 700.0
    ol, os_ = cp_layer(al, None, bl, None, theta, signed=False)
    ref = torch.logsumexp(theta.unsqueeze(1) + (al + bl).unsqueeze(2), dim=-1)
    torch.testing.assert_close(ol, ref, rtol=1e-12, atol=1e-10)
    assert (os_ == 1).all()


def test_exact_cancellation_gives_exact_zero():
    left = torch.zeros(1, 1, 2, dtype=torch.float64)  # values (1, 1)
    sign = torch.ones_like(left)
    w = torch.tensor([[[1.0, -1.0], [2.0, 0.0]]], dtype=torch.float64)
    ol, os_ = cp_layer(left, sign, left, sign, w, signed=True)
    assert ol[0, 0, 0] == -torch.inf and os_[0, 0, 0] == 0
    torch.testing.assert_close(ol[0, 0, 1].exp(), torch.tensor(2.0, dtype=torch.float64))


def test_all_minus_inf_inputs_give_zero_without_nan():
    neg = torch.full((2, 3, 4), -torch.inf, dtype=torch.float64)
    ol, os_ = cp_layer(
        neg,
        torch.zeros_like(neg),
        neg,
        torch.zeros_like(neg),
        torch.randn(2, 3, 4, dtype=torch.float64),
        signed=True,
    )
    assert torch.isneginf(ol).all() and (os_ == 0).all()
    ol, os_ = cp_layer(
        neg, None, neg, None, torch.randn(2, 3, 4, dtype=torch.float64), signed=False
    )
    assert torch.isneginf(ol).all()


def test_sq_layer_matches_w_x_wt():
    g = torch.Generator().manual_seed(2)
    (al, as_), a = _rand_signed((2, 3, 4, 4), g)
    (bl, bs), b = _rand_signed((2, 3, 4, 4), g)
    w = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    ol, os_ = sq_layer(al, as_, bl, bs, w)
    ref = torch.einsum("foi,fbij,fpj->fbop", w, a * b, w)
    torch.testing.assert_close(os_ * ol.exp(), ref, rtol=1e-12, atol=1e-14)


def test_signed_logsumexp():
    v = torch.tensor([[3.0, -3.0, 1.0], [2.0, -5.0, 0.0]], dtype=torch.float64)
    l, s = signed_logsumexp(*signed_log(v), dim=-1)
    torch.testing.assert_close(s * l.exp(), v.sum(-1))
    l, s = signed_logsumexp(*signed_log(torch.tensor([2.0, -2.0], dtype=torch.float64)), dim=0)
    assert l == -torch.inf and s == 0


@pytest.mark.parametrize("signed", [True, False])
def test_gradcheck_cp_layer(signed):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    sa = torch.where(torch.rand(2, 3, 4, generator=g) < 0.5, -1.0, 1.0).double() if signed else None
    sb = torch.ones(2, 3, 4, dtype=torch.float64) if signed else None
    assert torch.autograd.gradcheck(
        lambda a, b, w: cp_layer(a, sa, b, sb, w, signed=signed)[0].nan_to_num(neginf=0.0),
        (a, b, w),
    )


def test_gradcheck_sq_layer():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(1, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(1, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b, w: sq_layer(a, ones, b, ones, w)[0], (a, b, w))


def test_zero_output_has_finite_gradient():
    left = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    sign = torch.ones(1, 1, 2, dtype=torch.float64)
    w = torch.tensor([[[1.0, -1.0], [1.0, 1.0]]], dtype=torch.float64, requires_grad=True)
    ol, _ = cp_layer(left, sign, left, sign, w, signed=True)
    ol[..., 1].sum().backward()
    assert torch.isfinite(left.grad).all() and torch.isfinite(w.grad).all()


def test_signed_log_values_and_gradient_with_exact_zeros():
    """Closed forms: log|y|, sign y and d log|y| / dy = 1/y, with (-inf, 0) and a zero
    (not NaN) gradient at y = 0; the same values without autograd."""
    y = torch.tensor([-2.5, -1e-300, 0.0, 3.0, 0.0, 7e200], dtype=torch.float64)
    ref_log = torch.tensor([2.5, 1e-300, 1.0, 3.0, 1.0, 7e200], dtype=torch.float64).log()
    ref_log[[2, 4]] = -torch.inf
    ref_sign = torch.tensor([-1.0, -1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        log, sign = signed_log(y)
    torch.testing.assert_close(log, ref_log, rtol=1e-15, atol=0)
    assert torch.equal(sign, ref_sign)
    yg = y.clone().requires_grad_(True)
    log, sign = signed_log(yg)
    torch.testing.assert_close(log, ref_log, rtol=1e-15, atol=0)
    assert torch.equal(sign, ref_sign) and not sign.requires_grad
    upstream = torch.tensor([1.0, 2.0, 3.0, -1.0, 0.0, 0.5], dtype=torch.float64)
    (grad,) = torch.autograd.grad(log, yg, upstream)
    ref_grad = torch.where(y == 0, 0.0, upstream / y)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-15, atol=0)
    assert torch.isfinite(grad).all()
    # away from zero the gradient and its derivative agree with finite differences
    away = torch.tensor([-2.0, 0.3, 5.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: signed_log(t)[0], (away,))
    assert torch.autograd.gradgradcheck(lambda t: signed_log(t)[0], (away,))
