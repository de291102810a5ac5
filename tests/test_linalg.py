"""safe_cholesky: exact when it can be, jitter only where needed, a clear error otherwise."""

import pytest
import torch

from bayesfn._linalg import CholeskyError, safe_cholesky


def test_well_conditioned_matrices_get_no_jitter():
    a = torch.randn(3, 5, 5, dtype=torch.float64)
    spd = a @ a.mT + torch.eye(5, dtype=torch.float64)
    assert torch.equal(safe_cholesky(spd), torch.linalg.cholesky(spd))


def test_only_the_singular_batch_element_is_jittered():
    good = torch.eye(3, dtype=torch.float64) * 2
    singular = torch.ones(3, 3, dtype=torch.float64)  # rank one
    factor = safe_cholesky(torch.stack([good, singular]))
    assert torch.equal(factor[0], torch.linalg.cholesky(good))
    rebuilt = factor[1] @ factor[1].T
    assert (rebuilt - singular).abs().max() < 1e-6


def test_requested_jitter_is_always_added():
    eye = torch.eye(4, dtype=torch.float64)
    factor = safe_cholesky(eye, jitter=0.21)  # relative to the mean diagonal, 1
    torch.testing.assert_close(factor @ factor.T, 1.21 * eye)


def test_gives_up_with_a_clear_error():
    bad = -torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    with pytest.raises(CholeskyError, match=r"2 matrix.* not positive-definite"):
        safe_cholesky(bad, name="K")
    with pytest.raises(ValueError, match="square"):
        safe_cholesky(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        safe_cholesky(torch.full((2, 2), float("nan")))


def test_gaussian_log_likelihood_matches_scipy_and_gradcheck():
    from scipy import stats

    from bayesfn._linalg import gaussian_log_likelihood

    a = torch.randn(3, 6, 6, dtype=torch.float64)
    cov = (a @ a.mT + torch.eye(6, dtype=torch.float64)).requires_grad_()
    resid = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    value = gaussian_log_likelihood(cov, resid)
    for i in range(3):
        expected = stats.multivariate_normal(cov=cov[i].detach().numpy()).logpdf(
            resid[i].detach().numpy()
        )
        assert abs(value[i].item() - expected) < 1e-10

    def symmetric(c, r):  # perturbations must stay symmetric for a covariance
        return gaussian_log_likelihood((c + c.mT) / 2, r)

    assert torch.autograd.gradcheck(symmetric, (cov, resid))
