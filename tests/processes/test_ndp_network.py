"""Symmetries of the NDP noise model: point-permutation equivariance, input-dimension
permutation invariance, padding invariance, any n and d, zero-initialised head."""

import pytest
import torch

from bayesfn.processes.ndp.network import BiDimensionalAttention, timestep_embedding


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    net = BiDimensionalAttention(hidden=16, num_layers=2, num_heads=4, **kw).double()
    # the head starts at zero (ε̂ = 0); give it weights so that the symmetries are tested
    with torch.no_grad():
        for p in net.head.parameters():
            p.normal_(0, 0.5)
    return net.eval()


def _inputs(b=3, n=7, d=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n, d, generator=g, dtype=torch.float64) * 4 - 2
    y = torch.randn(b, n, 1, generator=g, dtype=torch.float64)
    t = torch.tensor([0.0, 17.0, 99.5], dtype=torch.float64)[:b]
    return x, y, t


def test_zero_initialised_head_predicts_zero():
    torch.manual_seed(0)
    net = BiDimensionalAttention(hidden=16, num_layers=2, num_heads=4).double()
    x, y, t = _inputs()
    assert torch.equal(net(x, y, t), torch.zeros_like(y))
    assert sum(p.numel() for p in net.head[-1].parameters()) == 17
    assert all(torch.all(p == 0) for p in net.head[-1].parameters())


@pytest.mark.parametrize("d", [1, 3])
def test_point_permutation_equivariance(d):
    net = _net()
    x, y, t = _inputs(d=d)
    out = net(x, y, t)
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(5))
    out_perm = net(x[:, perm], y[:, perm], t)
    torch.testing.assert_close(out_perm, out[:, perm], rtol=1e-10, atol=1e-12)
    assert out.abs().max() > 1e-3  # the check above is not vacuous


def test_input_dimension_permutation_invariance():
    net = _net()
    x, y, t = _inputs(d=4)
    out = net(x, y, t)
    for perm in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]):
        torch.testing.assert_close(net(x[..., perm], y, t), out, rtol=1e-10, atol=1e-12)
    # but it does depend on the inputs' values
    assert (net(x * 1.5, y, t) - out).abs().max() > 1e-4


def test_padding_mask_invariance():
    net = _net()
    x, y, t = _inputs(n=6, d=2)
    out = net(x, y, t)
    g = torch.Generator().manual_seed(9)
    pad_x = torch.randn(3, 4, 2, generator=g, dtype=torch.float64) * 10
    pad_y = torch.randn(3, 4, 1, generator=g, dtype=torch.float64) * 10
    # padding interleaved with the real points, at different places per function
    xp, yp = torch.cat([x, pad_x], 1), torch.cat([y, pad_y], 1)
    order = torch.stack([torch.randperm(10, generator=g) for _ in range(3)])
    xp = xp.gather(1, order[..., None].expand(-1, -1, 2))
    yp = yp.gather(1, order[..., None])
    mask = order < 6
    out_padded = net(xp, yp, t, mask)
    for i in range(3):
        real = order[i][mask[i]]
        torch.testing.assert_close(out_padded[i][mask[i]], out[i][real], rtol=1e-10, atol=1e-12)
    # without the mask the padding changes the outputs
    unmasked = net(xp, yp, t)
    assert (unmasked[mask] - out_padded[mask]).abs().max() > 1e-4


def test_a_masked_function_with_fewer_points_equals_the_short_function():
    net = _net()
    x, y, t = _inputs(b=2, n=9, d=1)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 4:] = False
    out = net(x, y, t[:2], mask)
    short = net(x[1:, :4], y[1:, :4], t[1:2])
    torch.testing.assert_close(out[1, :4], short[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("n", "d"), [(1, 1), (2, 5), (33, 2), (5, 1)])
def test_any_number_of_points_and_dimensions(n, d):
    net = _net()
    x, y, t = _inputs(b=2, n=n, d=d)
    out = net(x, y, t)
    assert out.shape == (2, n, 1)
    assert torch.isfinite(out).all()


def test_time_embedding_depends_on_time_and_is_bounded():
    t = torch.tensor([0.0, 1.0, 2.5, 499.0], dtype=torch.float64)
    emb = timestep_embedding(t, 9)
    assert emb.shape == (4, 9)
    assert torch.all(emb.abs() <= 1) and torch.all(emb[:, -1] == 0)
    # sin(0) = 0 and cos(0) = 1 at t = 0
    torch.testing.assert_close(emb[0, :4], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(emb[0, 4:8], torch.ones(4, dtype=torch.float64))
    assert (emb[1] - emb[2]).abs().max() > 0.1
    net = _net()
    x, y, _ = _inputs(b=2)
    a = net(x, y, torch.tensor([3.0, 3.0], dtype=torch.float64))
    b = net(x, y, torch.tensor([60.0, 60.0], dtype=torch.float64))
    assert (a - b).abs().max() > 1e-4


def test_bad_settings():
    with pytest.raises(ValueError, match="num_heads"):
        BiDimensionalAttention(hidden=10, num_heads=3)
    with pytest.raises(ValueError, match="hidden"):
        BiDimensionalAttention(hidden=0)
