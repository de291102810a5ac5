"""Operator flow matching (Shi, Ross, Asimaki & Azizzadenesheli, NeurIPS 2025) as a Model.

``fit(functions)`` learns a prior over functions: a neural operator ``v(t, u)`` is
regressed onto the velocity ``x₁ − x₀`` of straight paths between reference draws
``x₀ ~ ν₀`` (a rough GP) and data functions ``x₁``, paired by minibatch optimal transport.
Pushing ``ν₀`` through the ODE ``du/dt = v(t, u)`` from ``t = 0`` to ``1`` then samples the
learned process, on the training grid or any other (the operators are
discretisation-agnostic); the change of variables gives exact densities; and functional
regression samples ``u | y`` in the reference's whitened latent space.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from bayesfn.data import FunctionBatch, as_function_set
from bayesfn.model import Model, as_tensor, check_inputs, resolve_device, resolve_dtype
from bayesfn.posterior import SamplePosterior
from bayesfn.processes.ofm import latent
from bayesfn.processes.ofm.flow import (
    GaussianReference,
    SpectralReference,
    interpolate,
    log_density,
    odeint,
    ot_pairing,
)
from bayesfn.processes.ofm.operator import build_operator
from bayesfn.training import optimize

__all__ = ["OperatorFlowMatching"]

_SAMPLERS = ("pcn", "nuts", "sgld")


class OperatorFlowMatching(Model):
    """A stochastic process learned by operator flow matching.

    Args:
        operator: ``"fno"`` (a Fourier neural operator; functions on regular 1-D or 2-D
            grids spanning the training domain, at any resolution) or ``"attention"`` (an
            attention kernel operator on any set of points, permutation-equivariant).
        operator_options: keyword settings of the operator (e.g. ``{"width": 32,
            "modes": 12, "depth": 4}`` for ``"fno"``, ``{"width": 64, "heads": 4,
            "depth": 3}`` for ``"attention"``).
        reference_kernel: the reference GP
            ``ν₀`` on inputs rescaled to the unit box (the paper: Matérn-½, ℓ = 0.01, 1).
            For sampling on a finer grid than the training one (super-resolution) take
            ℓ of a few training-grid spacings (e.g. ``3 / (n − 1)``): the default
            ℓ = 0.01 lies below the spacing of any grid under 100 points, the coarse grid
            then folds ν₀'s high frequencies into its low modes, and a finer grid's draws
            carry less low-frequency power than the operator was trained on, so they
            shrink (in a probe at 64 → 253 points the draws' variance fell from 0.94 to
            0.85 and the autocovariance error was 0.147, against 0.015 with ℓ = 0.1;
            ``reproductions/README.md``, OFM (a, c) follow-ups).
        reference_lengthscale: as ``reference_kernel`` (described together above).
        reference_variance: as ``reference_kernel`` (described together above).
        reference_sampler: ``"cholesky"``, ``"fft"`` (periodic, regular grids only, for
            large 2-D grids) or ``"auto"`` (FFT on grids above 4,096 points).
        sigma_min: the width of the probability path (1e-4 in the paper).
        coupling: ``"ot"`` (exact minibatch optimal transport) or ``"independent"``.
        ode_method: the solver for sampling and densities (``"dopri5"``
            adaptive, or ``"rk4"`` with ``ode_steps`` steps).
        rtol: as ``ode_method`` (described together above).
        atol: as ``ode_method`` (described together above).
        ode_steps: RK4 steps of the flow map inside posterior samplers (which need a
            fixed, differentiable map) and for ``ode_method="rk4"``.
        seed: seeds the operator's initial weights.
        dtype: of the network (float32 by default); densities are computed in float64.
        device: where training and sampling run.

    Example:
        >>> fns = sample_functions("matern52", 2000, 64, x=torch.linspace(0, 1, 64)[:, None])
        >>> ofm = OperatorFlowMatching().fit(fns, max_steps=2000)
        >>> prior = ofm.posterior(torch.linspace(0, 1, 256)[:, None])   # super-resolution
        >>> post = ofm.posterior(x_grid, context=(x_obs, y_obs), noise=0.01)
    """

    def __init__(
        self,
        *,
        operator: str = "fno",
        operator_options: dict | None = None,
        reference_kernel: str = "matern12",
        reference_lengthscale: float = 0.01,
        reference_variance: float = 1.0,
        reference_sampler: str = "auto",
        sigma_min: float = 1e-4,
        coupling: str = "ot",
        ode_method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        ode_steps: int = 20,
        seed: int = 0,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if operator not in ("fno", "attention"):
            raise ValueError(f"operator must be 'fno' or 'attention'; got {operator!r}")
        if operator_options is not None and not isinstance(operator_options, dict):
            raise TypeError(f"operator_options must be a dict or None; got {operator_options!r}")
        if reference_sampler not in ("cholesky", "fft", "auto"):
            raise ValueError(
                f"reference_sampler must be 'cholesky', 'fft' or 'auto'; got {reference_sampler!r}"
            )
        if reference_sampler == "fft" and operator != "fno":
            raise ValueError("reference_sampler='fft' needs regular grids, i.e. operator='fno'")
        if coupling not in ("ot", "independent"):
            raise ValueError(f"coupling must be 'ot' or 'independent'; got {coupling!r}")
        if ode_method not in ("dopri5", "rk4"):
            raise ValueError(f"ode_method must be 'dopri5' or 'rk4'; got {ode_method!r}")
        for name, value in (
            ("reference_lengthscale", reference_lengthscale),
            ("reference_variance", reference_variance),
            ("rtol", rtol),
            ("atol", atol),
        ):
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number; got {value!r}")
        if not (isinstance(sigma_min, int | float) and sigma_min >= 0):
            raise ValueError(f"sigma_min must be a non-negative number; got {sigma_min!r}")
        if isinstance(ode_steps, bool) or not isinstance(ode_steps, int) or ode_steps < 1:
            raise ValueError(f"ode_steps must be a positive int; got {ode_steps!r}")
        self.operator = operator
        self.operator_options = dict(operator_options or {})
        self.reference_kernel = reference_kernel
        self.reference_lengthscale = reference_lengthscale
        self.reference_variance = reference_variance
        self.reference_sampler = reference_sampler
        self.sigma_min = sigma_min
        self.coupling = coupling
        self.ode_method = ode_method
        self.rtol = rtol
        self.atol = atol
        self.ode_steps = ode_steps
        self.seed = seed
        self.dtype = resolve_dtype(dtype, torch.float32)
        self.device = resolve_device(device)

    # ------------------------------------------------------------- data input
    def _parse_functions(self, functions: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x (n, d) float64, y (b, n, c))`` from a FunctionBatch or tensors."""
        if isinstance(functions, FunctionBatch):
            if y is not None:
                raise TypeError("give either a FunctionBatch or (x, y), not both")
            x, y = functions.x, functions.y
        elif y is None:
            # a FunctionSet, an (x, y) pair of (b, n, d) / (b, n, c) tensors or a sequence
            # of (x_i, y_i) sets; every function must be observed at the same points
            fs = as_function_set(functions, dtype=torch.float64, name="functions")
            if not fs.mask.all():
                raise ValueError(
                    "every function must be observed at the same points (a common grid); "
                    "the functions have different numbers of points"
                )
            x, y = fs.x, fs.y
        else:
            x = functions
        x = as_tensor(x, "x", dtype=torch.float64)
        y = as_tensor(y, "y", dtype=self.dtype)
        if y.ndim == 2:
            y = y.unsqueeze(-1)
        if y.ndim != 3:
            raise ValueError(f"y must have shape (b, n) or (b, n, c); got {tuple(y.shape)}")
        if x.ndim == 3:
            if x.shape[:2] != y.shape[:2]:
                raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must agree in (b, n)")
            if not torch.allclose(x, x[:1].expand_as(x), rtol=0, atol=1e-9):
                raise ValueError(
                    "every function must be observed at the same points (a common grid); "
                    "x differs between functions"
                )
            x = x[0]
        if x.ndim != 2 or x.shape[0] != y.shape[1]:
            raise ValueError(
                f"x must have shape (n, d) or (b, n, d) with n = {y.shape[1]}; got {tuple(x.shape)}"
            )
        for name, t in (("x", x), ("y", y)):
            if t.numel() == 0:
                raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains NaN or inf values")
        if y.shape[0] < 2:
            raise ValueError(f"fit needs at least 2 functions; got {y.shape[0]}")
        return x, y

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs rescaled so that the training domain is the unit box."""
        return (x.double() - self.lo_) / (self.hi_ - self.lo_)

    def _layout(self, x: torch.Tensor, name: str = "x") -> dict:
        """Points → operator layout: ``{"perm", "grid"}`` (FNO: ``x[perm]`` is the
        row-major regular grid of shape ``grid`` spanning the domain) or ``{"perm",
        "points"}`` (attention: unit-box positions)."""
        xu = self._unit(x)
        n, d = xu.shape
        if self.operator == "attention":
            return {"perm": torch.arange(n), "points": xu}
        values = [torch.unique(torch.round(xu[:, k] * 1e9) / 1e9) for k in range(d)]
        shape = tuple(len(v) for v in values)
        order = np.lexsort(tuple(xu[:, k].numpy() for k in reversed(range(d))))
        perm = torch.as_tensor(order)
        ok = math.prod(shape) == n and all(s >= 2 for s in shape)
        if ok:
            axes = [torch.linspace(0.0, 1.0, s, dtype=torch.float64) for s in shape]
            grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(n, d)
            spacing = min(1.0 / (s - 1) for s in shape)
            ok = bool((xu[perm] - grid).abs().max() < 1e-4 * spacing)
        if not ok:
            raise ValueError(
                f"{name} must be a regular grid spanning the training domain "
                f"[{self.lo_.tolist()}, {self.hi_.tolist()}] for operator='fno' (any "
                "resolution, points in any order); use operator='attention' for arbitrary "
                f"points; got {n} points that are not one"
            )
        return {"perm": perm, "grid": shape}

    def _reference(self, layout: dict) -> GaussianReference | SpectralReference:
        key = layout.get("grid") or layout["points"].numpy().tobytes()
        cache = self.__dict__.setdefault("_references", {})
        if key not in cache:
            kw = {
                "kernel": self.reference_kernel,
                "lengthscale": self.reference_lengthscale,
                "variance": self.reference_variance,
            }
            grid = layout.get("grid")
            use_fft = self.reference_sampler == "fft" or (
                self.reference_sampler == "auto" and grid is not None and math.prod(grid) > 4096
            )
            if use_fft:
                cache[key] = SpectralReference(grid, self.channels_, **kw)
            else:
                pts = layout.get("points")
                if pts is None:
                    axes = [torch.linspace(0.0, 1.0, s, dtype=torch.float64) for s in grid]
                    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(
                        -1, len(grid)
                    )
                cache[key] = GaussianReference(pts, self.channels_, **kw)
                cache[key].chol = cache[key].chol.to(self.device)
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
        return cache[key]

    def _field(self, layout: dict, module: torch.nn.Module | None = None):
        """``field(t, u (B, n, c))`` in operator order."""
        op = self.operator_ if module is None else module

        if "grid" in layout:
            grid = layout["grid"]

            def field(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
                tt = t.expand(u.shape[0]) if t.ndim == 0 else t
                return op(tt, u.reshape(u.shape[0], *grid, u.shape[-1])).reshape(u.shape)

        else:
            pts = layout["points"]

            def field(t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
                tt = t.expand(u.shape[0]) if t.ndim == 0 else t
                return op(tt, u, pts.to(device=u.device, dtype=u.dtype))

        return field

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        functions: Any,
        y: Any = None,
        *,
        max_steps: int = 2000,
        batch_size: int = 128,
        lr: float = 1e-3,
        lr_decay: float = 0.8,
        lr_decay_every: int | None = None,
        grad_clip: float | None = 1.0,
        seed: int | None = None,
        callbacks=(),
        progress_bar: bool = True,
        checkpoint_dir=None,
    ) -> OperatorFlowMatching:
        """Learn the process from functions observed on a common set of points.

        Args:
            functions: a :class:`~bayesfn.data.FunctionBatch` (its ``x`` and ``y``), a
                :class:`~bayesfn.data.FunctionSet`, an ``(x, y)`` pair of ``(b, n, d)`` /
                ``(b, n, c)`` tensors, a sequence of ``(x_i, y_i)`` sets, or inputs ``x``
                ``(b, n, d)`` / ``(n, d)`` with ``y`` given; in every form all functions
                share one set of points.
            y: ``(b, n, c)`` (or ``(b, n)``) values when ``functions`` is ``x``.
            max_steps: optimisation steps of :func:`bayesfn.training.optimize`.
            batch_size: functions per step (paired with as many reference draws).
            lr: Adam learning rate; multiplied by ``lr_decay`` every ``lr_decay_every``
                steps (default ``max_steps // 10``; the paper's StepLR).
            grad_clip: global gradient-norm clip, or None.
            seed: seeds the minibatch order, the reference draws and the times
                (default: the model's ``seed``).
            callbacks: see :func:`bayesfn.training.optimize`.
            progress_bar: as ``callbacks`` (described together above).
            checkpoint_dir: as ``callbacks`` (described together above).

        Returns:
            ``self``; ``fit_result_`` records the losses.
        """
        x, u1 = self._parse_functions(functions, y)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2; got {batch_size!r}")
        self.input_dim_, self.channels_ = x.shape[1], u1.shape[2]
        lo, hi = x.min(0).values, x.max(0).values
        if (hi <= lo).any():
            raise ValueError(
                "the training points must span a non-empty range in every input dimension"
            )
        self.lo_, self.hi_ = lo, hi
        self.__dict__.pop("_references", None)
        layout = self._layout(x)
        if "grid" in layout and len(layout["grid"]) not in (1, 2):
            raise ValueError(f"operator='fno' supports 1-D and 2-D grids; got d = {x.shape[1]}")
        self.train_x_ = x
        reference = self._reference(layout)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            module = build_operator(
                self.operator, x.shape[1], self.channels_, self.operator_options
            )
        self.operator_ = module.to(device=self.device, dtype=self.dtype)
        field = self._field(layout)
        data = u1[:, layout["perm"]].contiguous()
        dtype, coupling, sigma_min = self.dtype, self.coupling, self.sigma_min

        def loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            x1 = batch[0]
            b = x1.shape[0]
            x0 = reference.sample(b, dtype=dtype).to(x1.device)
            if coupling == "ot":
                x0 = ot_pairing(x0, x1)
            t = torch.rand(b, dtype=dtype, device=x1.device)
            noise = reference.sample(b, dtype=dtype).to(x1.device)
            xt, target = interpolate(x0, x1, t, sigma_min, noise)
            return (field(t, xt) - target).square().mean()

        every = lr_decay_every or max(1, max_steps // 10)
        result = optimize(
            self.operator_,
            loss_fn,
            data=(data,),
            batch_size=min(batch_size, data.shape[0]),
            max_steps=max_steps,
            lr=lr,
            scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, every, gamma=lr_decay),
            grad_clip=grad_clip,
            seed=self.seed if seed is None else seed,
            callbacks=callbacks,
            progress_bar=progress_bar,
            checkpoint_dir=checkpoint_dir,
            desc="OFM",
        )
        result.diagnostics.update(
            {
                "num_functions": int(u1.shape[0]),
                "num_points": int(u1.shape[1]),
                "channels": int(self.channels_),
                "parameters": sum(p.numel() for p in self.operator_.parameters()),
            }
        )
        self.fit_result_ = result
        return self

    # --------------------------------------------------------------- sampling
    def _check_x(self, x: Any, name: str = "x") -> torch.Tensor:
        self._check_fitted()
        return check_inputs(x, name, dtype=torch.float64, num_features=self.input_dim_)

    def _push(self, layout: dict, a: torch.Tensor, *, fixed: bool = False) -> torch.Tensor:
        """``u = G(a)``: the ODE from ``t = 0`` to ``1`` (RK4 with ``ode_steps`` if ``fixed``)."""
        method = "rk4" if fixed or self.ode_method == "rk4" else "dopri5"
        field = self._field(layout)
        (u,), _ = odeint(
            lambda t, s: (field(t, s[0]),),
            (a,),
            0.0,
            1.0,
            method=method,
            rtol=self.rtol,
            atol=self.atol,
            steps=self.ode_steps,
        )
        return u

    def sample(
        self,
        x: Any,
        num: int,
        *,
        generator: torch.Generator | None = None,
        chunk: int = 256,
    ) -> torch.Tensor:
        """Draws of the learned prior at any points (any resolution).

        Args:
            x: ``(n, d)`` inputs (a regular grid over the training domain for ``"fno"``).
            num: number of functions.
            generator: for the reference draws.
            chunk: functions integrated at once.

        Returns:
            ``(num, n, c)`` function values, in the order of ``x``.
        """
        x = self._check_x(x)
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive int; got {num!r}")
        layout = self._layout(x)
        reference = self._reference(layout)
        outs = []
        with torch.no_grad():
            for start in range(0, num, chunk):
                a = reference.sample(min(chunk, num - start), generator=generator, dtype=self.dtype)
                outs.append(self._push(layout, a.to(self.device)))
        u = torch.cat(outs)
        inv = torch.argsort(layout["perm"])
        return u[:, inv.to(u.device)]

    def _context_matrix(self, layout: dict, x_c: torch.Tensor) -> torch.Tensor:
        """``W`` ``(m, n)`` with ``u(x_c) = W u`` (operator order): selection for the
        attention operator's appended points, (bi)linear interpolation on a grid."""
        n = math.prod(layout["grid"])
        xu = self._unit(x_c)
        if (xu < -1e-9).any() or (xu > 1 + 1e-9).any():
            raise ValueError(
                "context inputs must lie inside the training domain "
                f"[{self.lo_.tolist()}, {self.hi_.tolist()}] for operator='fno'"
            )
        xu = xu.clamp(0, 1)
        w = torch.ones(x_c.shape[0], 1, dtype=torch.float64)
        idx = torch.zeros(x_c.shape[0], 1, dtype=torch.long)
        stride = 1
        for k in reversed(range(len(layout["grid"]))):
            s = layout["grid"][k]
            pos = xu[:, k] * (s - 1)
            left = pos.floor().clamp(max=s - 2).long()
            frac = pos - left
            w = torch.cat([w * (1 - frac)[:, None], w * frac[:, None]], 1)
            idx = torch.cat([idx + left[:, None] * stride, idx + (left + 1)[:, None] * stride], 1)
            stride *= s
        mat = torch.zeros(x_c.shape[0], n, dtype=torch.float64)
        mat.scatter_add_(1, idx, w)
        return mat

    def _check_context(self, context: Any, batch: int | None) -> tuple[torch.Tensor, ...]:
        """``(x_c (m, d) or (b, m, d), y_c (m, c) or (b, m, c))`` float64, batched like
        ``x`` (``batch`` its batch size, None when unbatched)."""
        if not (isinstance(context, tuple | list) and len(context) == 2):
            raise TypeError("context must be a pair (x_c, y_c)")
        x_c = check_inputs(
            context[0],
            "context[0] (x_c)",
            dtype=torch.float64,
            num_features=self.input_dim_,
            allow_batch=True,
        )
        if (x_c.ndim == 3) != (batch is not None) or (batch is not None and x_c.shape[0] != batch):
            expected = "(m, d)" if batch is None else f"({batch}, m, d)"
            raise ValueError(
                f"context[0] (x_c) must have shape {expected} to match x "
                f"({'unbatched' if batch is None else f'batch {batch}'}); got {tuple(x_c.shape)}"
            )
        y_c = as_tensor(context[1], "context[1] (y_c)", dtype=torch.float64)
        if y_c.ndim == x_c.ndim - 1:
            y_c = y_c.unsqueeze(-1)
        if y_c.shape != (*x_c.shape[:-1], self.channels_):
            raise ValueError(
                f"context[1] (y_c) must have the same rows as context[0] (x_c) and "
                f"{self.channels_} channel(s): shape {tuple(x_c.shape[:-1])} or "
                f"{(*x_c.shape[:-1], self.channels_)}; got {tuple(y_c.shape)}"
            )
        if not torch.isfinite(y_c).all():
            raise ValueError("context[1] (y_c) contains NaN or inf values")
        return x_c, y_c

    def posterior(
        self,
        x: Any,
        *,
        context: tuple[Any, Any] | None = None,
        noise: float = 0.01,
        observation_noise: bool = False,
        num_samples: int = 1000,
        sampler: str = "pcn",
        num_chains: int = 16,
        burn_in: int = 200,
        thin: int = 1,
        step_size: float | None = None,
        precondition: bool = True,
        seed: int | None = 0,
        progress_bar: bool = False,
    ) -> SamplePosterior:
        """The learned process at ``x``: the prior, or the posterior given ``context``.

        Without context, draws of the prior (``num_samples`` cached for moments; more
        on demand). With ``context=(x_c, y_c)`` and Gaussian observation noise of
        variance ``noise``, MCMC in the whitened reference space: latents ``z``,
        ``u = G(L₀ z)`` on the union of ``x`` and the context points (attention) or on
        the grid ``x`` with the context values interpolated from it (FNO), and target
        ``−½‖z‖² + log N(y_c; u(x_c), noise·I)`` — no Jacobian term. ``G`` is the RK4 flow
        map with ``ode_steps`` steps.

        The default sampler is pCN preconditioned by a Gaussian approximation
        ``N(μ, P⁻¹)`` of that target (a few Gauss–Newton steps from ``z = 0``: one
        forward and one backward pass per observed value each), with chains started
        from it and one ``β`` per problem adapted during burn-in to an acceptance rate of
        0.25. Why: with precise observations plain pCN must take ``β`` as small as the
        posterior's width in the pinned directions and then moves all other directions
        by ``~β`` a step, so its draws are strongly autocorrelated (on NDP's 1-D tasks,
        noise 0.05², 16 plain chains had an effective sample size of ~8 per task after
        200 steps, against 45–310 preconditioned, and NDP's moment-matched log
        likelihood per target was −0.03 against 0.65, exact draws scoring 0.67;
        ``reproductions/README.md``, OFM (e)); for a flow close to linear the
        preconditioned proposal is close to an independent draw from the posterior.
        ``precondition=False`` gives plain pCN from prior draws.

        Args:
            x: ``(n, d)`` target inputs, or ``(b, n, d)`` for ``b`` independent problems
                (each conditioned on its own context).
            context: ``(x_c (m, d), y_c (m,) or (m, c))`` (batched like ``x``:
                ``(b, m, d)``, ``(b, m)`` or ``(b, m, c)``), or None for the prior.
            noise: observation-noise variance of the context (and of ``observation_noise``).
            observation_noise: add ``N(0, noise)`` to the draws (predictive of ``y``).
            num_samples: prior draws cached; with context, the total kept draws
                (``num_chains`` chains of ``ceil(num_samples / num_chains)``).
            sampler: ``"pcn"`` (default), ``"nuts"`` (Pyro) or ``"sgld"`` (the paper's).
            num_chains: MCMC settings (``step_size``: pCN's
                initial ``β`` (0.5 preconditioned, 0.2 plain), SGLD's initial ``η``
                (5e-3); NUTS adapts its own). Defaults: 16 chains of
                ``ceil(num_samples / 16)`` draws after 200 burn-in steps, every step
                kept.
            burn_in: as ``num_chains`` (described together above).
            thin: as ``num_chains`` (described together above).
            step_size: as ``num_chains`` (described together above).
            precondition: pCN around the Gauss–Newton approximation (default) or
                plain pCN (False); ignored by the other samplers.
            seed: seeds the draws (None: torch's global generator).
            progress_bar: show the sampler's progress.

        Returns:
            A :class:`SamplePosterior` with event ``(n, c)`` (batch ``(b,)`` for batched
            ``x``). With context, the model's ``sampler_diagnostics_`` holds the
            acceptance rate, pCN's final ``β`` per chain and the chains' draws (of the
            last problem of a batch).
        """
        self._check_fitted()
        xs = check_inputs(
            x, "x", dtype=torch.float64, num_features=self.input_dim_, allow_batch=True
        )
        batch = xs.shape[0] if xs.ndim == 3 else None
        if not (isinstance(noise, int | float) and noise > 0 and math.isfinite(noise)):
            raise ValueError(f"noise must be a positive variance; got {noise!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"num_samples must be an int >= 2; got {num_samples!r}")
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        sd = math.sqrt(noise)
        problems = [xs] if batch is None else list(xs)

        def finish(draws: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
            if observation_noise:
                eps = torch.randn(draws.shape, generator=g, dtype=draws.dtype)
                draws = draws + sd * eps.to(draws.device)
            return draws

        def join(parts: list[torch.Tensor]) -> torch.Tensor:
            return parts[0] if batch is None else torch.stack(parts, 1)

        if context is None:
            for xi in problems:
                self._layout(xi)  # fail now on points the operator cannot take
            first = [generator]

            def draw(num: int, g: torch.Generator | None) -> torch.Tensor:
                g = g if g is not None else first.pop() if first else None
                return finish(join([self.sample(xi, num, generator=g) for xi in problems]), g)

            return SamplePosterior(sampler=draw, num_samples=num_samples)

        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {_SAMPLERS}; got {sampler!r}")
        if not isinstance(precondition, bool):
            raise TypeError(f"precondition must be a bool; got {precondition!r}")
        x_c, y_c = self._check_context(context, batch)
        if batch is None:
            x_c, y_c = x_c[None], y_c[None]
        settings = {
            "noise": noise,
            "num_samples": num_samples,
            "sampler": sampler,
            "num_chains": num_chains,
            "burn_in": burn_in,
            "thin": thin,
            "step_size": step_size,
            "precondition": precondition,
            "generator": generator,
            "progress_bar": progress_bar,
        }
        draws = [self._condition(xi, x_c[i], y_c[i], **settings) for i, xi in enumerate(problems)]
        return SamplePosterior(finish(join(draws), generator))

    def _condition(
        self,
        x: torch.Tensor,
        x_c: torch.Tensor,
        y_c: torch.Tensor,
        *,
        noise: float,
        num_samples: int,
        sampler: str,
        num_chains: int,
        burn_in: int,
        thin: int,
        step_size: float | None,
        precondition: bool,
        generator: torch.Generator | None,
        progress_bar: bool,
    ) -> torch.Tensor:
        """``(num_samples, n, c)`` posterior draws of the values at ``x`` ``(n, d)`` given
        ``y_c`` ``(m, c)`` at ``x_c`` ``(m, d)`` (see :meth:`posterior`)."""
        n = x.shape[0]
        if self.operator == "attention":
            layout = self._layout(torch.cat([x, x_c]))
            w = torch.zeros(x_c.shape[0], n + x_c.shape[0], dtype=torch.float64)
            w[:, n:] = torch.eye(x_c.shape[0], dtype=torch.float64)
            target_rows = torch.arange(n)
        else:
            layout = self._layout(x)
            w = self._context_matrix(layout, x_c)
            target_rows = torch.argsort(layout["perm"])
        reference = self._reference(layout)
        w = w.to(device=self.device, dtype=self.dtype)
        y_dev = y_c.to(self.device)
        total_points = w.shape[1]

        def log_lik(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            u = self._push(layout, reference.color(z), fixed=True)
            resid = y_dev - (w @ u).double()
            ll = -0.5 * resid.square().sum((-2, -1)) / noise
            return ll - 0.5 * resid[0].numel() * math.log(2 * math.pi * noise), u

        chains = min(num_chains, num_samples)
        per_chain = math.ceil(num_samples / chains)
        z0 = torch.randn(
            chains, total_points, self.channels_, generator=generator, dtype=self.dtype
        ).to(self.device)
        kw = {"num_samples": per_chain, "burn_in": burn_in, "thin": thin, "generator": generator}
        kw["progress_bar"] = progress_bar
        self.operator_.eval()
        if sampler == "pcn" and precondition:

            def observe(z: torch.Tensor) -> torch.Tensor:
                return (w @ self._push(layout, reference.color(z), fixed=True)).flatten(1)

            approx = latent.gauss_newton(observe, y_c.flatten()[None], noise, z0[:1] * 0)
            approx = {k: v.expand(chains, *v.shape[1:]).clone() for k, v in approx.items()}
            z0 = latent.approximation_draws(approx, generator=generator)
            with torch.no_grad():
                res = latent.pcn(
                    log_lik,
                    z0,
                    step_size=step_size or 0.5,
                    preconditioner=approx,
                    groups=torch.zeros(chains, dtype=torch.long),
                    **kw,
                )
        elif sampler == "pcn":
            with torch.no_grad():
                res = latent.pcn(log_lik, z0, step_size=step_size or 0.2, **kw)
        elif sampler == "sgld":
            res = latent.sgld(
                log_lik,
                z0,
                step_size=step_size or 5e-3,
                final_step_size=0.8 * (step_size or 5e-3),
                **kw,
            )
        else:
            res = latent.nuts(log_lik, z0, **kw)
        out = res["output"][:, :, target_rows.to(self.device)]
        self.sampler_diagnostics_ = {
            "sampler": sampler,
            "accept": res["accept"],
            "step_size": res.get("step_size"),
            "chains": out.detach(),
        }
        return out.flatten(0, 1)[:num_samples].detach()

    # ---------------------------------------------------------------- density
    def log_prob(
        self,
        x: Any,
        y: Any,
        *,
        context: tuple[Any, Any] | None = None,
        trace: str = "exact",
        num_probes: int = 16,
        rtol: float | None = None,
        atol: float | None = None,
        seed: int | None = 0,
        chunk: int = 64,
    ) -> torch.Tensor:
        """Exact log density of function values ``y`` at ``x`` under the learned process.

        ``log p(u) = log ν₀(a) − ∫₀¹ tr ∂v/∂u dt`` with ``a`` the ODE solved backward
        from ``u``, in float64 (a float64 copy of the operator, the adaptive solver).
        With ``context``, the conditional density of the process's values,
        ``log p(y_c, y) − log p(y_c)`` on the points ``[x_c; x]`` (``operator="attention"``
        only: a grid operator has no density on a grid plus extra points). These are
        densities of the values of the learned process: noise enters only as far as the
        training functions carried it.

        Args:
            x: ``(n, d)`` inputs, or ``(b, n, d)`` with one function per set of inputs.
            y: ``(n,)`` or ``(n, c)`` (one function), ``(b, n, c)`` values (``b``
                functions at the shared ``x``, or one per set of a batched ``x``).
            context: ``(x_c (m, d), y_c (m,) or (m, c))``, batched like ``x``, or None.
            trace: ``"exact"`` or ``"hutchinson"`` (``num_probes`` probes).
            rtol: solver tolerances (default: the model's).
            atol: as ``rtol`` (described together above).
            seed: for Hutchinson probes.

        Returns:
            ``()`` for one function, else ``(b,)``: float64 log densities (nats).
        """
        self._check_fitted()
        xs = check_inputs(
            x, "x", dtype=torch.float64, num_features=self.input_dim_, allow_batch=True
        )
        batch = xs.shape[0] if xs.ndim == 3 else None
        n, c = xs.shape[-2], self.channels_
        y = as_tensor(y, "y", dtype=torch.float64)
        if y.ndim == xs.ndim - 1 and c == 1:
            y = y.unsqueeze(-1)
        single = batch is None and y.ndim == 2
        if single:
            y = y.unsqueeze(0)
        if y.ndim != 3 or y.shape[1:] != (n, c) or (batch is not None and y.shape[0] != batch):
            lead = "b" if batch is None else str(batch)
            raise ValueError(
                f"y must have shape (n, c) or ({lead}, n, c) with n = {n} rows (the points "
                f"of x) and c = {c}; got {tuple(y.shape)}"
            )
        if not torch.isfinite(y).all():
            raise ValueError("y contains NaN or inf values")
        kw = {
            "trace": trace,
            "num_probes": num_probes,
            "rtol": self.rtol if rtol is None else rtol,
            "atol": self.atol if atol is None else atol,
            "seed": seed,
            "chunk": chunk,
        }
        if context is not None:
            if self.operator != "attention":
                raise ValueError(
                    "log_prob with context needs operator='attention' (the conditional "
                    "density lives on the grid plus the context points); got operator='fno'"
                )
            x_c, y_c = self._check_context(context, batch)
            if batch is None:
                x_c, y_c = x_c[None], y_c[None]
        if batch is None:
            if context is None:
                out = self._density(xs, y, **kw)
            else:
                joint_y = torch.cat([y_c.expand(y.shape[0], -1, -1), y], 1)
                out = self._density(torch.cat([x_c[0], xs]), joint_y, **kw)
                out = out - self._density(x_c[0], y_c, **kw)
        else:
            out = []
            for i in range(batch):
                lp = self._density(xs[i], y[i : i + 1], **kw)
                if context is not None:
                    joint = self._density(
                        torch.cat([x_c[i], xs[i]]), torch.cat([y_c[i], y[i]])[None], **kw
                    )
                    lp = joint - self._density(x_c[i], y_c[i : i + 1], **kw)
                out.append(lp)
            out = torch.cat(out)
        return out[0] if single else out

    def _density(self, x: torch.Tensor, y: torch.Tensor, *, seed, **kw) -> torch.Tensor:
        """``(b,)`` log densities of ``y`` ``(b, n, c)`` at ``x`` ``(n, d)`` (float64)."""
        layout = self._layout(x)
        reference = self._reference(layout)
        module = copy.deepcopy(self.operator_).double().eval()
        field = self._field(layout, module)
        g = None if seed is None else torch.Generator().manual_seed(seed)
        lp, _ = log_density(
            field, y[:, layout["perm"]].to(self.device), reference, generator=g, **kw
        )
        return lp

    # ------------------------------------------------------------ save / load
    def _get_state(self) -> dict[str, Any]:
        return {
            "operator": self.operator_.state_dict(),
            "lo": self.lo_,
            "hi": self.hi_,
            "train_x": self.train_x_,
            "channels": int(self.channels_),
            "input_dim": int(self.input_dim_),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.lo_, self.hi_ = state["lo"].double(), state["hi"].double()
        self.train_x_ = state["train_x"].double()
        self.channels_, self.input_dim_ = int(state["channels"]), int(state["input_dim"])
        module = build_operator(
            self.operator, self.input_dim_, self.channels_, self.operator_options
        )
        module.load_state_dict(state["operator"])
        self.operator_ = module.to(device=self.device, dtype=self.dtype).eval()
