"""Neural operators of operator flow matching: shapes, resolution independence,
permutation equivariance."""

import pytest
import torch

from bayesfn.processes.ofm.operator import AttentionOperator, FourierNeuralOperator, build_operator


@pytest.mark.parametrize(("dim", "grid"), [(1, (40,)), (2, (12, 10))])
def test_fno_shapes_with_channels(dim, grid):
    op = FourierNeuralOperator(dim, 3, width=8, modes=4, depth=2)
    u = torch.randn(5, *grid, 3)
    out = op(torch.rand(5), u)
    assert out.shape == u.shape and torch.isfinite(out).all()


def test_fno_is_resolution_independent_on_band_limited_input():
    """A band-limited field sampled on a coarse and a fine grid: the FNO's outputs agree
    at the shared points (pointwise maps and a truncated spectrum commute with
    refinement), up to the aliasing of the nonlinearities."""
    torch.manual_seed(0)
    op = FourierNeuralOperator(1, 1, width=16, modes=4, depth=3).double()
    coarse, fine = 33, 129  # fine points 0, 4, 8, ... coincide with the coarse grid

    def field(n):
        s = torch.linspace(0, 1, n, dtype=torch.float64)
        return (torch.sin(2 * torch.pi * s) + 0.5 * torch.cos(4 * torch.pi * s))[None, :, None]

    t = torch.tensor([0.3], dtype=torch.float64)
    out_c = op(t, field(coarse))[0, :, 0]
    out_f = op(t, field(fine))[0, ::4, 0]
    rel = (out_c - out_f).norm() / out_f.norm()
    assert rel < 0.05, rel
    # and the outputs do depend on the input (the test is not vacuous)
    assert (op(t, 2 * field(coarse))[0, :, 0] - out_c).norm() > 0.1 * out_c.norm()


def test_fno_2d_evaluates_on_a_finer_grid():
    op = FourierNeuralOperator(2, 1, width=8, modes=(6, 6), depth=2)
    assert op(torch.rand(2), torch.randn(2, 16, 16, 1)).shape == (2, 16, 16, 1)
    assert op(torch.rand(2), torch.randn(2, 48, 40, 1)).shape == (2, 48, 40, 1)


@pytest.mark.parametrize("dim", [1, 2])
def test_attention_operator_is_permutation_equivariant(dim):
    torch.manual_seed(1)
    op = AttentionOperator(dim, 2, width=16, heads=4, depth=2).double()
    x = torch.rand(23, dim, dtype=torch.float64)
    u = torch.randn(4, 23, 2, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    perm = torch.randperm(23)
    out = op(t, u, x)
    torch.testing.assert_close(op(t, u[:, perm], x[perm]), out[:, perm], rtol=1e-12, atol=1e-12)
    # per-function positions (B, n, d) give the same as shared ones
    torch.testing.assert_close(op(t, u, x.expand(4, 23, dim)), out)
    # it is not a pointwise map: changing one point's value moves the others' outputs
    u2 = u.clone()
    u2[:, 0] += 1.0
    assert (op(t, u2, x)[:, 1:] - out[:, 1:]).abs().max() > 1e-6


def test_operator_bad_inputs():
    with pytest.raises(ValueError, match="dim must be 1 or 2"):
        FourierNeuralOperator(3)
    with pytest.raises(ValueError, match="u must have shape"):
        FourierNeuralOperator(1, 2)(torch.rand(2), torch.randn(2, 10, 1))
    with pytest.raises(ValueError, match="heads"):
        AttentionOperator(1, 1, width=10, heads=4)
    with pytest.raises(ValueError, match="x must have shape"):
        AttentionOperator(1, 1, width=8, heads=2)(
            torch.rand(2), torch.randn(2, 5, 1), torch.rand(4, 1)
        )
    with pytest.raises(ValueError, match="operator must be"):
        build_operator("gno", 1, 1, {})
