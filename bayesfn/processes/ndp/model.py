"""``NeuralDiffusionProcess``: a diffusion model over function values that learns a
distribution over functions from samples of it (Dutordoir et al., ICML 2023).

``fit(functions)`` trains the bi-dimensional attention noise model with the NDP recipe
(ε-prediction, L1 loss, stratified levels, Adam with global-norm clipping, linear warm-up
then cosine decay, an exponential moving average of the weights used for sampling);
``posterior(x, context=(x_c, y_c))`` draws function values by RePaint (no context:
ancestral sampling from the learned prior); ``log_prob`` scores target values given a
context by the probability-flow ODE (exact) or by the paper's moment-matched Gaussian.

The model learns the law of the values it is trained on, so with noisy training functions
(the NDP benchmark adds N(0, 0.05²) noise) its samples and densities are of noisy values
``y``, not of a latent ``f``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch

from bayesfn.data.tasks import as_function_set
from bayesfn.model import Model, check_inputs, check_targets, resolve_device, resolve_dtype
from bayesfn.posterior import SamplePosterior
from bayesfn.processes.ndp.diffusion import (
    Schedule,
    ancestral_sample,
    diffusion_loss,
    moment_matched_log_prob,
    ode_log_prob,
    repaint_sample,
    smc_sample,
)
from bayesfn.processes.ndp.network import BiDimensionalAttention
from bayesfn.training import optimize

__all__ = ["NeuralDiffusionProcess"]


class _Trainer(torch.nn.Module):
    """The trained network and its exponential moving average (frozen parameters), one
    module so that checkpoints carry both."""

    def __init__(self, net: BiDimensionalAttention) -> None:
        super().__init__()
        self.net = net
        self.ema = copy.deepcopy(net)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        # warm-up of the decay, (1 + k) / (10 + k), so that short fits are not
        # dominated by the initial weights
        k = int(self.ema_updates)
        rate = min(decay, (1 + k) / (10 + k))
        for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            e.lerp_(p, 1 - rate)
        self.ema_updates += 1


def _warmup_cosine(
    steps: int, warmup: int, lr: float, lr_start: float, lr_end: float
) -> Callable[[int], float]:
    """Multiplier of ``lr`` at each step: linear from ``lr_start`` to ``lr`` over
    ``warmup`` steps, then cosine decay to ``lr_end`` at ``steps``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (lr_start + (lr - lr_start) * step / warmup) / lr
        span = max(steps - warmup, 1)
        progress = min((step - warmup) / span, 1.0)
        return (lr_end + 0.5 * (lr - lr_end) * (1 + math.cos(math.pi * progress))) / lr

    return factor


class NeuralDiffusionProcess(Model):
    """Neural diffusion process: a learned prior over functions with conditional sampling
    and likelihoods.

    Args:
        hidden: channels of the noise model (paper 64; 32 is a good CPU size).
        num_layers: attention blocks (paper 4).
        num_heads: attention heads (paper 8); ``2 * hidden`` must be divisible by it.
        num_steps: diffusion levels ``T`` (paper 500).
        beta_start: range of the rescaled cosine betas (paper 3e-4, 0.5).
        beta_end: as ``beta_start`` (described together above).
        loss_type: ``"l1"`` (paper) or ``"l2"``.
        num_inner_steps: RePaint resampling steps ``U`` per level (paper 5).
        ema_decay: decay of the weight average used for sampling (paper 0.995).
        dtype: of training and sampling (float32 default); ODE likelihoods run in float64.
        device: where the network lives.

    Example:
        >>> from bayesfn.data import FunctionSampler
        >>> data = FunctionSampler("se", 32, (50, 59), lengthscale=0.25, noise_std=0.05)
        >>> ndp = NeuralDiffusionProcess(hidden=32, num_layers=2, num_heads=4,
        ...                              num_steps=100).fit(data, max_steps=5000)
        >>> post = ndp.posterior(x_test, context=(x_c, y_c))   # event (n, 1)
        >>> ll = ndp.log_prob(x_test, y_test, context=(x_c, y_c))  # exact, by the ODE
    """

    def __init__(
        self,
        *,
        hidden: int = 64,
        num_layers: int = 4,
        num_heads: int = 8,
        num_steps: int = 500,
        beta_start: float = 3e-4,
        beta_end: float = 0.5,
        loss_type: str = "l1",
        num_inner_steps: int = 5,
        ema_decay: float = 0.995,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2'; got {loss_type!r}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1); got {ema_decay!r}")
        if isinstance(num_inner_steps, bool) or not isinstance(num_inner_steps, int):
            raise TypeError(f"num_inner_steps must be an int; got {num_inner_steps!r}")
        if num_inner_steps < 0:
            raise ValueError(f"num_inner_steps must be >= 0; got {num_inner_steps}")
        BiDimensionalAttention(hidden, num_layers, num_heads)  # validate now
        Schedule(num_steps, beta_start, beta_end)
        self.hidden = hidden
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.num_steps = num_steps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.loss_type = loss_type
        self.num_inner_steps = num_inner_steps
        self.ema_decay = ema_decay
        self.dtype = resolve_dtype(dtype, torch.float32)
        self.device = resolve_device(device)

    # ------------------------------------------------------------------ build
    def _build(self, input_dim: int, output_dim: int) -> None:
        net = BiDimensionalAttention(self.hidden, self.num_layers, self.num_heads, output_dim)
        self.trainer_ = _Trainer(net).to(device=self.device, dtype=self.dtype)
        self.schedule_ = Schedule(self.num_steps, self.beta_start, self.beta_end)
        self.input_dim_ = input_dim
        self.output_dim_ = output_dim

    def _eps_fn(self, net: torch.nn.Module):
        def eps(x, y, t, mask):
            return net(x, y, t.to(x.dtype), mask)

        return eps

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        functions: Any,
        *,
        max_steps: int = 2000,
        batch_size: int = 32,
        lr: float = 1e-3,
        lr_start: float = 2e-5,
        lr_end: float = 1e-5,
        warmup_steps: int | None = None,
        grad_clip: float | None = 1.0,
        seed: int | None = 0,
        callbacks=(),
        progress_bar: bool = True,
        checkpoint_dir=None,
    ) -> NeuralDiffusionProcess:
        """Train the noise model on samples of a distribution over functions.

        Args:
            functions: a :class:`~bayesfn.data.FunctionBatch`, a
                :class:`~bayesfn.data.FunctionSet`, an ``(x, y)`` pair of ``(b, n, d)`` /
                ``(b, n, m)`` tensors, a sequence of ``(x_i, y_i)`` sets of varying size
                (padded and masked), or a sampler: a callable that returns one of these
                (a fresh training batch) each time it is called with no argument, e.g.
                :class:`~bayesfn.data.FunctionSampler`; it draws from torch's global
                generator, which ``seed`` fixes.
            max_steps: optimisation steps (paper 128,000).
            batch_size: functions per step for stored data (paper 32); a sampler sets
                its own.
            lr: peak learning rate (paper 1e-3); lr_start / lr_end: at the start of the
                warm-up / at the end of the cosine decay (paper 2e-5 / 1e-5).
            warmup_steps: linear warm-up length (default 8 % of ``max_steps``, the
                paper's 20 of 250 epochs).
            grad_clip: global gradient-norm clip (paper 1.0).
            seed: see
                :func:`bayesfn.training.optimize`.
            callbacks: as ``seed`` (described together above).
            progress_bar: as ``seed`` (described together above).
            checkpoint_dir: as ``seed`` (described together above).

        Returns:
            ``self``; ``fit_result_`` holds the losses.
        """
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int; got {max_steps!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        sampler = None
        # the initial weights (and a sampler's probe batch) come from the seed too,
        # without touching the caller's global generator
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            if callable(functions) and not isinstance(functions, torch.Tensor):
                sampler = functions
                probe = as_function_set(
                    functions(), dtype=self.dtype, device=self.device, name="sampler output"
                )
            else:
                probe = as_function_set(
                    functions, dtype=self.dtype, device=self.device, name="functions"
                )
            self._build(probe.input_dim, probe.output_dim)
        trainer, schedule = self.trainer_, self.schedule_
        eps = self._eps_fn(trainer.net)

        def loss_on(x, y, mask):
            return diffusion_loss(eps, schedule, x, y, mask, loss_type=self.loss_type)

        if sampler is None:
            data = (probe.x, probe.y, probe.mask)
            batch_size = min(batch_size, len(probe))

            def loss_fn(batch):
                return loss_on(*batch)
        else:
            data, batch_size = None, None
            dim, out = probe.input_dim, probe.output_dim

            def loss_fn(_batch):
                fs = as_function_set(
                    sampler(), dtype=self.dtype, device=self.device, name="sampler output"
                )
                if fs.input_dim != dim or fs.output_dim != out:
                    raise ValueError(
                        f"the sampler returned d={fs.input_dim}, m={fs.output_dim}; its "
                        f"first batch had d={dim}, m={out}"
                    )
                return loss_on(fs.x, fs.y, fs.mask)

        warmup = max(1, round(0.08 * max_steps)) if warmup_steps is None else warmup_steps
        factor = _warmup_cosine(max_steps, warmup, lr, lr_start, lr_end)

        def ema_callback(info) -> None:
            trainer.update_ema(self.ema_decay)

        result = optimize(
            trainer,
            loss_fn,
            data=data,
            batch_size=batch_size,
            max_steps=max_steps,
            lr=lr,
            scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor),
            grad_clip=grad_clip,
            seed=seed,
            callbacks=[ema_callback, *callbacks],
            progress_bar=progress_bar,
            checkpoint_dir=checkpoint_dir,
            desc="NDP",
        )
        trainer.eval()
        result.diagnostics["num_parameters"] = sum(p.numel() for p in trainer.net.parameters())
        self.fit_result_ = result
        return self

    # -------------------------------------------------------------- checking
    def _check_set(
        self, x: Any, y: Any | None, name: str
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Validate ``x (n, d)`` / ``(b, n, d)`` and values ``y`` of the same points;
        return batched ``(b, n, d)``, ``(b, n, m)`` and whether the input was batched."""
        x = check_inputs(
            x,
            f"{name} x" if y is not None else name,
            dtype=self.dtype,
            device=self.device,
            num_features=self.input_dim_,
            allow_batch=True,
        )
        batched = x.ndim == 3
        xb = x if batched else x[None]
        if y is None:
            return xb, None, batched
        yname = f"{name} y"
        if batched:
            yt = torch.as_tensor(y) if not isinstance(y, torch.Tensor) else y
            if yt.ndim == 2 and self.output_dim_ == 1:
                yt = yt[..., None]
            if yt.ndim != 3 or yt.shape[:2] != xb.shape[:2] or yt.shape[2] != self.output_dim_:
                raise ValueError(
                    f"{yname} must have shape {(*xb.shape[:2], self.output_dim_)} to match "
                    f"x {tuple(xb.shape)}; got {tuple(yt.shape)}"
                )
            yb = torch.stack(
                [
                    check_targets(v, xb.shape[1], yname, dtype=self.dtype, device=self.device)
                    for v in yt
                ]
            )
        else:
            yb = check_targets(y, xb.shape[1], yname, dtype=self.dtype, device=self.device)[None]
            if yb.shape[-1] != self.output_dim_:
                raise ValueError(
                    f"{yname} must have {self.output_dim_} output(s); got shape {tuple(yb.shape)}"
                )
        return xb, yb, batched

    def _check_context(self, context: Any, batched: bool, b: int):
        if context is None:
            return None
        if not (isinstance(context, tuple | list) and len(context) == 2):
            raise TypeError(
                f"context must be a pair (x_c, y_c) or None; got {type(context).__name__}"
            )
        xc, yc, c_batched = self._check_set(context[0], context[1], "context")
        if c_batched != batched or xc.shape[0] != b:
            raise ValueError(
                f"context x has shape {tuple(context[0].shape)}; with x_target of batch "
                f"{b if batched else '()'} it must be {'(b, n_c, d)' if batched else '(n_c, d)'}"
                " with the same b"
            )
        return xc, yc

    # ------------------------------------------------------------ posterior
    def _sample(
        self,
        x: torch.Tensor,
        context: tuple[torch.Tensor, torch.Tensor] | None,
        num: int,
        generator: torch.Generator | None,
        num_inner_steps: int,
        chunk: int,
        progress_bar: bool,
        sampler: str = "repaint",
    ) -> torch.Tensor:
        """``(num, b, n, m)`` draws at ``x (b, n, d)``."""
        net = self.trainer_.ema.eval()
        eps = self._eps_fn(net)
        b, n, d = x.shape
        if context is not None and sampler == "smc":
            # one SMC run of num particles per function, as many functions at once as fit
            per = max(1, chunk // num)
            out = [
                smc_sample(
                    eps,
                    self.schedule_,
                    context[0][lo : lo + per],
                    context[1][lo : lo + per],
                    x[lo : lo + per],
                    num_particles=num,
                    generator=generator,
                    progress_bar=progress_bar,
                )
                for lo in range(0, b, per)
            ]
            return torch.cat(out, 1)
        total = num * b
        xs = x.expand(num, b, n, d).reshape(total, n, d)
        if context is not None:
            xc = context[0].expand(num, *context[0].shape).reshape(total, -1, d)
            yc = context[1].expand(num, *context[1].shape).reshape(total, -1, self.output_dim_)
        out = []
        for start in range(0, total, chunk):
            sl = slice(start, start + chunk)
            if context is None:
                draw = ancestral_sample(
                    eps,
                    self.schedule_,
                    xs[sl],
                    output_dim=self.output_dim_,
                    generator=generator,
                    progress_bar=progress_bar,
                )
            else:
                draw = repaint_sample(
                    eps,
                    self.schedule_,
                    xc[sl],
                    yc[sl],
                    xs[sl],
                    num_inner_steps=num_inner_steps,
                    generator=generator,
                    progress_bar=progress_bar,
                )
            out.append(draw)
        return torch.cat(out).reshape(num, b, n, self.output_dim_)

    def posterior(
        self,
        x: Any,
        *,
        context: tuple[Any, Any] | None = None,
        num_samples: int = 128,
        num_inner_steps: int | None = None,
        seed: int | None = 0,
        chunk_size: int = 1024,
        progress_bar: bool = False,
        sampler: str = "repaint",
    ) -> SamplePosterior:
        """Function values at ``x`` given a context, as draws of the learned process.

        Args:
            x: ``(n, d)`` or ``(b, n, d)`` target inputs.
            context: ``(x_c, y_c)`` with ``x_c (n_c, d)`` and ``y_c (n_c,)`` / ``(n_c, m)``
                (or ``(b, n_c, d)`` and ``(b, n_c, m)`` for batched ``x``); ``None`` gives
                the learned prior.
            num_samples: draws cached for the moments and quantiles (``sample`` draws
                afresh).
            num_inner_steps: RePaint ``U`` (default: the model's).
            seed: seeds the cached draw (``None``: torch's global generator).
            chunk_size: functions sampled at once (memory).
            sampler: the conditional sampler, ``"repaint"`` (the paper's, with
                ``num_inner_steps``) or ``"smc"`` (:func:`~bayesfn.processes.ndp.diffusion.
                smc_sample`: each request for ``S`` draws is one run of ``S`` particles
                per function, one network call per level; the draws share ancestors, so
                one call's spread is too narrow: pool calls or functions). On step
                functions RePaint follows the context loosely even with the exact noise
                model, SMC does not (``reproductions/README.md``, NDP (d)). Ignored
                without a context.

        Returns:
            A :class:`~bayesfn.posterior.SamplePosterior` with event ``(n, m)`` and batch
            ``()`` or ``(b,)``.
        """
        self._check_fitted()
        xb, _, batched = self._check_set(x, None, "x")
        ctx = self._check_context(context, batched, xb.shape[0])
        inner = self.num_inner_steps if num_inner_steps is None else num_inner_steps
        if isinstance(inner, bool) or not isinstance(inner, int) or inner < 0:
            raise ValueError(f"num_inner_steps must be an int >= 0; got {inner!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}")
        if sampler not in ("repaint", "smc"):
            raise ValueError(f"sampler must be 'repaint' or 'smc'; got {sampler!r}")
        first = [torch.Generator(device=self.device).manual_seed(seed)] if seed is not None else []

        def draw(num: int, generator: torch.Generator | None) -> torch.Tensor:
            if generator is None and first:
                generator = first.pop()
            draws = self._sample(xb, ctx, num, generator, inner, chunk_size, progress_bar, sampler)
            return draws if batched else draws[:, 0]

        return SamplePosterior(sampler=draw, num_samples=num_samples, event_ndim=2)

    # ------------------------------------------------------------- log_prob
    def log_prob(
        self,
        x: Any,
        y: Any,
        *,
        context: tuple[Any, Any] | None = None,
        method: str = "ode",
        ode_steps: int = 100,
        divergence: str = "auto",
        num_probes: int = 4,
        num_samples: int = 128,
        num_inner_steps: int | None = None,
        seed: int | None = 0,
        progress_bar: bool = False,
    ) -> torch.Tensor:
        """Joint log density of the values ``y`` at ``x`` given the context.

        ``method="ode"`` (exact up to the ODE solver): ``log p(y_c, y) - log p(y_c)``, both
        by the probability-flow ODE (see :func:`~bayesfn.processes.ndp.diffusion.ode_log_prob`
        for the convention at the finest level and the solver). ``method="moment"``: the
        paper's metric, a Gaussian fitted to ``num_samples`` conditional draws;
        ``"moment_diag"``: its diagonal version.

        Args:
            x: ``(n, d)`` or ``(b, n, d)``; y: ``(n,)``, ``(n, m)`` or ``(b, n, m)``.
            context: ``(x_c, y_c)`` as in :meth:`posterior`, or None.
            ode_steps: of the ODE (``divergence="auto"`` is exact
                up to 64 values per set, Hutchinson beyond).
            divergence: as ``ode_steps`` (described together above).
            num_probes: as ``ode_steps`` (described together above).
            num_samples: of the moment-matched metrics.
            num_inner_steps: as ``num_samples`` (described together above).
            seed: for Hutchinson probes and draws.

        Returns:
            ``()`` or ``(b,)`` log densities (sum over the ``n m`` target values; divide by
            ``n`` for the per-point numbers of the NDP tables), float64.
        """
        self._check_fitted()
        if method not in ("ode", "moment", "moment_diag"):
            raise ValueError(f"method must be 'ode', 'moment' or 'moment_diag'; got {method!r}")
        xb, yb, batched = self._check_set(x, y, "target")
        ctx = self._check_context(context, batched, xb.shape[0])
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        if method == "ode":
            net = copy.deepcopy(self.trainer_.ema).to(torch.float64).eval()
            eps = self._eps_fn(net)

            def ode(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
                return ode_log_prob(
                    eps,
                    self.schedule_,
                    xs.double(),
                    ys.double(),
                    ode_steps=ode_steps,
                    divergence=divergence,
                    num_probes=num_probes,
                    generator=gen,
                    progress_bar=progress_bar,
                )

            if ctx is None:
                out = ode(xb, yb)
            else:
                joint = ode(torch.cat([ctx[0], xb], 1), torch.cat([ctx[1], yb], 1))
                out = joint - ode(*ctx)
        else:
            inner = self.num_inner_steps if num_inner_steps is None else num_inner_steps
            draws = self._sample(xb, ctx, num_samples, gen, inner, 4096, progress_bar)
            out = moment_matched_log_prob(draws, yb, diagonal=method == "moment_diag")
        out = out.to(torch.float64)
        return out if batched else out[0]

    # ------------------------------------------------------------ save/load
    def _get_state(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer_.state_dict(),
            "input_dim": self.input_dim_,
            "output_dim": self.output_dim_,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._build(int(state["input_dim"]), int(state["output_dim"]))
        self.trainer_.load_state_dict(state["trainer"])
        self.trainer_.eval()
