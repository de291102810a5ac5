"""Input (leaf) layers: ``K`` univariate units on each of ``L`` leaf regions, folded.

Every layer answers the questions a circuit needs of its leaves, for the plain
(vector) evaluation of ``c(x)`` and for the squared (matrix) evaluation of ``∫ c cᵀ``:

================================= ======================== ==========================
question                          vector form ``(L, B, K)`` matrix form ``(L, ·, K, K)``
================================= ======================== ==========================
density at ``x``                  ``f_i(x)``                ``f_i(x) f_j(x)``
CDF at ``t``                      ``∫_{-∞}^t f_i``          ``∫_{-∞}^t f_i f_j``
``k``-th moment (``k = 0`` is     ``∫ x^k f_i``             ``∫ x^k f_i f_j``
marginalisation)
================================= ======================== ==========================

All results are signed-log pairs ``(log|v|, sign v)``. Units are normalised densities
(or mass functions), so marginalising a unit of a monotonic circuit gives 1 — except in a
*signed* layer (``signed = True``, only inside squared circuits), whose units are real
functions of either sign that the squared circuit's partition function normalises; such
a layer answers the vector-form questions through :meth:`InputLayer.density` and the
matrix-form ones as usual.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

from bayesfn.kernels import signed_log

__all__ = [
    "BernoulliInput",
    "BinomialInput",
    "CategoricalInput",
    "GaussianInput",
    "InputLayer",
    "SplineInput",
]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _pos(log: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-log pair of a non-negative quantity given by its log."""
    return log, torch.where(torch.isneginf(log), torch.zeros_like(log), torch.ones_like(log))


class InputLayer(nn.Module, abc.ABC):
    """Abstract base: ``num_units`` units on each leaf region ``l`` over variable
    ``variables[l]``.

    Args:
        variables: ``(L,)`` long tensor, the variable of each leaf region.
        num_units: ``K``.
    """

    discrete: bool = False
    #: units may take negative values (then only :meth:`density`, the matrix form and
    #: the moments are defined; squared circuits alone use signed layers)
    signed: bool = False

    def __init__(self, variables: torch.Tensor, num_units: int) -> None:
        super().__init__()
        self.register_buffer("variables", torch.as_tensor(variables, dtype=torch.long))
        self.num_units = int(num_units)

    def _leaf_data(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each leaf's column of ``x`` ``(n, L)``, its mean ``(L,)`` and standard deviation
        ``(L,)`` (at least 1e-3; 1 for a single example), for data-dependent starts."""
        xs = x[:, self.variables]
        std = xs.std(0).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones_like(xs[0])
        return xs, xs.mean(0), std

    @property
    def num_leaves(self) -> int:
        return int(self.variables.shape[0])

    # vector form ------------------------------------------------------------
    @abc.abstractmethod
    def log_density(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(L, B)`` values of each leaf's variable → ``(L, B, K)`` log densities.

        Every method takes an optional ``index``: ``(L',)`` leaf rows to evaluate (then
        ``x`` is ``(L', B)`` and results have ``L'`` rows)."""

    def density(
        self, x: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, B)`` → signed-log ``(L, B, K)`` of the unit values ``f_i(x)``."""
        return _pos(self.log_density(x, index))

    def _coefficients(self, shape: tuple[int, ...], signed: bool, dtype: torch.dtype) -> None:
        """The units' coefficients over their last axis (states, bases): real ``coef``
        of either sign (from ``1/n``) for a signed layer, else ``logits`` normalised by
        softmax."""
        self.signed = bool(signed)
        if self.signed:
            self.coef = nn.Parameter(torch.full(shape, 1.0 / shape[-1], dtype=dtype))
        else:
            self.logits = nn.Parameter(torch.zeros(shape, dtype=dtype))

    def _refuse_signed(self, what: str) -> None:
        """Raise ``TypeError`` for a vector-form question a signed layer cannot answer."""
        if self.signed:
            raise TypeError(
                f"a signed {type(self).__name__} has no {what}: its units are not "
                "distributions (use density() or the matrix form, as squared circuits do)"
            )

    @abc.abstractmethod
    def log_cdf(self, t: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``t``: ``(L, B)`` → ``(L, B, K)`` log ``P(X ≤ t)`` under each unit."""

    @abc.abstractmethod
    def moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed-log ``(L, K)`` of ``∫ x^k f_i(x) dx``."""

    # matrix form ------------------------------------------------------------
    def gram_density(
        self, x: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, B)`` → signed-log ``(L, B, K, K)`` of ``f_i(x) f_j(x)``."""
        log, sign = self.density(x, index)
        return log.unsqueeze(-1) + log.unsqueeze(-2), sign.unsqueeze(-1) * sign.unsqueeze(-2)

    @abc.abstractmethod
    def gram_cdf(
        self, t: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, B)`` → signed-log ``(L, B, K, K)`` of ``∫_{-∞}^t f_i f_j``."""

    @abc.abstractmethod
    def gram_moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed-log ``(L, K, K)`` of ``∫ x^k f_i(x) f_j(x) dx``."""

    # support -------------------------------------------------------------------
    @abc.abstractmethod
    def support(self, variable: int) -> tuple[float, float]:
        """A bracket ``(low, high)`` holding all but a negligible mass of ``variable``
        (for discrete layers: the first and last state)."""

    def check_values(self, x: torch.Tensor, name: str) -> None:
        """Raise ``ValueError`` naming ``name`` for values outside the domain."""


class GaussianInput(InputLayer):
    """Univariate normal units ``N(x; μ_lk, σ_lk²)`` with ``σ = exp(log_sigma)``.

    Products of two normals are scaled normals:
    ``N(x; μ_i, σ_i²) N(x; μ_j, σ_j²) = N(μ_i; μ_j, σ_i² + σ_j²) N(x; μ_ij, σ_ij²)`` with
    ``σ_ij² = σ_i² σ_j² / (σ_i² + σ_j²)`` and ``μ_ij = (μ_i σ_j² + μ_j σ_i²) / (σ_i² + σ_j²)``,
    which gives every matrix-form quantity in closed form.
    """

    def __init__(
        self, variables: torch.Tensor, num_units: int, *, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__(variables, num_units)
        shape = (self.num_leaves, self.num_units)
        self.mu = nn.Parameter(torch.zeros(shape, dtype=dtype))
        self.log_sigma = nn.Parameter(torch.zeros(shape, dtype=dtype))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Means at random training values of each leaf's variable, scales at a
        fraction of that variable's standard deviation."""
        xs, _, std = self._leaf_data(x)
        idx = torch.randint(0, x.shape[0], (self.num_leaves, self.num_units), generator=generator)
        self.mu.copy_(xs.T.gather(1, idx.to(x.device)))
        self.log_sigma.copy_((0.5 * std).log().to(self.mu.dtype).unsqueeze(-1).expand_as(self.mu))

    @torch.no_grad()
    def init_centred(
        self, x: torch.Tensor, generator: torch.Generator, scales: torch.Tensor
    ) -> None:
        """Means at each variable's data mean plus ``N(0, 0.1²)`` standard deviations of
        jitter, unit ``k``'s scale ``scales[k]`` (``(K,)``) times the variable's standard
        deviation: nested units, wide to narrow, for subtractive starts."""
        _, mean, std = self._leaf_data(x)
        jitter = torch.randn(self.mu.shape, generator=generator, dtype=torch.float64)
        jitter = jitter.to(x.device, x.dtype)
        self.mu.copy_((mean.unsqueeze(-1) + 0.1 * std.unsqueeze(-1) * jitter).to(self.mu.dtype))
        self.log_sigma.copy_((std.unsqueeze(-1) * scales.to(std)).log().to(self.mu.dtype))

    def _params(self, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if index is None:
            return self.mu, self.log_sigma
        return self.mu[index], self.log_sigma[index]

    def log_density(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        mu, log_sigma = self._params(index)
        z = (x.unsqueeze(-1) - mu.unsqueeze(1)) / log_sigma.exp().unsqueeze(1)
        return -0.5 * z**2 - log_sigma.unsqueeze(1) - _LOG_SQRT_2PI

    def log_cdf(self, t: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        mu, log_sigma = self._params(index)
        z = (t.unsqueeze(-1) - mu.unsqueeze(1)) / log_sigma.exp().unsqueeze(1)
        return torch.special.log_ndtr(z)

    def moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self._params(index)
        var = (2 * log_sigma).exp()
        if k == 0:
            return _pos(torch.zeros_like(mu))
        if k == 1:
            return signed_log(mu)
        if k == 2:
            return _pos((mu**2 + var).log())
        raise ValueError(f"moment order k must be 0, 1 or 2; got {k}")

    def _products(
        self, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L, K, K)`` log scale ``log N(μ_i; μ_j, σ_i² + σ_j²)``, mean ``μ_ij`` and
        standard deviation ``σ_ij`` of the product of units ``i`` and ``j``."""
        mu, log_sigma = self._params(index)
        mu_i, mu_j = mu.unsqueeze(-1), mu.unsqueeze(-2)
        v = (2 * log_sigma).exp()
        v_i, v_j = v.unsqueeze(-1), v.unsqueeze(-2)
        s = v_i + v_j
        log_scale = -0.5 * (mu_i - mu_j) ** 2 / s - 0.5 * s.log() - _LOG_SQRT_2PI
        mean = (mu_i * v_j + mu_j * v_i) / s
        std = (v_i * v_j / s).sqrt()
        return log_scale, mean, std

    def gram_cdf(
        self, t: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, mean, std = self._products(index)
        z = (t[..., None, None] - mean.unsqueeze(1)) / std.unsqueeze(1)
        return _pos(log_scale.unsqueeze(1) + torch.special.log_ndtr(z))

    def gram_moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, mean, std = self._products(index)
        if k == 0:
            return _pos(log_scale)
        if k == 1:
            ml, ms = signed_log(mean)
            return log_scale + ml, ms
        if k == 2:
            return _pos(log_scale + (mean**2 + std**2).log())
        raise ValueError(f"moment order k must be 0, 1 or 2; got {k}")

    def support(self, variable: int) -> tuple[float, float]:
        sel = self.variables == variable
        mu, sigma = self.mu[sel].detach(), self.log_sigma[sel].detach().exp()
        return float((mu - 12 * sigma).min()), float((mu + 12 * sigma).max())


class _DiscreteInput(InputLayer):
    """Units over the states ``0 .. S-1`` given by a ``(L, K, S)`` log-probability table."""

    discrete = True

    def __init__(self, variables: torch.Tensor, num_units: int, num_states: int) -> None:
        super().__init__(variables, num_units)
        self.num_states = int(num_states)

    @abc.abstractmethod
    def log_probs(self) -> torch.Tensor:
        """``(L, K, S)`` normalised log probabilities."""

    def _states(self, like: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.num_states, dtype=like.dtype, device=like.device)

    def check_values(self, x: torch.Tensor, name: str) -> None:
        bad = (x != x.round()) | (x < 0) | (x > self.num_states - 1)
        if bad.any():
            i = tuple(int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"{name} must hold integer states in 0..{self.num_states - 1} for the "
                f"{type(self).__name__} leaves; got {float(x[i])} at index {i}"
            )

    def _lp(self, index: torch.Tensor | None) -> torch.Tensor:
        lp = self.log_probs()
        return lp if index is None else lp[index]

    # signed tables (squared circuits): unit values v_k(s) of either sign ----------
    def values(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """``(L, K, S)`` unit values ``v_k(s)`` of a signed layer (linear scale)."""
        raise TypeError(f"{type(self).__name__} is not signed")

    @staticmethod
    def _at(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``table`` ``(L, K, S)`` read at the states ``x`` ``(L, B)`` → ``(L, B, K)``."""
        idx = x.long().clamp(0, table.shape[-1] - 1)
        return table.gather(2, idx.unsqueeze(1).expand(-1, table.shape[1], -1)).transpose(1, 2)

    def density(
        self, x: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.signed:
            return signed_log(self._at(self.values(index), x))
        return _pos(self.log_density(x, index))

    def log_density(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        self._refuse_signed("log mass function")
        return self._at(self._lp(index), x)

    def _cdf_index(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.floor(t).clamp(-1, self.num_states - 1)
        below = idx < 0
        return idx.clamp_min(0).long(), below

    def log_cdf(self, t: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        self._refuse_signed("CDF")
        idx, below = self._cdf_index(t)
        cum = torch.logcumsumexp(self._lp(index), dim=-1)
        out = cum.gather(2, idx.unsqueeze(1).expand(-1, cum.shape[1], -1)).transpose(1, 2)
        return torch.where(below.unsqueeze(-1), torch.full_like(out, -torch.inf), out)

    def moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._refuse_signed("moments of its own")
        lp = self._lp(index)
        if k == 0:
            return _pos(torch.zeros(lp.shape[:2], dtype=lp.dtype, device=lp.device))
        log_s = self._states(lp).log()
        return _pos(torch.logsumexp(lp + k * log_s, dim=-1))

    def _pair(self, index: torch.Tensor | None = None) -> torch.Tensor:
        lp = self._lp(index)
        return lp.unsqueeze(2) + lp.unsqueeze(1)  # (L, K, K, S)

    def gram_cdf(
        self, t: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx, below = self._cdf_index(t)  # (L, B)
        if self.signed:
            v = self.values(index)
            cum = (v.unsqueeze(2) * v.unsqueeze(1)).cumsum(-1)  # (L, K, K, S)
            L, K = cum.shape[0], cum.shape[1]
            out = cum.reshape(L, K * K, -1).gather(2, idx.unsqueeze(1).expand(-1, K * K, -1))
            out = out.transpose(1, 2).reshape(L, -1, K, K)
            return signed_log(torch.where(below[..., None, None], torch.zeros_like(out), out))
        cum = torch.logcumsumexp(self._pair(index), dim=-1)  # (L, K, K, S)
        L, K = cum.shape[0], cum.shape[1]
        flat = cum.reshape(L, K * K, -1)
        out = flat.gather(2, idx.unsqueeze(1).expand(-1, K * K, -1))  # (L, K*K, B)
        out = out.transpose(1, 2).reshape(L, -1, K, K)
        out = torch.where(below[..., None, None], torch.full_like(out, -torch.inf), out)
        return _pos(out)

    def gram_moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.signed:
            v = self.values(index)
            weight = self._states(v) ** k  # (S,): 0^0 = 1
            return signed_log(torch.einsum("lis,ljs,s->lij", v, v, weight))
        pair = self._pair(index)
        if k == 0:
            return _pos(torch.logsumexp(pair, dim=-1))
        log_s = self._states(pair).log()
        return _pos(torch.logsumexp(pair + k * log_s, dim=-1))

    def support(self, variable: int) -> tuple[float, float]:
        return 0.0, float(self.num_states - 1)


class CategoricalInput(_DiscreteInput):
    """Categorical units over ``num_states`` states, ``p = softmax(logits)``.

    With ``signed=True`` (the leaves of a squared non-monotonic circuit, as the paper's
    real-valued "embeddings") each unit is a free real table ``coef[l, k, s]`` instead:
    values of either sign that the squared circuit's ``Z`` normalises. It starts from
    the probabilities the unsigned layer would start from.
    """

    def __init__(
        self,
        variables: torch.Tensor,
        num_units: int,
        num_states: int,
        *,
        signed: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(variables, num_units, num_states)
        self._coefficients((self.num_leaves, num_units, num_states), signed, dtype)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, generator: torch.Generator) -> None:
        shape = (self.num_leaves, self.num_units, self.num_states)
        noise = torch.rand(shape, generator=generator, dtype=torch.float64)
        if self.signed:
            self.coef.copy_(torch.softmax(noise, dim=-1).to(self.coef.dtype))
        else:
            self.logits.copy_(noise.to(self.logits.dtype))

    def log_probs(self) -> torch.Tensor:
        self._refuse_signed("probabilities")
        return torch.log_softmax(self.logits, dim=-1)

    def values(self, index: torch.Tensor | None = None) -> torch.Tensor:
        if not self.signed:
            return super().values(index)
        return self.coef if index is None else self.coef[index]


class BinomialInput(_DiscreteInput):
    """Binomial units ``Bin(total_count, sigmoid(logit))`` over ``0 .. total_count``;
    ``total_count = 1`` is the Bernoulli."""

    def __init__(
        self,
        variables: torch.Tensor,
        num_units: int,
        total_count: int,
        *,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(variables, num_units, int(total_count) + 1)
        self.total_count = int(total_count)
        self.logit = nn.Parameter(torch.zeros(self.num_leaves, num_units, dtype=dtype))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, generator: torch.Generator) -> None:
        u = torch.rand(self.logit.shape, generator=generator, dtype=torch.float64) * 0.8 + 0.1
        self.logit.copy_((u.log() - (1 - u).log()).to(self.logit.dtype))

    def log_probs(self) -> torch.Tensor:
        n = self.total_count
        s = torch.arange(n + 1, dtype=self.logit.dtype, device=self.logit.device)
        log_comb = (
            math.lgamma(n + 1.0)  # a Python float: no host tensor to upload each step
            - torch.lgamma(s + 1)
            - torch.lgamma(n - s + 1)
        )
        lp = nn.functional.logsigmoid(self.logit).unsqueeze(-1)
        lq = nn.functional.logsigmoid(-self.logit).unsqueeze(-1)
        return log_comb + s * lp + (n - s) * lq


class BernoulliInput(BinomialInput):
    """Bernoulli units over ``{0, 1}``: a binomial with one trial."""

    def __init__(
        self, variables: torch.Tensor, num_units: int, *, dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__(variables, num_units, 1, dtype=dtype)


def _cardinal_bspline(u: torch.Tensor, degree: int) -> torch.Tensor:
    """The cardinal B-spline ``N_p(u)`` of degree ``p`` on the integer knots ``0 .. p+1``
    (Cox–de Boor recursion); zero outside ``[0, p + 1)``."""
    n = ((u >= 0) & (u < 1)).to(u.dtype)
    if degree == 0:
        return n
    return (
        u * _cardinal_bspline(u, degree - 1)
        + (degree + 1 - u) * _cardinal_bspline(u - 1, degree - 1)
    ) / degree


class SplineInput(InputLayer):
    """B-spline units: ``f_k(x) = Σ_j α_kj B_j(x) / h`` with ``α_k = softmax(logits_k)``
    over ``M`` uniform B-splines of degree ``p`` (``p = 2``: piecewise quadratic) with knot
    spacing ``h``; each ``B_j`` integrates to ``h``, so every unit is a normalised density.

    The knots of each leaf's variable span the training range padded by 10 % on each side
    (plus ``p`` spacings that the outer bases need); the density is zero outside them.
    Only the ``p + 1`` bases that are non-zero at ``x`` are evaluated. The partition
    function needs ``∫ f_a f_b = α_a G α_bᵀ / h`` with ``G`` the banded (``|j - l| ≤ p``)
    Toeplitz Gram matrix of the cardinal bases, computed once. The other integrals (Gram
    CDFs, moments) are sums over knot intervals of Gauss–Legendre quadratures, exact for
    these piecewise polynomials, touching only the ``(p + 1)²`` basis pairs alive on each
    interval.

    With ``signed=True`` (the leaves of a squared non-monotonic circuit, as in the
    paper) the coefficients are unconstrained reals ``coef`` instead of ``softmax(logits)``:
    ``f_k`` is then a spline of either sign, not a density, and the squared circuit's
    ``Z`` does the normalising. Such a layer has :meth:`density`, the matrix form and the
    moments, but no log density or CDF of its own.
    """

    def __init__(
        self,
        variables: torch.Tensor,
        num_units: int,
        num_bases: int = 32,
        degree: int = 2,
        *,
        signed: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(variables, num_units)
        if degree < 1 or num_bases < degree + 1:
            raise ValueError(
                f"spline needs degree >= 1 and num_bases >= degree + 1; got {degree}, {num_bases}"
            )
        self.num_bases, self.degree = int(num_bases), int(degree)
        self._coefficients((self.num_leaves, num_units, num_bases), signed, dtype)
        # first knot t_0 and spacing h of each leaf (set from data)
        self.register_buffer("t0", torch.full((self.num_leaves,), -1.0, dtype=dtype))
        self.register_buffer("h", torch.full((self.num_leaves,), 2.0 / num_bases, dtype=dtype))
        # the banded (Toeplitz) Gram matrix ∫ N_p(u - j) N_p(u - l) du of the cardinal bases:
        # with spacing h, ∫ f_a f_b = α_a G α_bᵀ / h, the partition function's one need
        self.register_buffer("_gram", self._cardinal_gram(dtype), persistent=False)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Knots over the padded data range; logits from a smoothed histogram + noise
        (signed layers start from the positive coefficients these logits give)."""
        xs = x[:, self.variables]  # (n, L)
        lo, hi = xs.min(0).values, xs.max(0).values
        pad = 0.1 * (hi - lo).clamp_min(1e-3)
        lo, hi = lo - pad, hi + pad
        p, m = self.degree, self.num_bases
        h = (hi - lo) / (m - p)
        self.h.copy_(h)
        self.t0.copy_(lo - p * h)
        # basis j peaks near t_j + (p + 1) h / 2
        centres = self.t0.unsqueeze(-1) + (
            torch.arange(m, dtype=x.dtype, device=x.device) + (p + 1) / 2
        ) * h.unsqueeze(-1)  # (L, M)
        dist = (xs.T.unsqueeze(-1) - centres.unsqueeze(1)) / h[:, None, None]  # (L, n, M)
        hist = torch.exp(-0.5 * dist**2).mean(1)  # (L, M)
        shape = (self.num_leaves, self.num_units, m)
        noise = torch.rand(shape, generator=generator, dtype=torch.float64)
        logits = (hist + 1e-3).log().unsqueeze(1) + noise.to(x.device, x.dtype)
        if self.signed:
            self.coef.copy_(torch.softmax(logits, dim=-1))
        else:
            self.logits.copy_(logits)

    @torch.no_grad()
    def init_centred(
        self, x: torch.Tensor, generator: torch.Generator, scales: torch.Tensor
    ) -> None:
        """Knots as :meth:`init_from_data`; unit ``k`` starts as a Gaussian bump at the
        variable's data mean, ``scales[k]`` (``(K,)``) standard deviations wide (at
        least one knot spacing), with 10 % multiplicative noise on its coefficients."""
        self.init_from_data(x, generator)
        _, mean, std = self._leaf_data(x)
        p, m = self.degree, self.num_bases
        centres = self.t0.unsqueeze(-1) + (
            torch.arange(m, dtype=x.dtype, device=x.device) + (p + 1) / 2
        ) * self.h.unsqueeze(-1)  # (L, M)
        width = torch.maximum(std.unsqueeze(-1) * scales.to(std), self.h.unsqueeze(-1))  # (L, K)
        z = (centres.unsqueeze(1) - mean[:, None, None]) / width.unsqueeze(-1)  # (L, K, M)
        noise = torch.rand(z.shape, generator=generator, dtype=torch.float64)
        logits = -0.5 * z**2 + 0.1 * noise.to(x.device, x.dtype)
        if self.signed:
            self.coef.copy_(torch.softmax(logits, dim=-1))
        else:
            self.logits.copy_(logits)

    # helpers --------------------------------------------------------------------
    def _cardinal_gram(self, dtype: torch.dtype) -> torch.Tensor:
        """``(M, M)`` ``∫ N_p(u - j) N_p(u - l) du`` on unit knot spacing (zero for
        ``|j - l| > p``), by Gauss–Legendre on each unit interval (exact)."""
        p, m = self.degree, self.num_bases
        nodes, weights = self._gauss(torch.zeros((), dtype=torch.float64))
        nb = self._basis_on_interval(nodes)  # (Q, p+1): basis i - r alive on interval i
        local = torch.einsum("q,qr,qs->rs", weights, nb, nb)  # (p+1, p+1)
        gram = torch.zeros(m, m, dtype=torch.float64)
        for i in range(m + p):  # interval i holds bases i - r, r = 0..p
            j = [i - r for r in range(p + 1)]
            for r, jr in enumerate(j):
                for c, jc in enumerate(j):
                    if 0 <= jr < m and 0 <= jc < m:
                        gram[jr, jc] += local[r, c]
        return gram.to(dtype)

    def _alpha(self, index: torch.Tensor | None) -> torch.Tensor:
        a = self.coef if self.signed else torch.softmax(self.logits, dim=-1)
        return a if index is None else a[index]

    def _buf(self, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.t0, self.h) if index is None else (self.t0[index], self.h[index])

    @property
    def _num_intervals(self) -> int:
        return self.num_bases + self.degree

    def _locate(self, x: torch.Tensor, index: torch.Tensor | None):
        """Interval ``i`` ``(L, B)`` (long, clamped), offset ``u ∈ [0, 1)`` and whether ``x``
        lies inside the knots."""
        t0, h = self._buf(index)
        s = (x - t0.unsqueeze(-1)) / h.unsqueeze(-1)
        inside = (s >= 0) & (s < self._num_intervals)
        i = s.floor().clamp(0, self._num_intervals - 1)
        return i.long(), (s - i).clamp(0, 1), inside, s

    def _active(self, alpha: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """``(L, B, K, p+1)`` weights ``α_{k, i - r}`` of the bases alive on interval ``i``
        (zero for indices outside ``0 .. M-1``)."""
        p = self.degree
        r = torch.arange(p + 1, device=i.device)
        j = i.unsqueeze(-1) - r  # (L, B, p+1)
        ok = (j >= 0) & (j < self.num_bases)
        jj = j.clamp(0, self.num_bases - 1)
        L, B = i.shape
        K = alpha.shape[1]
        g = alpha.unsqueeze(1).expand(L, B, K, -1).gather(3, jj.unsqueeze(2).expand(L, B, K, p + 1))
        return g * ok.unsqueeze(2).to(g.dtype)

    def _basis_on_interval(self, v: torch.Tensor) -> torch.Tensor:
        """``N_p(v + r)`` for ``r = 0..p``: the alive bases at offset ``v`` → ``(..., p+1)``."""
        r = torch.arange(self.degree + 1, dtype=v.dtype, device=v.device)
        return _cardinal_bspline(v.unsqueeze(-1) + r, self.degree)

    def _gauss(self, like: torch.Tensor, n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        nodes, weights = np.polynomial.legendre.leggauss(n)
        nodes = torch.as_tensor((nodes + 1) / 2, dtype=like.dtype, device=like.device)
        weights = torch.as_tensor(weights / 2, dtype=like.dtype, device=like.device)
        return nodes, weights  # on [0, 1]

    # vector form ----------------------------------------------------------------
    def density(
        self, x: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i, u, inside, _ = self._locate(x, index)
        alpha = self._alpha(index)  # (L, K, M)
        L, B = i.shape
        K, m, p = alpha.shape[1], self.num_bases, self.degree
        # the p + 1 bases alive at x, as rows of a (L·M, K) coefficient table: a weighted
        # embedding bag reads just those rows (and its backward adds into just those)
        j = i.unsqueeze(-1) - torch.arange(p + 1, device=i.device)  # (L, B, p+1)
        ok = (j >= 0) & (j < m) & inside.unsqueeze(-1)
        rows = j.clamp(0, m - 1) + m * torch.arange(L, device=i.device)[:, None, None]
        basis = self._basis_on_interval(u) * ok.to(u.dtype)  # (L, B, p+1)
        table = alpha.transpose(1, 2).reshape(L * m, K)
        val = nn.functional.embedding_bag(
            rows.reshape(-1, p + 1),
            table,
            per_sample_weights=basis.reshape(-1, p + 1),
            mode="sum",
        ).view(L, B, K)
        _, h = self._buf(index)
        return signed_log(val / h[:, None, None])

    def log_density(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        self._refuse_signed("log density")
        return self.density(x, index)[0]

    def _interval_integrals(self, power: int, index: torch.Tensor | None):
        """Per interval ``i`` and alive basis ``r``: ``∫_{t_i}^{t_{i+1}} x^k B_{i-r}`` →
        ``(L, I, p+1)`` (before weighting by α)."""
        t0, h = self._buf(index)
        nodes, weights = self._gauss(t0)
        ii = torch.arange(self._num_intervals, dtype=t0.dtype, device=t0.device)
        xq = t0[:, None, None] + (ii[None, :, None] + nodes) * h[:, None, None]  # (L, I, Q)
        nb = self._basis_on_interval(nodes)  # (Q, p+1)
        return torch.einsum("liq,q,qr->lir", xq**power, weights, nb) * h[:, None, None]

    def _window(self, alpha: torch.Tensor) -> torch.Tensor:
        """``(L, K, I, p+1)`` ``α_{k, i-r}`` for every interval ``i``."""
        L = alpha.shape[0]
        i = torch.arange(self._num_intervals, device=alpha.device).expand(L, -1)
        return self._active(alpha, i)  # (L, I, K, p+1)

    def log_cdf(self, t: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        self._refuse_signed("CDF")
        alpha = self._alpha(index)
        _, h = self._buf(index)
        i, u, _, s = self._locate(t, index)
        # full intervals before i: Σ over intervals of α-weighted integrals
        per = torch.einsum(
            "lir,likr->lik", self._interval_integrals(0, index), self._window(alpha)
        )  # (L, I, K)
        cum = torch.cat([torch.zeros_like(per[:, :1]), per.cumsum(1)], 1)  # (L, I+1, K)
        full = cum.gather(1, i.unsqueeze(-1).expand(-1, -1, cum.shape[-1]))  # (L, B, K)
        nodes, weights = self._gauss(t)
        vq = u.unsqueeze(-1) * nodes  # (L, B, Q)
        part = (self._basis_on_interval(vq) * (weights * u.unsqueeze(-1)).unsqueeze(-1)).sum(-2)
        part = (self._active(alpha, i) * part.unsqueeze(2)).sum(-1) * h[:, None, None]
        val = (full + part) / h[:, None, None]
        val = torch.where((s < 0).unsqueeze(-1), torch.zeros_like(val), val)
        val = torch.where((s >= self._num_intervals).unsqueeze(-1), torch.ones_like(val), val)
        return signed_log(val.clamp(0, 1))[0]

    def moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self._alpha(index)
        _, h = self._buf(index)
        per = torch.einsum("lir,likr->lk", self._interval_integrals(k, index), self._window(alpha))
        return signed_log(per / h[:, None])

    # matrix form ----------------------------------------------------------------
    def _pair_interval_integrals(self, power: int, index: torch.Tensor | None):
        """``(L, I, p+1, p+1)``: ``∫_{t_i}^{t_{i+1}} x^k B_{i-r} B_{i-s}``."""
        t0, h = self._buf(index)
        nodes, weights = self._gauss(t0)
        ii = torch.arange(self._num_intervals, dtype=t0.dtype, device=t0.device)
        xq = t0[:, None, None] + (ii[None, :, None] + nodes) * h[:, None, None]
        nb = self._basis_on_interval(nodes)
        return (
            torch.einsum("liq,q,qr,qs->lirs", xq**power, weights, nb, nb) * h[:, None, None, None]
        )

    def _gram_per_interval(self, power: int, index: torch.Tensor | None) -> torch.Tensor:
        win = self._window(self._alpha(index))  # (L, I, K, p+1)
        _, h = self._buf(index)
        q = self._pair_interval_integrals(power, index)
        return torch.einsum("liar,lirs,libs->liab", win, q, win) / h[:, None, None, None] ** 2

    def gram_moment(
        self, k: int, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if k == 0:
            alpha = self._alpha(index)
            _, h = self._buf(index)
            gram = alpha @ self._gram.to(alpha) @ alpha.transpose(1, 2) / h[:, None, None]
            return signed_log(gram if self.signed else gram.clamp_min(0))
        return signed_log(self._gram_per_interval(k, index).sum(1))

    def gram_cdf(
        self, t: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self._alpha(index)
        _, h = self._buf(index)
        i, u, _, s = self._locate(t, index)
        per = self._gram_per_interval(0, index)  # (L, I, K, K)
        cum = torch.cat([torch.zeros_like(per[:, :1]), per.cumsum(1)], 1)
        L, B = i.shape
        K = per.shape[-1]
        full = cum.gather(1, i[..., None, None].expand(L, B, K, K))
        nodes, weights = self._gauss(t)
        vq = u.unsqueeze(-1) * nodes  # (L, B, Q)
        nb = self._basis_on_interval(vq)  # (L, B, Q, p+1)
        wq = weights * u.unsqueeze(-1)  # (L, B, Q)
        c = torch.einsum("lbq,lbqr,lbqs->lbrs", wq, nb, nb) * h[:, None, None, None]
        a = self._active(alpha, i)  # (L, B, K, p+1)
        part = torch.einsum("lbar,lbrs,lbcs->lbac", a, c, a) / h[:, None, None, None] ** 2
        val = full + part
        total = cum[:, -1].unsqueeze(1).expand_as(val)
        val = torch.where((s < 0)[..., None, None], torch.zeros_like(val), val)
        val = torch.where((s >= self._num_intervals)[..., None, None], total, val)
        return signed_log(val if self.signed else val.clamp_min(0))

    def support(self, variable: int) -> tuple[float, float]:
        sel = self.variables == variable
        t0, h = self.t0[sel], self.h[sel]
        return float(t0.min()), float((t0 + self._num_intervals * h).max())
