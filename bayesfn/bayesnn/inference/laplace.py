"""Last-layer Laplace approximation (MacKay 1992; Daxberger et al., "Laplace Redux",
NeurIPS 2021).

A MAP fit of the whole network, then a Gaussian over the last layer's weights and bias
``θ_L`` with every other parameter kept at its MAP value:

``q(θ_L) = N(θ̂_L, (G + P)⁻¹)``, ``G = Σ_i J_iᵀ Λ_i J_i``, ``P = −∇² log p(θ_L)`` at θ̂,

where ``J_i = ∂f(x_i)/∂θ_L`` and ``Λ_i = −∂² log p(y_i | f)/∂f²``. The outputs are linear in
``θ_L`` (``f_c = h·W_c / sqrt(n) + b_c`` with the last hidden features ``h``), so the
generalised Gauss-Newton ``G`` is the exact Hessian of the negative log likelihood over
``θ_L``, computed in closed form: ``Λ_i = diag(1/σ²)`` for a Gaussian likelihood (the MAP
noise when it is learned), ``diag(p_i) − p_i p_iᵀ`` for a categorical one. For a
Gaussian likelihood ``q`` is then exactly the Bayesian linear regression posterior on
the MAP features.

The network must end in a ``sqrt(fan_in)``-scaled linear layer named ``layers.<L>``
(:class:`~bayesfn.bayesnn.MLP` and :class:`~bayesfn.bayesnn.CNN` both do). The linear
algebra runs in float64.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bayesfn.bayesnn.inference.base import BNNTarget, Inference, Params
from bayesfn.bayesnn.inference.map import MAP
from bayesfn.bayesnn.likelihoods import CategoricalLikelihood, GaussianLikelihood
from bayesfn.bayesnn.nets import ScaledLinear
from bayesfn.bayesnn.priors import GaussianPrior

__all__ = ["LastLayerLaplace"]


def last_layer_name(target: BNNTarget) -> str:
    """``"layers.<L>"``: the name of the network's last linear layer."""
    layers = getattr(target.module, "layers", None)
    if not layers or not isinstance(layers[-1], ScaledLinear):
        raise TypeError(
            "last-layer Laplace needs a network whose last module is a ScaledLinear in "
            f"module.layers (MLP, CNN); got {type(target.module).__name__}"
        )
    return f"layers.{len(layers) - 1}"


def last_layer_features(
    target: BNNTarget, params: Params, x: torch.Tensor, *, chunk: int = 4096
) -> torch.Tensor:
    """The inputs ``h (n, n_L)`` of the last layer at ``x (n, d)`` under one parameter set
    ``params`` (``(1, *shape)`` each)."""
    name = last_layer_name(target)
    layer = target.module.get_submodule(name)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    weights, _ = target.split(params)
    one = {k: v[0] for k, v in weights.items()}
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                torch.func.functional_call(target.module, one, (x[start : start + chunk],))
    finally:
        handle.remove()
    return torch.cat(captured)


class LastLayerLaplace(Inference):
    """MAP, then a Gaussian over the last layer's weights from the exact curvature.

    Args:
        max_steps, lr, batch_size, init: settings of the MAP fit (see
            :class:`~bayesfn.bayesnn.inference.MAP`).
        prior_precision: the precision of an isotropic Gaussian prior on the last layer
            used in the Laplace step; ``None`` (default) takes the curvature of the
            model's own prior at the MAP (exact for a Gaussian prior, by automatic
            differentiation for others).
        num_draws: weight draws that :meth:`draws` returns by default.

    The fitted state holds the MAP parameters ``{"params": {name: (1, *shape)}}``,
    ``"precision"`` ``(P, P)`` and its Cholesky factor ``"cholesky"`` over
    ``θ_L = [W_1, b_1, ..., W_m, b_m]`` (output by output, the weights' row then the
    bias), ``P = m (n_L + 1)``.
    """

    def __init__(
        self,
        max_steps: int = 2000,
        lr: float = 1e-2,
        batch_size: int | None = None,
        init: str = "default",
        prior_precision: float | None = None,
        num_draws: int = 100,
    ) -> None:
        MAP(max_steps=max_steps, lr=lr, batch_size=batch_size, init=init)  # validates them
        if prior_precision is not None and not (
            isinstance(prior_precision, int | float)
            and math.isfinite(prior_precision)
            and prior_precision > 0
        ):
            raise ValueError(
                f"prior_precision must be a positive finite number or None; got {prior_precision!r}"
            )
        if not (isinstance(num_draws, int) and num_draws >= 1):
            raise ValueError(f"num_draws must be a positive integer; got {num_draws!r}")
        self.max_steps = max_steps
        self.lr = float(lr)
        self.batch_size = batch_size
        self.init = init
        self.prior_precision = None if prior_precision is None else float(prior_precision)
        self.num_draws = num_draws

    # ------------------------------------------------------------ curvature
    def _likelihood_curvature(
        self, target: BNNTarget, params: Params, phi: torch.Tensor
    ) -> torch.Tensor:
        """``G (m (n+1), m (n+1))`` from the design ``phi (N, n+1)`` and ``Λ_i``."""
        m, p = target.num_outputs, phi.shape[1]
        lik = target.likelihood
        if isinstance(lik, GaussianLikelihood):
            _, extra = target.split(params)
            var = lik.noise_variance(extra)
            var = var[0] if torch.is_tensor(var) else torch.full((m,), var)
            inv_var = 1.0 / var.to(torch.float64).reshape(m)
            gram = phi.T @ phi
            g = torch.zeros(m, p, m, p, dtype=torch.float64, device=phi.device)
            for c in range(m):
                g[c, :, c, :] = inv_var[c] * gram
        elif isinstance(lik, CategoricalLikelihood):
            w, b = self._split_last(target, params)
            logits = phi @ torch.cat([w, b[:, None]], 1).T.to(torch.float64)
            prob = torch.softmax(logits, -1)  # (N, m)
            lam = torch.diag_embed(prob) - prob[:, :, None] * prob[:, None, :]
            g = torch.einsum("icd,ij,ik->cjdk", lam, phi, phi)
        else:
            raise TypeError(
                "last-layer Laplace supports GaussianLikelihood and CategoricalLikelihood; "
                f"got {type(lik).__name__}"
            )
        return g.reshape(m * p, m * p)

    def _prior_curvature(self, target: BNNTarget, params: Params) -> torch.Tensor:
        name = last_layer_name(target)
        m, n = target.shapes[f"{name}.weight"]
        size = m * (n + 1)
        if self.prior_precision is not None:
            return self.prior_precision * torch.eye(size, dtype=torch.float64)
        prior = target.prior
        if isinstance(prior, GaussianPrior):
            scales = prior.scales()
            w_prec = (1.0 / scales[f"{name}.weight"].detach() ** 2).expand(m, n)
            b_prec = (1.0 / scales[f"{name}.bias"].detach() ** 2).expand(m)
            diag = torch.cat([w_prec, b_prec[:, None]], 1).reshape(-1).to(torch.float64)
            return torch.diag(diag)
        weights, _ = target.split(params)
        w0, b0 = self._split_last(target, params)
        flat0 = torch.cat([w0, b0[:, None]], 1).reshape(-1).detach()

        def neg_log_prior(flat: torch.Tensor) -> torch.Tensor:
            theta = flat.reshape(m, n + 1)
            p = dict(weights)
            p[f"{name}.weight"], p[f"{name}.bias"] = theta[None, :, :n], theta[None, :, n]
            return -prior.log_prob(p)[0]

        return torch.func.hessian(neg_log_prior)(flat0).to(torch.float64)

    @staticmethod
    def _split_last(target: BNNTarget, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        name = last_layer_name(target)
        return params[f"{name}.weight"][0], params[f"{name}.bias"][0]

    def laplace_precision(self, target: BNNTarget, params: Params) -> torch.Tensor:
        """``G + P``, ``(m (n_L + 1), m (n_L + 1))`` float64, at the MAP ``params``."""
        h = last_layer_features(target, params, target.x).to(torch.float64)
        scale = 1.0 / math.sqrt(h.shape[1])
        phi = torch.cat([h * scale, torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)], 1)
        g = self._likelihood_curvature(target, params, phi)
        return g + self._prior_curvature(target, params).to(g.device)

    # ------------------------------------------------------------ interface
    def run(self, target: BNNTarget, *, seed=None, progress_bar=True, callbacks=(), **options: Any):
        last_layer_name(target)  # fail before the MAP fit
        fit = MAP(max_steps=self.max_steps, lr=self.lr, batch_size=self.batch_size, init=self.init)
        state, result = fit.run(
            target, seed=seed, progress_bar=progress_bar, callbacks=callbacks, **options
        )
        precision = self.laplace_precision(target, state["params"])
        precision = 0.5 * (precision + precision.T)
        cholesky, info = torch.linalg.cholesky_ex(precision)
        if int(info) != 0:
            raise ValueError(
                "the last-layer Laplace precision is not positive definite (the prior's "
                "curvature at the MAP is indefinite); pass prior_precision= to use a "
                "Gaussian prior in the Laplace step"
            )
        state = {**state, "precision": precision, "cholesky": cholesky}
        return state, result

    def draws(self, target, state, num_samples=None, *, generator=None) -> Params:
        num = self.num_draws if num_samples is None else num_samples
        if not (isinstance(num, int) and num >= 1):
            raise ValueError(f"num_samples must be a positive integer; got {num!r}")
        name = last_layer_name(target)
        params = state["params"]
        w, b = params[f"{name}.weight"][0], params[f"{name}.bias"][0]
        m, n = w.shape
        chol = state["cholesky"]
        z = torch.randn(num, m * (n + 1), generator=generator, dtype=torch.float64)
        # θ = θ̂ + L⁻ᵀ z has covariance (L Lᵀ)⁻¹
        delta = torch.linalg.solve_triangular(chol.T, z.to(chol.device).T, upper=True).T
        delta = delta.reshape(num, m, n + 1).to(w.dtype)
        out = {k: v.expand(num, *v.shape[1:]).unsqueeze(0) for k, v in params.items()}
        out[f"{name}.weight"] = (w + delta[:, :, :n]).unsqueeze(0)
        out[f"{name}.bias"] = (b + delta[:, :, n]).unsqueeze(0)
        return out  # (1, S, *shape)
