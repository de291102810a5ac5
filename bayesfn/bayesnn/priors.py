"""Weight priors of weight-space BNNs (Tran et al., JMLR 2022, §3).

A prior is bound to a network's parameters by name (:meth:`Prior.bind`) and then
covers exactly those: a parameter it does not know, or one it knows with another
shape, is an error, never a parameter silently left without a prior.

Every prior groups parameters *per tensor*: each layer's weight matrix is one group and
its bias vector another (the paper's "one standard deviation per layer for weights and
one for biases"); ``per="parameter"`` gives every entry its own hyperparameter.

* :class:`GaussianPrior`: ``w ~ N(0, s²)``. Unfitted it is the paper's fixed N(0, 1)
  prior (FG); fitted by :func:`~bayesfn.bayesnn.fit_functional_prior` it is the
  GP-induced Gaussian prior (GPi-G).
* :class:`HierarchicalPrior`: per group, a precision ``λ ~ Gamma(α, β)`` and
  ``w | λ ~ N(0, 1/λ)`` (FH; GPi-H when ``α, β`` are fitted). Inside a sampler ``λ`` is
  a latent variable per chain, updated by the conjugate Gibbs step :meth:`gibbs`.
* :class:`FlowPrior`: per layer, planar normalising flows on ``vec([b; W])`` over a
  diagonal Gaussian base, with an exact log density (fixed NF, or GPi-NF when fitted).

Hyperparameters are kept through a softplus of raw values, initialised with the exact
inverse so that ``std=1.0`` really is ``N(0, 1)``.

Shapes: ``params`` dicts map each parameter name to a ``(K, *shape)`` tensor for ``K``
samples (chains); log densities are ``(K,)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bayesfn._random import standard_gamma
from bayesfn.model import Component

__all__ = ["FlowPrior", "GaussianPrior", "HierarchicalPrior", "Prior"]

_PER = ("layer", "parameter")


def softplus_inverse(y: float | torch.Tensor) -> torch.Tensor:
    """``x`` with ``softplus(x) = y`` for ``y > 0``, accurate for small and large ``y``."""
    y = torch.as_tensor(y, dtype=torch.float64)
    return y + torch.log(-torch.expm1(-y))


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys cannot contain dots


class Prior(nn.Module, Component, abc.ABC):
    """Base of weight priors. Subclasses implement :meth:`_build`, :meth:`rsample` and
    :meth:`log_prob`; hierarchical ones also :meth:`init_state` and :meth:`gibbs`."""

    #: whether the prior has latent variables that a sampler updates by Gibbs steps
    is_hierarchical: bool = False

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self._shapes: dict[str, torch.Size] = {}

    # ------------------------------------------------------------ binding
    @property
    def is_bound(self) -> bool:
        return bool(self._shapes)

    @property
    def shapes(self) -> dict[str, torch.Size]:
        """The parameter shapes the prior covers, by name (empty until bound)."""
        return dict(self._shapes)

    def bind(
        self,
        shapes: Mapping[str, Sequence[int]] | nn.Module,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Prior:
        """Cover the parameters ``shapes`` (a name → shape mapping, or a module whose
        parameters are taken). Binding again to the same shapes keeps the fitted
        hyperparameters; other shapes are an error. Returns ``self``."""
        if isinstance(shapes, nn.Module):
            shapes = {n: p.shape for n, p in shapes.named_parameters()}
        new = {str(n): torch.Size(s) for n, s in shapes.items()}
        if not new:
            raise ValueError("shapes is empty: a prior must cover at least one parameter")
        if self._shapes:
            if new != self._shapes:
                raise ValueError(
                    f"this {type(self).__name__} is bound to parameters "
                    f"{_describe(self._shapes)}; it cannot cover {_describe(new)}"
                )
        else:
            self._shapes = new
            self._build(new)
        if dtype is not None or device is not None:
            self.to(dtype=dtype, device=device)
        return self

    @abc.abstractmethod
    def _build(self, shapes: dict[str, torch.Size]) -> None:
        """Create the hyperparameters for these parameter shapes."""

    def check_covers(self, params: Mapping[str, torch.Tensor], *, sample_dims: int = 1) -> None:
        """Raise ``ValueError`` unless ``params`` are exactly the bound parameters, each
        with ``sample_dims`` leading sample dimensions."""
        if not self._shapes:
            raise ValueError(f"this {type(self).__name__} is not bound; call bind() first")
        extra = sorted(set(params) - set(self._shapes))
        if extra:
            raise ValueError(f"the prior does not cover parameter(s) {extra}")
        missing = sorted(set(self._shapes) - set(params))
        if missing:
            raise ValueError(f"params lack parameter(s) {missing} that the prior covers")
        for name, value in params.items():
            if value.shape[sample_dims:] != self._shapes[name]:
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(value.shape)}; the prior expects "
                    f"{sample_dims} sample dim(s) + {tuple(self._shapes[name])}"
                )

    def _group_shape(self, name: str) -> torch.Size:
        return self._shapes[name] if self.per == "parameter" else torch.Size()

    # ------------------------------------------------------------ densities
    @abc.abstractmethod
    def rsample(
        self, num: int, *, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``num`` joint draws of all parameters, ``(num, *shape)`` each, with pathwise
        gradients to the hyperparameters (what Wasserstein fitting differentiates)."""

    def sample(self, num: int, *, generator: torch.Generator | None = None):
        """As :meth:`rsample`, without gradients."""
        with torch.no_grad():
            return self.rsample(num, generator=generator)

    @abc.abstractmethod
    def log_prob(
        self,
        params: Mapping[str, torch.Tensor],
        state: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(K,)`` log prior density of ``K`` parameter sets ``(K, *shape)``.

        For a hierarchical prior, ``state`` holds the latent precisions per chain (the
        density is then conditional on them); without it, the density is the marginal
        over them.
        """

    # ------------------------------------------------------------ latent state
    def init_state(
        self, num_chains: int, *, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Latent variables of ``num_chains`` chains (none for non-hierarchical priors)."""
        return {}

    def gibbs(
        self,
        params: Mapping[str, torch.Tensor],
        state: Mapping[str, torch.Tensor],
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One exact draw of the latent variables given the weights (identity here)."""
        return dict(state)


def _describe(shapes: Mapping[str, torch.Size]) -> str:
    return "{" + ", ".join(f"{n}: {tuple(s)}" for n, s in shapes.items()) + "}"


def _check_per(per: str) -> None:
    if per not in _PER:
        raise ValueError(f"per must be one of {_PER}; got {per!r}")


def _check_positive(value: float, name: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")


class GaussianPrior(Prior):
    """``w ~ N(0, s_g²)`` independently, one scale ``s_g`` per group.

    Args:
        std: the initial scale of every group (``1.0``: the paper's fixed N(0, 1)).
        per: ``"layer"`` (one scale per parameter tensor) or ``"parameter"`` (one per
            entry).
    """

    def __init__(self, std: float = 1.0, *, per: str = "layer") -> None:
        super().__init__()
        _check_positive(std, "std")
        _check_per(per)
        self.std = std
        self.per = per

    def _build(self, shapes: dict[str, torch.Size]) -> None:
        raw = float(softplus_inverse(self.std))
        self.raw_std = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.full(self._group_shape(n), raw)) for n in shapes}
        )

    def scales(self) -> dict[str, torch.Tensor]:
        """The current scale ``s_g`` of each parameter (scalar or parameter-shaped)."""
        return {n: F.softplus(self.raw_std[_key(n)]) for n in self._shapes}

    def rsample(self, num, *, generator=None):
        if not self._shapes:
            raise ValueError("this GaussianPrior is not bound; call bind() first")
        out = {}
        for name, s in self.scales().items():
            z = torch.randn(
                (num, *self._shapes[name]), generator=generator, dtype=s.dtype, device=s.device
            )
            out[name] = s * z
        return out

    def log_prob(self, params, state=None):
        self.check_covers(params)
        total = 0.0
        for name, s in self.scales().items():
            w = params[name]
            s = s.to(w.dtype)
            lp = -0.5 * (w / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)
            total = total + lp.flatten(1).sum(-1)
        return total


class HierarchicalPrior(Prior):
    """Per group ``g``: precision ``λ_g ~ Gamma(α_g, β_g)`` (rate ``β``) and
    ``w_g | λ_g ~ N(0, 1/λ_g)``, so the variance ``1/λ_g`` is inverse-gamma.

    Args:
        concentration: initial ``α`` of every group (the paper's fixed prior: 1).
        rate: initial ``β`` of every group (the paper's fixed prior: 1).
        per: ``"layer"`` (one precision per parameter tensor) or ``"parameter"``.

    Inside a sampler the precisions are per-chain latent variables (``state["<name>"]``,
    ``(C, *group_shape)``), refreshed by :meth:`gibbs`:
    ``λ_g | w ~ Gamma(α_g + n_g / 2, β_g + Σ w_g² / 2)`` with ``n_g`` the group's size.
    Without a state, :meth:`log_prob` is the marginal (a multivariate Student-t per group).
    """

    is_hierarchical = True

    def __init__(self, concentration: float = 1.0, rate: float = 1.0, *, per: str = "layer"):
        super().__init__()
        _check_positive(concentration, "concentration")
        _check_positive(rate, "rate")
        _check_per(per)
        self.concentration = concentration
        self.rate = rate
        self.per = per

    def _build(self, shapes: dict[str, torch.Size]) -> None:
        a, b = float(softplus_inverse(self.concentration)), float(softplus_inverse(self.rate))
        self.raw_concentration = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.full(self._group_shape(n), a)) for n in shapes}
        )
        self.raw_rate = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.full(self._group_shape(n), b)) for n in shapes}
        )

    def hyperparameters(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``(α_g, β_g)`` of each parameter's group."""
        return {
            n: (F.softplus(self.raw_concentration[_key(n)]), F.softplus(self.raw_rate[_key(n)]))
            for n in self._shapes
        }

    def _group_size(self, name: str) -> int:
        return 1 if self.per == "parameter" else math.prod(self._shapes[name])

    def _reduce(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Sum a ``(K, *shape)`` tensor over each group: ``(K, *group_shape)``."""
        return t if self.per == "parameter" else t.flatten(1).sum(-1)

    def _expand(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Broadcast a ``(K, *group_shape)`` tensor over the parameter's entries."""
        if self.per == "parameter":
            return t
        return t.reshape(-1, *([1] * len(self._shapes[name])))

    def rsample(self, num, *, generator=None):
        if not self._shapes:
            raise ValueError("this HierarchicalPrior is not bound; call bind() first")
        out = {}
        for name, (a, b) in self.hyperparameters().items():
            # torch's Gamma.rsample has pathwise gradients but takes no generator: draw it
            # under a seed taken from the generator, so that draws stay reproducible
            seed = int(torch.randint(0, 2**62, (), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                lam = torch.distributions.Gamma(a, b).rsample((num,))
            z = torch.randn(
                (num, *self._shapes[name]), generator=generator, dtype=a.dtype, device=a.device
            )
            out[name] = z / torch.sqrt(self._expand(name, lam))
        return out

    def log_prob(self, params, state=None):
        self.check_covers(params)
        total = 0.0
        for name, (a, b) in self.hyperparameters().items():
            w = params[name]
            a, b = a.to(w.dtype), b.to(w.dtype)
            sq = self._reduce(name, w**2)
            n = self._group_size(name)
            if state is not None:
                lam = state[name].to(w.dtype)
                lp = 0.5 * n * (torch.log(lam) - math.log(2 * math.pi)) - 0.5 * lam * sq
            else:  # ∫ N(w; 0, 1/λ) Gamma(λ; α, β) dλ in closed form
                lp = (
                    torch.lgamma(a + 0.5 * n)
                    - torch.lgamma(a)
                    + a * torch.log(b)
                    - (a + 0.5 * n) * torch.log(b + 0.5 * sq)
                    - 0.5 * n * math.log(2 * math.pi)
                )
            total = total + lp.reshape(lp.shape[0], -1).sum(-1)
        return total

    def log_prob_state(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(C,)`` log density of the latent precisions under their Gamma prior."""
        total = 0.0
        for name, (a, b) in self.hyperparameters().items():
            lam = state[name]
            a, b = a.to(lam.dtype), b.to(lam.dtype)
            lp = a * torch.log(b) - torch.lgamma(a) + (a - 1) * torch.log(lam) - b * lam
            total = total + lp.reshape(lp.shape[0], -1).sum(-1)
        return total

    def init_state(self, num_chains, *, generator=None):
        with torch.no_grad():
            return {
                n: standard_gamma(a.expand(num_chains, *a.shape).contiguous(), generator=generator)
                / b
                for n, (a, b) in self.hyperparameters().items()
            }

    def gibbs(self, params, state, *, generator=None):
        self.check_covers(params)
        new = {}
        with torch.no_grad():
            for name, (a, b) in self.hyperparameters().items():
                w = params[name].detach()
                a, b = a.to(w.dtype), b.to(w.dtype)
                post_a = a + 0.5 * self._group_size(name)
                post_b = b + 0.5 * self._reduce(name, w**2)
                post_a = post_a.expand(post_b.shape).contiguous()
                new[name] = standard_gamma(post_a, generator=generator) / post_b
        return new


def _layer_of(name: str) -> str:
    """The layer a parameter belongs to: ``"layers.0"`` for ``"layers.0.weight"``."""
    head, _, tail = name.rpartition(".")
    return head if head and tail in ("weight", "bias") else name


class FlowPrior(Prior):
    """A normalising-flow prior per layer, with an exact log density.

    Per layer ``l``, ``v_l = vec([b_l; W_l]) ∈ R^{D_l}`` (bias entries first, then the
    weight's, row-major) is ``v_l = f_K ∘ … ∘ f_1(z)`` with a diagonal Gaussian base
    ``z ~ N(0, diag(σ_l²))`` (learned log-variance, mean fixed at 0) and ``K`` planar
    flows (Rezende & Mohamed, 2015)

    ``f_k(z) = z + û_k tanh(w_kᵀ z + c_k)``,

    with ``û_k = u_k + (softplus(w_kᵀu_k) − 1 − w_kᵀu_k) w_k / ‖w_k‖²``, so that
    ``w_kᵀû_k > −1`` and each ``f_k`` is a bijection of ``R^D``. Tran et al. (2022) use
    ``K = 4``.

    The density is exact: :meth:`log_prob` inverts each flow (``w_kᵀz`` solves the
    scalar equation ``α + (w_kᵀû_k) tanh(α + c_k) = w_kᵀv``, strictly increasing in
    ``α``, solved by bisection in float64 to machine precision and refined by one
    Newton step that carries the implicit-function gradient), evaluates the base density
    at the inverse and subtracts ``Σ_k log|det ∂f_k/∂z| = Σ_k log(1 + (w_kᵀû_k)
    sech²(w_kᵀz + c_k))``. (The official code evaluates the base density at the forward
    image and detaches the log-determinants; notes A4.6.)

    Args:
        num_flows: ``K``, planar flows per layer.
        std: the base standard deviation at initialisation (``1.0``: with ``init_scale``
            small the prior starts close to N(0, 1)).
        init_scale: flow parameters ``u_k``, ``w_k`` start as ``N(0, init_scale²)``
            draws; the offsets ``c_k`` start at 0.
        seed: seeds that initialisation, so a prior is reproducible from its settings.

    Parameters that are not a layer's ``weight`` / ``bias`` form a flow of their own.
    """

    def __init__(
        self, num_flows: int = 4, std: float = 1.0, *, init_scale: float = 0.01, seed: int = 0
    ) -> None:
        super().__init__()
        if isinstance(num_flows, bool) or not isinstance(num_flows, int) or num_flows < 0:
            raise ValueError(f"num_flows must be a non-negative integer; got {num_flows!r}")
        _check_positive(std, "std")
        _check_positive(init_scale, "init_scale")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        self.num_flows = num_flows
        self.std = std
        self.init_scale = init_scale
        self.seed = seed

    def _build(self, shapes: dict[str, torch.Size]) -> None:
        groups: dict[str, list[str]] = {}
        for name in shapes:
            groups.setdefault(_layer_of(name), []).append(name)
        # [b; W]: bias entries first
        self._groups = {
            g: sorted(names, key=lambda n: (not n.endswith("bias"), n))
            for g, names in groups.items()
        }
        gen = torch.Generator().manual_seed(self.seed)
        k = self.num_flows
        log_var, u, w, c = {}, {}, {}, {}
        for g, names in self._groups.items():
            size = sum(math.prod(shapes[n]) for n in names)
            log_var[_key(g)] = nn.Parameter(torch.full((size,), 2 * math.log(self.std)))
            u[_key(g)] = nn.Parameter(self.init_scale * torch.randn(k, size, generator=gen))
            w[_key(g)] = nn.Parameter(self.init_scale * torch.randn(k, size, generator=gen))
            c[_key(g)] = nn.Parameter(torch.zeros(k))
        self.log_var = nn.ParameterDict(log_var)
        self.flow_u = nn.ParameterDict(u)
        self.flow_w = nn.ParameterDict(w)
        self.flow_c = nn.ParameterDict(c)

    @property
    def groups(self) -> dict[str, list[str]]:
        """Layer name → the parameter names its flow covers, in ``vec`` order."""
        if not self._shapes:
            raise ValueError("this FlowPrior is not bound; call bind() first")
        return {g: list(n) for g, n in self._groups.items()}

    def _flow(self, group: str, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(û_k, w_k, c_k)`` of a layer, with ``û_k`` made invertible."""
        u, w = self.flow_u[_key(group)][k], self.flow_w[_key(group)][k]
        wu = w @ u
        u_hat = u + (F.softplus(wu) - 1 - wu) * w / w.square().sum().clamp_min(1e-30)
        return u_hat, w, self.flow_c[_key(group)][k]

    def forward_flow(self, group: str, z: torch.Tensor) -> torch.Tensor:
        """``v = f_K ∘ … ∘ f_1(z)`` for base points ``z (N, D)`` of layer ``group``."""
        for k in range(self.num_flows):
            u_hat, w, c = self._flow(group, k)
            z = z + u_hat * torch.tanh(z @ w.to(z.dtype) + c.to(z.dtype)).unsqueeze(-1)
        return z

    def inverse_flow(self, group: str, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The base point ``z (N, D)`` of ``v (N, D)`` and ``(N,)``
        ``Σ_k log|det ∂f_k/∂z|`` along the way."""
        log_det = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
        for k in reversed(range(self.num_flows)):
            u_hat, w, c = self._flow(group, k)
            u_hat, w, c = u_hat.to(v.dtype), w.to(v.dtype), c.to(v.dtype)
            s = w @ u_hat  # > -1
            target = v @ w
            alpha = _solve_planar(s.detach(), c.detach(), target.detach())
            # one Newton step from the (detached) root: same value, implicit gradients
            t = torch.tanh(alpha + c)
            slope = 1 + s * (1 - t.square())
            alpha = alpha - (alpha + s * t - target) / slope
            t = torch.tanh(alpha + c)
            v = v - u_hat * t.unsqueeze(-1)
            log_det = log_det + torch.log1p(s * (1 - t.square()))
        return v, log_det

    def rsample(self, num, *, generator=None):
        if not self._shapes:
            raise ValueError("this FlowPrior is not bound; call bind() first")
        out = {}
        for g, names in self._groups.items():
            log_var = self.log_var[_key(g)]
            eps = torch.randn(
                num,
                log_var.shape[0],
                generator=generator,
                dtype=log_var.dtype,
                device=log_var.device,
            )
            v = self.forward_flow(g, eps * torch.exp(0.5 * log_var))
            start = 0
            for n in names:
                size = math.prod(self._shapes[n])
                out[n] = v[:, start : start + size].reshape(num, *self._shapes[n])
                start += size
        return out

    def log_prob(self, params, state=None):
        self.check_covers(params)
        total = 0.0
        for g, names in self._groups.items():
            v = torch.cat([params[n].flatten(1) for n in names], dim=1)
            z, log_det = self.inverse_flow(g, v)
            log_var = self.log_var[_key(g)].to(v.dtype)
            base = -0.5 * (z.square() * torch.exp(-log_var) + log_var + math.log(2 * math.pi))
            total = total + base.sum(-1) - log_det
        return total


def _solve_planar(
    s: torch.Tensor, c: torch.Tensor, target: torch.Tensor, iterations: int = 80
) -> torch.Tensor:
    """The root ``α`` of ``α + s tanh(α + c) = target`` (``s > −1``: strictly increasing),
    by bisection on ``[target − |s|, target + |s|]`` in float64; shape of ``target``."""
    dtype = target.dtype
    s, c, t = s.double(), c.double(), target.double()
    lo, hi = t - s.abs() - 1e-12, t + s.abs() + 1e-12
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        above = mid + s * torch.tanh(mid + c) > t
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return (0.5 * (lo + hi)).to(dtype)
