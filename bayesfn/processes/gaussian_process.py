"""Exact Gaussian-process regression: the gold-standard baseline of the package.

Hyperparameters are fitted by maximising GPyTorch's exact marginal likelihood with
the shared training loop; predictions use the textbook Cholesky formulas
(Rasmussen & Williams, Alg. 2.1) in float64, batched over test sets and outputs.
"""

from __future__ import annotations

from typing import Any

import gpytorch
import torch

from bayesfn._linalg import gaussian_log_likelihood, safe_cholesky
from bayesfn.covariance import build_kernel
from bayesfn.model import (
    Model,
    check_inputs,
    check_targets,
    resolve_device,
    resolve_dtype,
)
from bayesfn.posterior import GaussianPosterior
from bayesfn.training import FitResult, optimize

__all__ = ["GaussianProcess"]


class _ExactGPModule(gpytorch.models.ExactGP):
    """``m`` independent GPs with their own hyperparameters, as one batched module."""

    def __init__(self, x, y, likelihood, kernel: str, mean: str):
        super().__init__(x, y, likelihood)
        batch = torch.Size([y.shape[0]])
        if mean == "constant":
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
        else:
            self.mean_module = gpytorch.means.ZeroMean(batch_shape=batch)
        self.covar_module = build_kernel(kernel, x.shape[-1], batch)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class GaussianProcess(Model):
    """Exact GP regression with marginal-likelihood hyperparameters.

    Args:
        kernel: kernel formula, e.g. ``"rbf"``, ``"matern52"``, ``"rbf*periodic+linear"``
            (see :func:`bayesfn.covariance.build_kernel`).
        mean: ``"constant"`` (learned) or ``"zero"``.
        noise: fixed observation-noise variance, or ``None`` to learn it.
        dtype: float64 by default (GP algebra decides correctness).
        device: where fitting and prediction run.

    With ``y`` of shape ``(n, m)``, the ``m`` outputs are independent GPs, each with its
    own hyperparameters; ``posterior(x)`` is then jointly Gaussian over ``(n*, m)``.

    Example:
        >>> gp = GaussianProcess(kernel="rbf").fit(x, y, progress_bar=False)
        >>> post = gp.posterior(x_test, observation_noise=True)
        >>> lower, upper = post.interval(0.95)
    """

    def __init__(
        self,
        kernel: str = "rbf",
        *,
        mean: str = "constant",
        noise: float | None = None,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if mean not in ("constant", "zero"):
            raise ValueError(f"mean must be 'constant' or 'zero'; got {mean!r}")
        if noise is not None and not noise > 0:
            raise ValueError(f"noise must be a positive variance or None; got {noise!r}")
        build_kernel(kernel, 1)  # fail on a bad formula now, not at fit time
        self.kernel = kernel
        self.mean = mean
        self.noise = noise
        self.dtype = resolve_dtype(dtype, torch.float64)
        self.device = resolve_device(device)

    # ------------------------------------------------------------------ fit
    def _build(self, x: torch.Tensor, y: torch.Tensor) -> None:
        m = y.shape[1]
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            batch_shape=torch.Size([m]),
            noise_constraint=gpytorch.constraints.GreaterThan(1e-6),
        )
        gp = _ExactGPModule(x, y.T.contiguous(), likelihood, self.kernel, self.mean)
        self.module_ = gp.to(device=self.device, dtype=self.dtype)
        self.train_x_, self.train_y_ = x, y
        self._cache = None

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        max_steps: int = 300,
        lr: float = 0.05,
        seed: int | None = 0,
        callbacks=(),
        progress_bar: bool = True,
        checkpoint_dir=None,
    ) -> GaussianProcess:
        """Fit hyperparameters by maximising the exact log marginal likelihood with Adam.

        Args:
            x: ``(n, d)`` inputs (tensor or array).
            y: ``(n,)`` or ``(n, m)`` targets.
            max_steps: Adam steps (0 keeps the initial hyperparameters).
            lr: Adam learning rate.
            seed, callbacks, progress_bar, checkpoint_dir: see
                :func:`bayesfn.training.optimize`.

        Returns:
            ``self``, with ``fit_result_.diagnostics["hyperparameters"]`` filled in.
        """
        x = check_inputs(x, "x", dtype=self.dtype, device=self.device)
        y = check_targets(y, x.shape[0], "y", dtype=self.dtype, device=self.device)
        self._build(x, y)
        gp = self.module_
        with torch.no_grad():
            # data-scaled starting point: signal variance = var(y), noise = 10 % of it
            var_y = y.var(0) if y.shape[0] > 1 else torch.ones(y.shape[1], dtype=self.dtype)
            var_y = var_y.clamp_min(1e-6)
            for k in _scale_kernels(gp.covar_module):
                k.outputscale = var_y / len(_scale_kernels(gp.covar_module))
            if self.mean == "constant":
                gp.mean_module.constant.copy_(y.mean(0).reshape(gp.mean_module.constant.shape))
            gp.likelihood.noise = (
                0.1 * var_y if self.noise is None else torch.full_like(var_y, self.noise)
            ).unsqueeze(-1)
        if self.noise is not None:
            gp.likelihood.raw_noise.requires_grad_(False)

        def loss_fn(_batch):
            # per data point, so that learning rates do not depend on n
            return -self.log_marginal_likelihood() / x.shape[0]

        result = FitResult()
        if max_steps > 0:
            result = optimize(
                gp,
                loss_fn,
                max_steps=max_steps,
                lr=lr,
                seed=seed,
                callbacks=callbacks,
                progress_bar=progress_bar,
                checkpoint_dir=checkpoint_dir,
                desc="GP marginal likelihood",
            )
        gp.eval()
        result.diagnostics["hyperparameters"] = self.hyperparameters()
        with torch.no_grad():
            result.diagnostics["log_marginal_likelihood"] = float(self.log_marginal_likelihood())
        self.fit_result_ = result
        return self

    # ----------------------------------------------------------- prediction
    def _kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.module_.covar_module(a, b).to_dense()

    def _train_cov_and_resid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``K + σ²I`` ``(m, n, n)`` and ``y − μ`` ``(m, n)`` at the training inputs."""
        gp, x = self.module_, self.train_x_
        k = self._kernel(x, x)
        k = k + torch.diag_embed(self._noise().unsqueeze(-1).expand(k.shape[:-1]))
        return k, self.train_y_.T - gp.mean_module(x)

    def _train_quantities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cholesky factor ``(m, n, n)`` of K + σ²I and ``alpha = (K + σ²I)⁻¹(y − μ)``,
        cached for prediction. Always a dense Cholesky: exact at every n."""
        if self._cache is None:
            with torch.no_grad():
                k, resid = self._train_cov_and_resid()
                chol = safe_cholesky(k, name="training covariance K + noise")
                alpha = torch.cholesky_solve(resid.unsqueeze(-1), chol).squeeze(-1)
            self._cache = (chol, alpha)
        return self._cache

    def _noise(self) -> torch.Tensor:
        """``(m,)`` observation-noise variances."""
        return self.module_.likelihood.noise.reshape(-1)

    def posterior(self, x: Any, *, observation_noise: bool = False) -> GaussianPosterior:
        """Predictive at ``x``.

        Args:
            x: ``(n*, d)`` or ``(b, n*, d)`` test inputs.
            observation_noise: include the noise variance (predictive of ``y``) or not
                (posterior of the latent ``f``).

        Returns:
            A :class:`GaussianPosterior` with event ``(n*, m)`` and batch ``()`` or
            ``(b,)``, jointly Gaussian over all points and outputs.
        """
        self._check_fitted()
        x = check_inputs(
            x,
            "x",
            dtype=self.dtype,
            device=self.device,
            num_features=self.train_x_.shape[-1],
            allow_batch=True,
        )
        chol, alpha = self._train_quantities()
        with torch.set_grad_enabled(x.requires_grad):
            xb = x.unsqueeze(-3)  # (..., 1, n*, d) broadcasts against the m outputs
            k_star = self._kernel(xb, self.train_x_)  # (..., m, n*, n)
            mean = self.module_.mean_module(xb) + (k_star @ alpha.unsqueeze(-1)).squeeze(-1)
            v = torch.linalg.solve_triangular(chol, k_star.mT, upper=False)
            cov = self._kernel(xb, xb) - v.mT @ v  # (..., m, n*, n*)
            if observation_noise:
                noise = self._noise().unsqueeze(-1).expand(cov.shape[:-1])
                cov = cov + torch.diag_embed(noise)
        return GaussianPosterior(mean.mT.contiguous(), _interleave_outputs(cov))

    # ---------------------------------------------------------- diagnostics
    def log_marginal_likelihood(self) -> torch.Tensor:
        """Exact log p(y | X, θ) summed over outputs (not divided by n); differentiable
        in the hyperparameters with the closed-form gradient."""
        k, resid = self._train_cov_and_resid()
        return gaussian_log_likelihood(k, resid, name="training covariance K + noise").sum()

    def hyperparameters(self) -> dict[str, Any]:
        """Named hyperparameter values (lists over outputs) for reports."""
        out = {}
        for name, _, constraint in self.module_.named_parameters_and_constraints():
            raw = dict(self.module_.named_parameters())[name]
            value = constraint.transform(raw) if constraint is not None else raw
            out[name.replace("raw_", "")] = value.detach().cpu().squeeze().tolist()
        return out

    # ----------------------------------------------------------- save / load
    def _get_state(self) -> dict[str, Any]:
        return {"x": self.train_x_, "y": self.train_y_, "module": self.module_.state_dict()}

    def _set_state(self, state: dict[str, Any]) -> None:
        x = state["x"].to(device=self.device, dtype=self.dtype)
        y = state["y"].to(device=self.device, dtype=self.dtype)
        self._build(x, y)
        self.module_.load_state_dict(state["module"])
        self.module_.eval()


def _scale_kernels(kernel) -> list:
    if isinstance(kernel, gpytorch.kernels.ScaleKernel):
        return [kernel]
    return [k for k in kernel.kernels] if hasattr(kernel, "kernels") else []


def _interleave_outputs(cov: torch.Tensor) -> torch.Tensor:
    """Block-diagonal ``(..., n·m, n·m)`` covariance, row-major over ``(n, m)``, from
    per-output ``(..., m, n, n)`` blocks (outputs are independent)."""
    m, n = cov.shape[-3], cov.shape[-1]
    if m == 1:
        return cov.squeeze(-3)
    eye = torch.eye(m, dtype=cov.dtype, device=cov.device)
    full = torch.einsum("...jik,jl->...ijkl", cov, eye)
    return full.reshape(cov.shape[:-3] + (n * m, n * m))
