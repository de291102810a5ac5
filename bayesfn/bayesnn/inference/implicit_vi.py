"""Implicit variational inference with a linearised neural sampler, LIVI
(Uppal, Stensbo-Smidt, Boomsma & Frellsen, NeurIPS 2023).

The posterior over all ``d`` network weights is ``q_γ(θ) = ∫ N(θ; g_γ(z), σ²I) N(z; 0, I)
dz`` for a generator ``g_γ`` of low-dimensional noise ``z`` (``d₀ ≪ d``;
:mod:`~bayesfn.bayesnn.inference.samplers`). Training maximises

``L(γ) = E_{z,ε}[log p(D | θ) + log p(θ)] + H_lin(γ)``

where ``H_lin`` is the entropy of ``q`` with ``g`` linearised around each ``z``
(:mod:`~bayesfn.bayesnn.inference.linearised_entropy`): exact for small networks, the
paper's ``s_min`` lower bound for large ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bayesfn.bayesnn.inference.base import BNNTarget, Inference
from bayesfn.bayesnn.inference.linearised_entropy import (
    entropy_constant,
    exact_half_logdet,
    half_logdet_lower_bound,
)
from bayesfn.bayesnn.inference.samplers import MatrixSampler, MLPSampler, blocks_for
from bayesfn.training import optimize

__all__ = ["ImplicitVI"]

_GENERATORS = ("auto", "mlp", "matrix")
_ENTROPIES = ("auto", "exact", "bound")
_WEIGHTINGS = ("elbo", "official")
# "auto" entropy is exact while the Jacobians (K, rows, d0) and the Gram matrices
# (K, d0, d0) stay below this many entries
_EXACT_LIMIT = 2**24
# "auto" generator is the MLP up to this many weights
_MLP_LIMIT = 5000


def _positive_int(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _positive(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")


class ImplicitVI(Inference):
    """LIVI: a neural sampler trained on the ELBO with the linearised entropy.

    Args:
        generator: ``"mlp"`` (:class:`~bayesfn.bayesnn.inference.samplers.MLPSampler`),
            ``"matrix"`` (:class:`~bayesfn.bayesnn.inference.samplers.MatrixSampler`,
            one head per parameter tensor of the BNN) or ``"auto"`` (MLP up to 5,000
            weights).
        noise_dim: ``d₀`` of the MLP generator (default ``min(d, 64)``).
        noise_shape: ``(a, b)`` of the matrix generator's noise (default square with
            side ``clip(round(sqrt(d) / 17), 4, 100)``, which gives the official 40×40
            at MNIST-MLP size and 95×95 at WRN-16-4 size).
        hidden: the MLP generator's hidden widths (default ``(min(d, 512),)``), or the
            matrix generator's trunk shape ``(h₁, h₂)`` (default ``(64, 64)``).
        num_hidden: trunk layers of the matrix generator.
        activation: the generator's activation.
        output_noise: ``σ`` of ``θ = g(z) + σε`` (official: 1e-3 CIFAR, 3e-3 toy).
        entropy: ``"exact"`` (Cholesky of ``JᵀJ + σ²I``), ``"bound"`` (the ``s_min``
            bound) or ``"auto"`` (exact while ``K (rows + d₀) d₀ ≤ 2²⁴``, with ``rows``
            the Jacobian's: ``d`` for the MLP generator, the trunk's ``h₁ h₂`` for the
            matrix generator, whose linear heads enter through their Gram matrices; see
            :meth:`~bayesfn.bayesnn.inference.samplers.MatrixSampler.metric`).
        solver_iters: iterations of the ``s_min`` solver per step (official: 5).
        warm_start: start the solver from the previous step's singular vectors (kept in
            the checkpointed state) rather than at random as the official code does.
        num_samples: ``K`` weight samples per step (official: 10).
        max_steps: optimisation steps.
        lr: Adam's learning rate, annealed by a cosine to ``lr * 1e-3`` when
            ``cosine=True``.
        cosine: the cosine schedule.
        batch_size: minibatch size (``None``: full batch). Minibatch log likelihoods are
            scaled by ``n / |B|`` (:meth:`BNNTarget.log_joint`).
        grad_clip: global gradient-norm clipping (``None``: off); the entropy's gradient
            can explode while ``J`` is nearly rank deficient.
        weighting: ``"elbo"`` (default): the exact ELBO. ``"official"``: the official
            code's weights, for comparison: with ``m`` the batch size and ``n`` the data
            size, classification multiplies the entropy by ``n/m`` and the log prior by
            ``8.5e-4 n/m`` (``c_H = 1/m``, ``c_p = 8.5e-4/m`` of a per-datapoint loss);
            regression multiplies the log prior by 0.1 and keeps the entropy
            (``full_batch_reparam_elbo_nll``). Not the ELBO (a tempered objective).
        init_spread: initial standard deviation of the samples around their centre,
            which is the network's default initialisation (``W ~ N(0, 1)``, ``b = 0``).
        predict_samples: weight draws per :meth:`draws` call by default.

    The likelihood's own parameters (a learned noise level) are point estimates,
    optimised jointly with their log prior, as in the official toy notebook; every draw
    carries the same value.
    """

    def __init__(
        self,
        generator: str = "auto",
        noise_dim: int | None = None,
        noise_shape: list[int] | None = None,
        hidden: list[int] | None = None,
        num_hidden: int = 1,
        activation: str = "elu",
        output_noise: float = 1e-3,
        entropy: str = "auto",
        solver_iters: int = 5,
        warm_start: bool = True,
        num_samples: int = 10,
        max_steps: int = 3000,
        lr: float = 1e-3,
        cosine: bool = True,
        batch_size: int | None = None,
        grad_clip: float | None = 100.0,
        weighting: str = "elbo",
        init_spread: float = 0.1,
        predict_samples: int = 100,
    ) -> None:
        if generator not in _GENERATORS:
            raise ValueError(f"generator must be one of {_GENERATORS}; got {generator!r}")
        if entropy not in _ENTROPIES:
            raise ValueError(f"entropy must be one of {_ENTROPIES}; got {entropy!r}")
        if weighting not in _WEIGHTINGS:
            raise ValueError(f"weighting must be one of {_WEIGHTINGS}; got {weighting!r}")
        _positive_int(noise_dim, "noise_dim", allow_none=True)
        if noise_shape is not None:
            noise_shape = list(noise_shape)
            if len(noise_shape) != 2:
                raise ValueError(f"noise_shape must be (a, b); got {noise_shape!r}")
            for v in noise_shape:
                _positive_int(v, "noise_shape entries")
        if hidden is not None:
            hidden = list(hidden)
            for v in hidden:
                _positive_int(v, "hidden entries")
        _positive_int(num_hidden, "num_hidden")
        if activation not in ("elu", "tanh", "relu", "gelu"):
            raise ValueError(
                f"activation must be 'elu', 'tanh', 'relu' or 'gelu'; got {activation!r}"
            )
        _positive(output_noise, "output_noise")
        _positive_int(solver_iters, "solver_iters")
        _positive_int(num_samples, "num_samples")
        if not (isinstance(max_steps, int) and max_steps >= 0):
            raise ValueError(f"max_steps must be a non-negative integer; got {max_steps!r}")
        _positive(lr, "lr")
        _positive_int(batch_size, "batch_size", allow_none=True)
        _positive(grad_clip, "grad_clip", allow_none=True)
        _positive(init_spread, "init_spread")
        _positive_int(predict_samples, "predict_samples")
        self.generator = generator
        self.noise_dim = noise_dim
        self.noise_shape = noise_shape
        self.hidden = hidden
        self.num_hidden = num_hidden
        self.activation = activation
        self.output_noise = float(output_noise)
        self.entropy = entropy
        self.solver_iters = solver_iters
        self.warm_start = bool(warm_start)
        self.num_samples = num_samples
        self.max_steps = max_steps
        self.lr = float(lr)
        self.cosine = bool(cosine)
        self.batch_size = batch_size
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.weighting = weighting
        self.init_spread = float(init_spread)
        self.predict_samples = predict_samples

    # ------------------------------------------------------------ the sampler
    def layout(self, target: BNNTarget) -> dict[str, Any]:
        """The generator's resolved architecture for ``target`` (JSON-able)."""
        d = target.num_weights
        kind = self.generator
        if kind == "auto":
            kind = "mlp" if d <= _MLP_LIMIT else "matrix"
        if kind == "mlp":
            if self.noise_shape is not None:
                raise ValueError("noise_shape is for generator='matrix'; use noise_dim")
            d0 = self.noise_dim if self.noise_dim is not None else min(d, 64)
            hidden = self.hidden if self.hidden is not None else [min(d, 512)]
            return {"kind": "mlp", "noise_dim": d0, "hidden": hidden}
        if self.noise_dim is not None:
            raise ValueError("noise_dim is for generator='mlp'; use noise_shape=(a, b)")
        if self.noise_shape is not None:
            shape = list(self.noise_shape)
        else:
            side = min(100, max(4, round(math.sqrt(d) / 17)))
            shape = [side, side]
        hidden = self.hidden if self.hidden is not None else [64, 64]
        if len(hidden) != 2:
            raise ValueError(f"hidden of the matrix generator must be (h1, h2); got {hidden}")
        return {"kind": "matrix", "noise_shape": shape, "hidden": hidden}

    def build_sampler(
        self, target: BNNTarget, layout: dict[str, Any], center: torch.Tensor | None = None
    ) -> MLPSampler | MatrixSampler:
        """The generator for ``target`` (``center``: the ``(d,)`` starting weights)."""
        d = target.num_weights
        if layout["kind"] == "mlp":
            sampler = MLPSampler(
                layout["noise_dim"],
                d,
                layout["hidden"],
                self.activation,
                center=center,
                init_spread=self.init_spread,
            )
        else:
            sampler = MatrixSampler(
                layout["noise_shape"],
                blocks_for(list(target.shapes.values())),
                layout["hidden"],
                self.num_hidden,
                self.activation,
                center=center,
                init_spread=self.init_spread,
            )
        return sampler.to(dtype=target.dtype, device=target.device)

    def _entropy_mode(self, target: BNNTarget, sampler: MLPSampler | MatrixSampler) -> str:
        d, noise_dim = target.num_weights, sampler.noise_dim
        mode = self.entropy
        if mode == "auto":
            # the Jacobian in memory: of the weights (MLP), of the trunk's features (matrix)
            rows = math.prod(sampler.trunk[-1].bias.shape) if hasattr(sampler, "trunk") else d
            cost = self.num_samples * rows * noise_dim + self.num_samples * noise_dim**2
            mode = "exact" if cost <= _EXACT_LIMIT else "bound"
        if mode == "bound" and noise_dim > d:
            raise ValueError(
                f"entropy='bound' needs noise_dim <= the number of weights ({d}); the "
                f"generator's noise has {noise_dim} dimensions"
            )
        return mode

    @staticmethod
    def _unflatten(target: BNNTarget, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(K, d)`` -> ``{name: (K, *shape)}`` in the module's parameter order."""
        out, start = {}, 0
        for name, shape in target.shapes.items():
            size = math.prod(shape)
            out[name] = flat[:, start : start + size].reshape(flat.shape[0], *shape)
            start += size
        return out

    def _weights(self, target: BNNTarget) -> tuple[float, float]:
        """``(entropy weight, prior weight)`` multiplying ``H`` and ``log p(w)``."""
        if self.weighting == "elbo":
            return 1.0, 1.0
        if target.likelihood.task == "regression":
            return 1.0, 0.1
        m = target.batch_size(self.batch_size) or target.num_data
        ratio = target.num_data / m
        return ratio, 8.5e-4 * ratio

    # ------------------------------------------------------------ fitting
    def run(
        self,
        target: BNNTarget,
        *,
        seed=None,
        progress_bar=True,
        callbacks=(),
        checkpoint_dir=None,
        max_steps: int | None = None,
        **options: Any,
    ):
        self._check_options(options)
        layout = self.layout(target)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        start = target.init_params(1, generator=generator, how="default")
        weights, extra = target.split(start)
        center = torch.cat([w.reshape(-1) for w in weights.values()])
        sampler = self.build_sampler(target, layout, center)
        noise_dim = sampler.noise_dim
        mode = self._entropy_mode(target, sampler)
        d, sigma, k = target.num_weights, self.output_noise, self.num_samples

        holder = nn.Module()
        holder.sampler = sampler
        holder.extra = nn.ParameterDict(
            {n.replace(".", "__"): nn.Parameter(v[0]) for n, v in extra.items()}
        )
        holder.register_buffer(
            "warm",
            torch.randn(k, noise_dim, generator=generator).to(
                device=target.device, dtype=target.dtype
            ),
        )
        w_entropy, w_prior = self._weights(target)
        const = entropy_constant(d, noise_dim, sigma)

        def extras(num: int) -> dict[str, torch.Tensor]:
            return {n.replace("__", "."): v.expand(num, *v.shape) for n, v in holder.extra.items()}

        # the matrix sampler's heads are linear: products with J go through its features
        structured = isinstance(sampler, MatrixSampler)
        fn = sampler.features if structured else sampler
        metric = sampler.metric if structured else None

        def loss(batch):
            batch = batch if batch else None
            z = sampler.sample_noise(k)
            if mode == "exact":
                out, half = exact_half_logdet(fn, z, sigma, metric)
            else:
                v0 = holder.warm if self.warm_start else None
                out, half, v = half_logdet_lower_bound(
                    fn, z, sigma, num_iters=self.solver_iters, v0=v0, metric=metric
                )
                holder.warm.copy_(v)
            g = sampler.weights_from(out) if structured else out
            theta = g + sigma * torch.randn_like(g)
            params = {**self._unflatten(target, theta), **extras(k)}
            log_lik = target.log_likelihood(params, batch)
            w, e = target.split(params)
            log_prior = target.prior.log_prob(w) + target.likelihood.log_prior(e)
            elbo = (log_lik + w_prior * log_prior).mean() + w_entropy * (const + half.mean())
            return -elbo / target.num_data

        steps = self.max_steps if max_steps is None else max_steps
        scheduler = None
        if self.cosine and steps > 0:
            eta_min = self.lr * 1e-3

            def scheduler(opt):
                return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min)

        batch_size = target.batch_size(self.batch_size)

        def explain(batch, value):
            raise FloatingPointError(
                f"LIVI: the loss became {float(value)}; with entropy={mode!r} and "
                f"output_noise={sigma} the Jacobian may be near rank deficient: lower lr=, "
                "raise output_noise= or set grad_clip="
            )

        result = optimize(
            holder,
            loss,
            data=(target.x, target.y),
            batch_size=batch_size,
            max_steps=steps,
            lr=self.lr,
            scheduler=scheduler,
            grad_clip=self.grad_clip,
            seed=seed,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            progress_bar=progress_bar,
            desc="LIVI",
            on_nonfinite=explain,
        )
        result.diagnostics.update(
            {
                "entropy": mode,
                "generator": layout["kind"],
                "noise_dim": noise_dim,
                "num_weights": d,
                "generator_parameters": sampler.num_parameters(),
                "entropy_weight": w_entropy,
                "prior_weight": w_prior,
            }
        )
        state = {
            "layout": layout,
            "sampler": {n: t.detach().clone() for n, t in sampler.state_dict().items()},
            "extra": {n.replace("__", "."): v.detach().clone() for n, v in holder.extra.items()},
        }
        return state, result

    def draws(self, target, state, num_samples=None, *, generator=None):
        """``num_samples`` (default ``predict_samples``) fresh draws ``(1, S, *shape)``
        of ``θ = g(z) + σε``; likelihood parameters repeat their point estimate."""
        num = self.predict_samples if num_samples is None else num_samples
        _positive_int(num, "num_samples")
        sampler = self.build_sampler(target, state["layout"])
        sampler.load_state_dict(state["sampler"])
        with torch.no_grad():
            z = torch.randn(num, sampler.noise_dim, generator=generator, dtype=target.dtype).to(
                target.device
            )
            g = sampler(z)
            eps = torch.randn(g.shape, generator=generator, dtype=g.dtype).to(g.device)
            theta = g + self.output_noise * eps
        out = self._unflatten(target, theta)
        for name, value in state["extra"].items():
            out[name] = value.to(target.device).expand(num, *value.shape)
        return {n: v.unsqueeze(0) for n, v in out.items()}
