"""GP-matched functional priors: fit a weight prior so that the functions it induces
look like draws of a target Gaussian process (Tran, Rossi, Milios & Filippone, "All You
Need is a Good Functional Prior for Bayesian Deep Learning", JMLR 23(74), 2022).

The prior's hyperparameters ``ψ`` minimise the 1-Wasserstein distance between the
distribution of network outputs ``f(X_M; w), w ~ p_ψ`` and the target GP at random
measurement sets ``X_M``:

``ψ* = argmin_ψ E_{X_M} W₁(p_ψ(f(X_M)), p_GP(f(X_M)))``

with ``W₁`` in its Kantorovich–Rubinstein dual form,
``sup_{‖φ‖_L ≤ 1} E_nn[φ(f)] − E_gp[φ(f)]``, the supremum taken over a critic MLP
``φ: R^M → R`` kept 1-Lipschitz by a gradient penalty (WGAN-GP). One outer iteration:

1. draw ``X_M``: training inputs plus uniform draws in their bounding box;
2. re-initialise the critic and train it on a detached bag of ``S`` network and ``S``
   GP draws at ``X_M`` (the same bag for every critic step, as in the official code);
3. with the critic fixed, ``W₁ ≈ mean φ(f_nn) − mean φ(f_gp)`` on fresh draws, where
   ``f_nn`` is differentiable in ``ψ`` through :meth:`Prior.rsample` (pathwise) and
   :func:`~bayesfn.bayesnn.nets.batched_forward`; one RMSprop step on ``ψ``.

The ``W₁`` estimate of step 3 is recorded every iteration (``result.w1``). For an
``m``-output network the same critic is applied to each output's ``M`` values and the
results are summed; the target then draws ``m`` independent GP functions.

Defaults are those of the official code's UCI notebook
(``tranbahien/you-need-a-good-prior``, ``uci_regression.ipynb``):

=========================  =====  =================================================
setting                    value  official name
=========================  =====  =================================================
``num_iterations``         200    ``num_iters``
``critic_steps``           200    ``n_wasserstein_steps`` (second entry)
``num_samples`` (S)        128    ``n_samples``
measurement set            70+30  ``MeasureSetGenerator`` (70 training + 30 uniform)
``critic_lr`` (Adagrad)    0.02   ``lr`` of the Wasserstein critic
``lr`` (RMSprop)           0.05   ``prior_lr``
``critic_threshold``       0.1    ``wasserstein_thres``
``penalty_weight``         10     ``lipschitz_constraint_type="gp"``, λ = 10
critic                     M→200→200→1, Softplus, Xavier-normal weights, N(0, 1) biases
=========================  =====  =================================================

The official 1-D notebook uses 800 iterations × 1,000 critic steps, S = 512, a fixed
grid of 200 points, critic lr 0.08, prior lr 0.01 and threshold 0.01.

Two deliberate choices differ from the official code: the measurement box is spanned by
the training inputs only (the official UCI code uses training *and test* inputs), and
``reset_critic_optimizer`` makes the critic's Adagrad state restart with the critic.
By default (``False``) we keep the official behaviour, where the Adagrad accumulators
carry over from one outer iteration to the next, so the critic's effective learning
rate decays over the fit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bayesfn.bayesnn.bnn import BNN, _safe_std
from bayesfn.bayesnn.nets import Network, batched_forward
from bayesfn.bayesnn.priors import Prior
from bayesfn.covariance import GPSampler
from bayesfn.model import check_inputs, resolve_device, resolve_dtype
from bayesfn.training import FitResult, StepInfo, optimize

__all__ = [
    "FunctionalPriorResult",
    "LipschitzCritic",
    "fit_functional_prior",
    "wasserstein_estimate",
]

_PENALTIES = ("gp", "lp", "clip")


class LipschitzCritic:
    """The critic ``φ: R^M → R`` of the Kantorovich–Rubinstein dual of ``W₁``.

    ``φ`` is an MLP ``M → hidden → ... → 1`` with Softplus activations. Each
    :meth:`fit` re-initialises it (Xavier-normal weights, ``N(0, 1)`` biases) and
    maximises ``mean φ(f_p) − mean φ(f_q)`` minus a Lipschitz penalty with Adagrad.

    Args:
        num_points: ``M``, the length of one function draw.
        hidden: hidden widths (official: ``(200, 200)``).
        penalty: ``"gp"``: two-sided gradient penalty ``λ E[(‖∇φ(x̂)‖ − 1)²]`` at
            ``x̂ = ε f_p + (1 − ε) f_q``, ``ε ~ U(0, 1)`` per draw (Gulrajani et al.,
            2017); ``"lp"``: the one-sided ``λ E[max(0, ‖∇φ(x̂)‖ − 1)²]``;
            ``"clip"``: no penalty, weights clipped to ``[−0.1, 0.1]`` after each step.
        penalty_weight: ``λ``.
        lr: Adagrad's learning rate.
        steps: Adagrad steps per :meth:`fit`.
        threshold: stop a fit early once the gradient norm of the critic's loss over its
            parameters falls below this (``None``: never).
        reset_optimizer: restart Adagrad's state at every :meth:`fit`; ``False`` keeps
            it across fits, as the official code does.
        dtype: of the critic's parameters.
        device: of the critic's parameters.
    """

    def __init__(
        self,
        num_points: int,
        *,
        hidden: Sequence[int] = (200, 200),
        penalty: str = "gp",
        penalty_weight: float = 10.0,
        lr: float = 0.02,
        steps: int = 200,
        threshold: float | None = None,
        reset_optimizer: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        _check_int(num_points, "num_points", 1)
        hidden = list(hidden)
        if not hidden or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints; got {hidden}")
        if penalty not in _PENALTIES:
            raise ValueError(f"penalty must be one of {_PENALTIES}; got {penalty!r}")
        _check_positive(penalty_weight, "penalty_weight")
        _check_positive(lr, "lr")
        _check_int(steps, "steps", 0)
        if threshold is not None:
            _check_positive(threshold, "threshold")
        sizes = [num_points, *hidden, 1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.Softplus())
        self.net = nn.Sequential(*layers).to(dtype=dtype, device=resolve_device(device))
        self.num_points = num_points
        self.penalty = penalty
        self.penalty_weight = float(penalty_weight)
        self.lr = float(lr)
        self.steps = steps
        self.threshold = threshold
        self.reset_optimizer = reset_optimizer
        self._optimizer = torch.optim.Adagrad(self.net.parameters(), lr=self.lr)
        self.steps_taken: list[int] = []

    def reset(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise the weights (Xavier-normal) and biases (``N(0, 1)``) in place."""
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    nn.init.xavier_normal_(layer.weight, generator=generator)
                    nn.init.normal_(layer.bias, generator=generator)
        if self.reset_optimizer:
            self._optimizer = torch.optim.Adagrad(self.net.parameters(), lr=self.lr)

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        """``φ`` summed over outputs: ``f (S, M, m)`` → ``(S,)``."""
        return self.net(f.transpose(-1, -2)).squeeze(-1).sum(-1)

    def frozen(self, f: torch.Tensor) -> torch.Tensor:
        """As calling the critic, without gradients to its own parameters (gradients
        still flow into ``f``)."""
        params = {k: v.detach() for k, v in self.net.named_parameters()}
        out = torch.func.functional_call(self.net, params, (f.transpose(-1, -2),))
        return out.squeeze(-1).sum(-1)

    def _penalty(self, f_p: torch.Tensor, f_q: torch.Tensor, generator) -> torch.Tensor:
        eps = torch.rand(f_p.shape[0], 1, 1, generator=generator, dtype=f_p.dtype)
        eps = eps.to(f_p.device)
        mix = (eps * f_p + (1 - eps) * f_q).requires_grad_(True)
        (grad,) = torch.autograd.grad(self(mix).sum(), mix, create_graph=True)
        norm = grad.norm(dim=-2)  # (S, m): one gradient per output's M values
        excess = norm - 1 if self.penalty == "gp" else F.relu(norm - 1)
        return self.penalty_weight * excess.square().mean()

    def fit(
        self, f_p: torch.Tensor, f_q: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> float:
        """Re-initialise and train on ``f_p``, ``f_q`` (each ``(S, M, m)``, detached).

        Returns:
            The critic's own estimate ``mean φ(f_p) − mean φ(f_q)`` on these draws after
            training (biased upwards: it is measured where the critic was trained).
        """
        f_p, f_q = f_p.detach(), f_q.detach()
        self.reset(generator)
        params = list(self.net.parameters())
        taken = 0
        with torch.enable_grad():
            for _ in range(self.steps):
                self._optimizer.zero_grad(set_to_none=True)
                loss = self(f_q).mean() - self(f_p).mean()
                if self.penalty != "clip":
                    loss = loss + self._penalty(f_p, f_q, generator)
                loss.backward()
                taken += 1
                if self.threshold is not None:
                    norm = torch.sqrt(sum(p.grad.square().sum() for p in params))
                    if float(norm) < self.threshold:
                        break
                self._optimizer.step()
                if self.penalty == "clip":
                    with torch.no_grad():
                        for p in params:
                            p.clamp_(-0.1, 0.1)
        self.steps_taken.append(taken)
        with torch.no_grad():
            return float(self(f_p).mean() - self(f_q).mean())


def wasserstein_estimate(
    f_p: torch.Tensor,
    f_q: torch.Tensor,
    *,
    f_p_eval: torch.Tensor | None = None,
    f_q_eval: torch.Tensor | None = None,
    seed: int | None = 0,
    **critic_options: Any,
) -> float:
    """The critic's estimate of ``W₁`` between two sets of function draws.

    Trains a fresh :class:`LipschitzCritic` on ``f_p``, ``f_q`` and returns
    ``mean φ(f_p_eval) − mean φ(f_q_eval)`` on independent evaluation draws when given
    (an honest estimate), else on the training draws (biased upwards by overfitting).

    Args:
        f_p: ``(S, M)`` or ``(S, M, m)`` draws of the first law.
        f_q: draws of the second law, of the same shape.
        f_p_eval: optional independent evaluation draws of the first law, ``(S', M, m)``.
        f_q_eval: the same for the second law.
        seed: seeds the critic's initialisation and the penalty's mixing weights.
        critic_options: settings of :class:`LipschitzCritic` (``steps``, ``lr``, ...).
    """
    f_p, f_q = _as_draws(f_p, "f_p"), _as_draws(f_q, "f_q")
    if f_p.shape[1:] != f_q.shape[1:]:
        raise ValueError(
            f"f_p and f_q must share (M, m); got {tuple(f_p.shape[1:])} and {tuple(f_q.shape[1:])}"
        )
    if f_p.shape[0] != f_q.shape[0]:
        raise ValueError(
            f"f_p and f_q must have the same number of draws; got {f_p.shape[0]} and {f_q.shape[0]}"
        )
    critic_options.setdefault("threshold", None)
    critic = LipschitzCritic(f_p.shape[1], dtype=f_p.dtype, device=f_p.device, **critic_options)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    train_value = critic.fit(f_p, f_q.to(f_p.dtype), generator=generator)
    if f_p_eval is None and f_q_eval is None:
        return train_value
    if f_p_eval is None or f_q_eval is None:
        raise ValueError("give both f_p_eval and f_q_eval, or neither")
    f_p_eval, f_q_eval = _as_draws(f_p_eval, "f_p_eval"), _as_draws(f_q_eval, "f_q_eval")
    with torch.no_grad():
        return float(critic(f_p_eval.to(f_p.dtype)).mean() - critic(f_q_eval.to(f_p.dtype)).mean())


def _as_draws(f: Any, name: str) -> torch.Tensor:
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(f).__name__}")
    if f.ndim == 2:
        f = f.unsqueeze(-1)
    if f.ndim != 3 or f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"{name} must have shape (S, M) or (S, M, m); got {tuple(f.shape)}")
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or inf")
    return f


@dataclass
class FunctionalPriorResult:
    """What :func:`fit_functional_prior` returns.

    Attributes:
        prior: the fitted prior (a copy; the prior handed in is left unchanged), bound
            to the network's parameters: pass it to ``BNN(net, prior=result.prior)``.
        w1: the ``W₁`` estimate at each outer iteration (on draws independent of the
            critic's training bag).
        critic_w1: the critic's estimate on its own training bag, each iteration.
        critic_steps: Adagrad steps the critic took each iteration (fewer than the
            budget where the threshold stopped it).
        x_mean: ``(d,)`` mean subtracted from ``x`` (zeros without standardisation).
        x_std: ``(d,)`` standard deviation ``x`` was divided by (ones without
            standardisation): the units the prior was fitted in.
        fit_result: the outer loop's :class:`~bayesfn.training.FitResult`.
        settings: the settings used.
    """

    prior: Prior
    w1: list[float]
    critic_w1: list[float]
    critic_steps: list[int]
    x_mean: torch.Tensor
    x_std: torch.Tensor
    fit_result: FitResult
    settings: dict[str, Any] = field(default_factory=dict)

    def plot(self, *, window: int = 10, ax: Any = None) -> Any:
        """Plot the ``W₁`` trace and its moving average over ``window`` iterations on
        ``ax`` (a new figure when ``None``); returns the Axes. Matplotlib is imported
        here, not at module import."""
        return plot_wasserstein_trace(self.w1, window=window, ax=ax)


def plot_wasserstein_trace(trace: Sequence[float], *, window: int = 10, ax: Any = None) -> Any:
    """Plot a ``W₁`` trace (one value per iteration) with its trailing moving average."""
    import numpy as np

    from bayesfn.plotting import _axes

    values = np.asarray(list(trace), dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"trace must be a non-empty sequence of numbers; got {len(values)} values")
    _check_int(window, "window", 1)
    ax = _axes(ax)
    steps = np.arange(1, values.size + 1)
    ax.plot(steps, values, color="0.7", lw=1, label="W₁ estimate")
    w = min(window, values.size)
    smooth = np.convolve(values, np.ones(w) / w, mode="valid")
    ax.plot(steps[w - 1 :], smooth, color="C0", lw=2, label=f"moving average ({w})")
    ax.set_xlabel("prior iteration")
    ax.set_ylabel("W₁ estimate")
    ax.legend()
    return ax


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")


def _resolve_target(target: Any) -> Any:
    if isinstance(target, str):
        return GPSampler(target)
    if not callable(getattr(target, "sample", None)):
        raise TypeError(
            "target must be a GPSampler, a kernel formula string, or an object with "
            f"sample(x, num, generator=) -> (num, n); got {type(target).__name__}"
        )
    return target


class _MeasurementSets:
    """``X_M``: ``k`` training inputs without replacement plus ``u`` uniform draws in the
    training inputs' bounding box."""

    def __init__(self, x: torch.Tensor, num_train: int, num_uniform: int) -> None:
        self.x = x
        self.k = min(num_train, x.shape[0])
        self.u = num_uniform
        self.low, self.high = x.amin(0), x.amax(0)

    @property
    def size(self) -> int:
        return self.k + self.u

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randperm(self.x.shape[0], generator=generator)[: self.k]
        parts = [self.x[idx.to(self.x.device)]]
        if self.u:
            r = torch.rand(self.u, self.x.shape[1], generator=generator, dtype=self.x.dtype)
            parts.append(self.low + r.to(self.x.device) * (self.high - self.low))
        return torch.cat(parts)


def fit_functional_prior(
    bnn_or_net: BNN | Network,
    prior: Prior | None,
    target: Any,
    x: Any,
    *,
    num_outputs: int | None = None,
    num_iterations: int = 200,
    critic_steps: int = 200,
    num_samples: int = 128,
    num_train_points: int = 70,
    num_uniform_points: int = 30,
    lr: float = 0.05,
    critic_lr: float = 0.02,
    critic_threshold: float | None = 0.1,
    critic_hidden: Sequence[int] = (200, 200),
    penalty: str = "gp",
    penalty_weight: float = 10.0,
    reset_critic_optimizer: bool = False,
    standardize: bool | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    progress_bar: bool = True,
    callbacks: Sequence[Callable[[StepInfo], bool | None]] = (),
) -> FunctionalPriorResult:
    """Fit a weight prior whose induced functions match a target GP in ``W₁``.

    Args:
        bnn_or_net: a :class:`~bayesfn.bayesnn.BNN` (its net, dtype, device and input
            standardisation are used, and its prior when ``prior`` is ``None``) or a
            network such as :class:`~bayesfn.bayesnn.MLP`.
        prior: the prior to fit, e.g. ``GaussianPrior()`` (GPi-G), ``GaussianPrior(
            per="parameter")``, ``HierarchicalPrior()`` (GPi-H) or ``FlowPrior()``. It is
            copied; the fitted copy is ``result.prior``.
        target: a :class:`~bayesfn.covariance.GPSampler` (fixed or hierarchical
            hyperparameters), a kernel formula such as ``"rbf"`` (unit lengthscale and
            variance), or any object with ``sample(x (n, d), num, generator=) ->
            (num, n)``.
        x: ``(n, d)`` training inputs, in the original units; they are standardised as
            the BNN will standardise them (see ``standardize``).
        num_outputs: ``m``, the network's outputs (default: 1; the number of classes
            for a classifier, which must then be given).
        num_iterations: outer iterations (RMSprop steps on the prior).
        critic_steps: Adagrad steps of the critic per outer iteration.
        num_samples: ``S``, network and GP draws per bag.
        num_train_points: training inputs per measurement set (all when fewer).
        num_uniform_points: uniform draws in the training inputs' bounding box per
            measurement set.
        lr: RMSprop's learning rate on the prior's hyperparameters.
        critic_lr: Adagrad's learning rate on the critic.
        critic_threshold: stop the critic's training once its gradient norm falls
            below this (``None``: always ``critic_steps``).
        critic_hidden: the critic's hidden widths.
        penalty: ``"gp"`` (WGAN-GP), ``"lp"`` (one-sided) or ``"clip"``.
        penalty_weight: ``λ``.
        reset_critic_optimizer: restart Adagrad with the critic each iteration
            (``False``: the official code's carried-over state).
        standardize: standardise ``x`` with its mean and std before measuring (default:
            the BNN's own setting; ``True`` for a bare network, as ``BNN`` defaults).
        dtype: default: the BNN's; float32 for a bare network.
        device: default: the BNN's; the CPU for a bare network.
        seed: seeds measurement sets, draws and critic initialisations.
        progress_bar: show a ``tqdm`` bar.
        callbacks: called after every outer iteration with a
            :class:`~bayesfn.training.StepInfo` (``loss`` is that iteration's ``W₁``).

    Returns:
        A :class:`FunctionalPriorResult`.

    Example:
        >>> gp = GPSampler("rbf", lengthscale=0.6)
        >>> res = fit_functional_prior(MLP((50, 50)), GaussianPrior(), gp, x_train)
        >>> bnn = BNN(MLP((50, 50)), prior=res.prior).fit(x_train, y_train)
    """
    if isinstance(bnn_or_net, BNN):
        bnn = bnn_or_net
        net = bnn.net
        prior = bnn.prior if prior is None else prior
        standardize = bnn.standardize if standardize is None else standardize
        dtype = bnn.dtype if dtype is None else dtype
        device = bnn.device if device is None else device
        if num_outputs is None and bnn.likelihood.task == "classification":
            raise ValueError("num_outputs must be given for a classifier: the number of classes")
    elif isinstance(bnn_or_net, Network):
        net = bnn_or_net
        standardize = True if standardize is None else standardize
    else:
        raise TypeError(
            f"bnn_or_net must be a BNN or a Network (MLP, CNN); got {type(bnn_or_net).__name__}"
        )
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a bayesfn.bayesnn Prior; got {type(prior).__name__}")
    target = _resolve_target(target)
    num_outputs = 1 if num_outputs is None else num_outputs
    _check_int(num_outputs, "num_outputs", 1)
    for value, name, minimum in (
        (num_iterations, "num_iterations", 1),
        (critic_steps, "critic_steps", 0),
        (num_samples, "num_samples", 2),
        (num_train_points, "num_train_points", 0),
        (num_uniform_points, "num_uniform_points", 0),
    ):
        _check_int(value, name, minimum)
    if num_train_points + num_uniform_points < 1:
        raise ValueError("num_train_points + num_uniform_points must be at least 1")
    _check_positive(lr, "lr")
    dtype = resolve_dtype(dtype, torch.float32)
    device = resolve_device(device)
    x = check_inputs(x, dtype=dtype, device=device)
    if standardize:
        x_mean, x_std = x.mean(0), _safe_std(x)
    else:
        x_mean, x_std = torch.zeros_like(x[0]), torch.ones_like(x[0])
    xs = (x - x_mean) / x_std

    module = net.build(x.shape[1], num_outputs).to(dtype=dtype, device=device)
    module.requires_grad_(False)
    prior = copy.deepcopy(prior).bind(module, dtype=dtype, device=device)
    if not any(p.requires_grad for p in prior.parameters()):
        raise ValueError(f"the {type(prior).__name__} has no trainable hyperparameters to fit")
    sets = _MeasurementSets(xs, num_train_points, num_uniform_points)
    critic = LipschitzCritic(
        sets.size,
        hidden=critic_hidden,
        penalty=penalty,
        penalty_weight=penalty_weight,
        lr=critic_lr,
        steps=critic_steps,
        threshold=critic_threshold,
        reset_optimizer=reset_critic_optimizer,
        dtype=dtype,
        device=device,
    )
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    generator = torch.Generator().manual_seed(seed)
    critic_w1: list[float] = []

    def network_draws(xm: torch.Tensor) -> torch.Tensor:  # (S, M, m), differentiable in ψ
        weights = prior.rsample(num_samples, generator=generator)
        return batched_forward(module, weights, xm)

    def target_draws(xm: torch.Tensor) -> torch.Tensor:  # (S, M, m) independent GP draws
        f = target.sample(xm, num_samples * num_outputs, generator=generator)
        if f.shape != (num_samples * num_outputs, xm.shape[0]):
            raise ValueError(
                f"target.sample must return (num, n) = "
                f"{(num_samples * num_outputs, xm.shape[0])}; got {tuple(f.shape)}"
            )
        f = f.to(dtype=dtype, device=device).reshape(num_samples, num_outputs, xm.shape[0])
        return f.transpose(-1, -2)

    def loss_fn(batch: tuple) -> torch.Tensor:
        xm = sets.draw(generator)
        with torch.no_grad():
            bag_nn = network_draws(xm)
        bag_gp = target_draws(xm)
        critic_w1.append(critic.fit(bag_nn, bag_gp, generator=generator))
        f_nn, f_gp = network_draws(xm), target_draws(xm)
        return critic.frozen(f_nn).mean() - critic.frozen(f_gp).mean()

    settings = {
        "num_outputs": num_outputs,
        "num_iterations": num_iterations,
        "critic_steps": critic_steps,
        "num_samples": num_samples,
        "num_train_points": sets.k,
        "num_uniform_points": num_uniform_points,
        "lr": lr,
        "critic_lr": critic_lr,
        "critic_threshold": critic_threshold,
        "critic_hidden": list(critic_hidden),
        "penalty": penalty,
        "penalty_weight": penalty_weight,
        "reset_critic_optimizer": reset_critic_optimizer,
        "standardize": bool(standardize),
        "seed": seed,
        "target": target.get_config() if hasattr(target, "get_config") else repr(target),
    }
    result = optimize(
        prior,
        loss_fn,
        max_steps=num_iterations,
        optimizer=lambda params: torch.optim.RMSprop(params, lr=lr),
        seed=seed,
        callbacks=callbacks,
        progress_bar=progress_bar,
        desc="functional prior (W1)",
    )
    return FunctionalPriorResult(
        prior=prior,
        w1=list(result.losses),
        critic_w1=critic_w1,
        critic_steps=list(critic.steps_taken),
        x_mean=x_mean,
        x_std=x_std,
        fit_result=result,
        settings=settings,
    )
