"""The exact noise model of a zero-mean Gaussian data law, for testing the diffusion
without a network: with ``y ~ N(0, S)`` and ``y_t = sqrt(a) y + s e`` (``a = abar_t``,
``s^2 = 1 - a``), ``E[e | y_t] = s (a S + s^2 I)^{-1} y_t``."""

import numpy as np
import torch


def se_covariance(x, lengthscale=0.25, variance=1.0, noise=0.05):
    """``(n, n)`` SE kernel plus noise variance at ``x (n, 1)``, float64 (NumPy)."""
    x = np.asarray(x, dtype=np.float64)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return variance * np.exp(-0.5 * d2 / lengthscale**2) + noise**2 * np.eye(len(x))


class GaussianOracle:
    """``eps_fn(x, y_t, t, mask)`` for data ``y ~ N(0, cov)``; ``cov (n, n)`` or
    ``(b, n, n)``; the rows of ``y_t`` follow ``cov``'s order."""

    def __init__(self, cov, schedule):
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        self.schedule = schedule
        self.calls = 0

    def __call__(self, x, y, t, mask):
        self.calls += 1
        rho = self.schedule.log_snr_at(t.to(torch.float64))
        a = torch.sigmoid(rho)[:, None, None]
        s2 = 1 - a
        eye = torch.eye(self.cov.shape[-1], dtype=torch.float64)
        m = a * self.cov + s2 * eye
        sol = torch.linalg.solve(m, y.to(torch.float64))
        return (s2.sqrt() * sol).to(y.dtype)
