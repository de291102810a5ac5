"""The exact conditional distribution of a circuit's unobserved variables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from bayesfn.posterior import Posterior

if TYPE_CHECKING:
    from bayesfn.circuits.models import CircuitModel

__all__ = ["ConditionalPosterior"]

_MAX_STEPS = 100


def _invert_cdf(evaluate, u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Solve ``F(t) = u`` elementwise by safeguarded Newton: a Newton step from the
    density where it stays inside the bracket ``[lo, hi]`` that always holds the root,
    bisection otherwise. ``evaluate(t) -> (F(t), f(t))``, all tensors of ``u``'s shape."""
    t = 0.5 * (lo + hi)
    tol = 64 * torch.finfo(u.dtype).eps
    for _ in range(_MAX_STEPS):
        cdf, pdf = evaluate(t)
        below = cdf < u
        lo = torch.where(below, t, lo)
        hi = torch.where(below, hi, t)
        done = ((cdf - u).abs() <= tol) | (hi - lo <= tol * (1 + t.abs()))
        if bool(done.all()):
            break
        step = t - (cdf - u) / pdf
        ok = torch.isfinite(step) & (step > lo) & (step < hi)
        t = torch.where(done, t, torch.where(ok, step, 0.5 * (lo + hi)))
    return t


class ConditionalPosterior(Posterior):
    """``p(x_U | x_O = evidence)`` for a fitted circuit, computed exactly.

    Built by ``model.posterior(evidence, mask=...)``; do not construct directly.

    * ``batch_shape``: ``(n,)`` for ``(n, d)`` evidence, ``()`` for ``(d,)`` evidence;
    * ``event_shape``: ``(d_U,)``, the unobserved variables in increasing index order
      (:attr:`variables`);
    * ``log_prob``: the exact joint conditional log density;
    * ``marginal_log_prob``, ``cdf``, ``mean``, ``variance``: exact, per unobserved
      variable (a circuit integrates ``x``, ``x²`` and half-lines in closed form);
    * ``quantile``: inverts the exact marginal CDF (bisection; the smallest state with
      ``CDF ≥ q`` for discrete leaves);
    * ``sample``: exact draws by sequential conditional inverse CDF, variable by
      variable (discrete leaves by enumerating the states).
    """

    has_log_prob = True
    is_reparameterized = False

    def __init__(self, model: CircuitModel, evidence: torch.Tensor, mask: torch.Tensor) -> None:
        from bayesfn.circuits import models as m

        self._m = m
        self._model = model
        self._single = evidence.ndim == 1
        self._evidence = evidence.unsqueeze(0) if self._single else evidence  # (B, d)
        self._mask = mask.to(device=evidence.device)
        self._vars = (~self._mask).nonzero().squeeze(-1)
        if self._vars.numel() == 0:
            raise ValueError("mask marks every variable as observed: nothing is left to predict")
        with torch.no_grad():
            codes = self._codes(m.MARGINALIZE)
            log_norm, _ = model._log_f(self._evidence, codes)
        if torch.isneginf(log_norm).any():
            rows = torch.isneginf(log_norm).nonzero().squeeze(-1).tolist()
            raise ValueError(f"evidence rows {rows} have zero probability under the model")
        self._log_norm = log_norm  # (B,)
        self._cache: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ shapes
    @property
    def variables(self) -> torch.Tensor:
        """``(d_U,)`` indices of the unobserved variables, the order of the event."""
        return self._vars

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size(()) if self._single else torch.Size([self._evidence.shape[0]])

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size([self._vars.numel()])

    @property
    def device(self) -> torch.device:
        return self._evidence.device

    @property
    def dtype(self) -> torch.dtype:
        return self._evidence.dtype

    # ------------------------------------------------------------------ helpers
    def _codes(self, rest: int, batch: int | None = None) -> torch.Tensor:
        """``(B, d)`` codes: observed evidence, ``rest`` on the unobserved variables."""
        m = self._m
        base = torch.where(self._mask, m.OBSERVE, rest).long()
        return base.expand(batch or self._evidence.shape[0], -1).clone()

    def _finish(self, t: torch.Tensor, sample_shape: torch.Size) -> torch.Tensor:
        """``(S*B, ...)`` → ``sample_shape + batch + ...``."""
        t = t.reshape(*sample_shape, self._evidence.shape[0], *t.shape[1:])
        return t.squeeze(len(sample_shape)) if self._single else t

    def _flatten(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """``sample + batch + (d_U,)`` → full ``(S*B, d)`` rows and ``sample_shape``."""
        value = self._check_value(value)
        nb = 0 if self._single else 1
        sample_shape = value.shape[: value.ndim - 1 - nb]
        v = value.reshape(-1, self._evidence.shape[0], self._vars.numel())
        x = self._evidence.unsqueeze(0).expand(v.shape[0], -1, -1).clone()
        x[..., self._vars] = v
        return x.reshape(-1, x.shape[-1]), sample_shape

    def _log_norm_rep(self, reps: int) -> torch.Tensor:
        return self._log_norm.repeat(reps)

    def _per_variable(self, x: torch.Tensor, code: int) -> torch.Tensor:
        """``(N, d_U)`` signed values ``∫ f`` with variable ``j`` asked for ``code`` and the
        other unobserved ones integrated out, divided by the evidence's marginal."""
        m = self._m
        reps = x.shape[0] // self._evidence.shape[0]
        norm = self._log_norm_rep(reps)
        outs = []
        for j in self._vars.tolist():
            codes = self._codes(m.MARGINALIZE, x.shape[0])
            codes[:, j] = code
            log, sign = self._model._log_f(x, codes)
            outs.append(sign * (log - norm).exp() if code != m.OBSERVE else log - norm)
        return torch.stack(outs, dim=-1)

    # ------------------------------------------------------------------ densities
    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Joint ``log p(x_U | x_O)``: ``value`` ``sample + batch + (d_U,)`` → ``sample +
        batch``."""
        x, sample_shape = self._flatten(value)
        self._model._check_x(x, "value")
        reps = x.shape[0] // self._evidence.shape[0]
        with torch.no_grad():
            log, _ = self._model._log_f(x, self._codes(self._m.OBSERVE, x.shape[0]))
        return self._finish(log - self._log_norm_rep(reps), sample_shape)

    def marginal_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log p(x_j | x_O)`` of each unobserved ``j``: ``sample + batch + (d_U,)``."""
        x, sample_shape = self._flatten(value)
        self._model._check_x(x, "value")
        with torch.no_grad():
            return self._finish(self._per_variable(x, self._m.OBSERVE), sample_shape)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``P(X_j ≤ value_j | x_O)`` of each unobserved ``j``: ``sample + batch + (d_U,)``."""
        x, sample_shape = self._flatten(value)
        with torch.no_grad():
            out = self._per_variable(x, self._m.CDF).clamp(0.0, 1.0)
        return self._finish(out, sample_shape)

    # ------------------------------------------------------------------ moments
    def _moment(self, k: int) -> torch.Tensor:
        key = f"m{k}"
        if key not in self._cache:
            code = self._m.MOMENT1 if k == 1 else self._m.MOMENT2
            with torch.no_grad():
                out = self._per_variable(self._evidence, code)
            self._cache[key] = out[0] if self._single else out
        return self._cache[key]

    @property
    def mean(self) -> torch.Tensor:
        """``batch + (d_U,)`` exact conditional means."""
        return self._moment(1)

    @property
    def variance(self) -> torch.Tensor:
        """``batch + (d_U,)`` exact conditional variances."""
        return (self._moment(2) - self._moment(1) ** 2).clamp_min(0.0)

    @property
    def mode(self) -> torch.Tensor:
        """``batch + (d_U,)`` most probable state of each variable's conditional marginal
        (discrete leaves only)."""
        inp = self._model.module_.inputs
        if not inp.discrete:
            raise NotImplementedError("mode is defined here for discrete leaves only")
        states = torch.arange(inp.num_states, dtype=self.dtype, device=self.device)
        logs = self._marginal_table(states)  # (S, B, d_U)
        best = states[logs.argmax(0)]
        return best[0] if self._single else best

    def _marginal_table(self, states: torch.Tensor) -> torch.Tensor:
        """``(S, B, d_U)`` ``log p(x_j = s | x_O)`` for every state ``s``."""
        n_s, n_b = states.shape[0], self._evidence.shape[0]
        x = self._evidence.unsqueeze(0).expand(n_s, -1, -1).clone()
        x[..., self._vars] = states.view(-1, 1, 1)
        with torch.no_grad():
            out = self._per_variable(x.reshape(n_s * n_b, -1), self._m.OBSERVE)
        return out.reshape(n_s, n_b, -1)

    # ------------------------------------------------------------------ quantiles
    def quantile(self, q: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
        """Marginal quantiles ``q.shape + batch + (d_U,)`` from the exact CDF."""
        q = self._check_q(q)
        qs = q.reshape(-1)
        inp = self._model.module_.inputs
        n_b, n_u = self._evidence.shape[0], self._vars.numel()
        target = qs.view(-1, 1, 1).expand(-1, n_b, n_u)
        if inp.discrete:
            states = torch.arange(inp.num_states, dtype=self.dtype, device=self.device)
            cum = self._marginal_table(states).exp().cumsum(0)  # (S, B, d_U)
            count = (cum.unsqueeze(0) < target.unsqueeze(1) - 1e-12).sum(1)
            out = states[count.clamp(max=inp.num_states - 1)]
        else:
            brackets = torch.tensor(
                [inp.support(j) for j in self._vars.tolist()], dtype=self.dtype, device=self.device
            )
            lo = brackets[:, 0].expand_as(target).clone()
            hi = brackets[:, 1].expand_as(target).clone()
            out = _invert_cdf(self._cdf_pdf_rows, target.contiguous(), lo, hi)
        out = out.reshape(*q.shape, n_b, n_u)
        return out.squeeze(q.ndim) if self._single else out

    def _cdf_pdf_rows(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Marginal CDF and density at ``t`` ``(Q, B, d_U)`` → two ``(Q, B, d_U)``."""
        n_q = t.shape[0]
        x = self._evidence.unsqueeze(0).expand(n_q, -1, -1).clone()
        x[..., self._vars] = t
        x = x.reshape(-1, x.shape[-1])
        with torch.no_grad():
            cdf = self._per_variable(x, self._m.CDF)
            pdf = self._per_variable(x, self._m.OBSERVE).exp()
        return cdf.reshape(t.shape), pdf.reshape(t.shape)

    # ------------------------------------------------------------------ sampling
    def _draw(self, sample_shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        m, model = self._m, self._model
        inp = model.module_.inputs
        n_b = self._evidence.shape[0]
        reps = max(1, int(torch.Size(sample_shape).numel()))
        x = self._evidence.repeat(reps, 1)  # (N, d)
        n = x.shape[0]
        codes = self._codes(m.MARGINALIZE, n)
        with torch.no_grad():
            for j in self._vars.tolist():
                log_den, _ = model._log_f(x, codes)  # marginal of what is fixed so far
                u = torch.rand(n, generator=generator, dtype=self.dtype, device=self.device)
                if inp.discrete:
                    states = torch.arange(inp.num_states, dtype=self.dtype, device=self.device)
                    xs = x.repeat(states.numel(), 1)
                    xs[:, j] = states.repeat_interleave(n)
                    cs = codes.repeat(states.numel(), 1)
                    cs[:, j] = m.OBSERVE
                    log_p, _ = model._log_f(xs, cs)
                    cum = (log_p.view(-1, n) - log_den).exp().cumsum(0)  # (S, N)
                    idx = (cum < u * cum[-1]).sum(0).clamp(max=states.numel() - 1)
                    x[:, j] = states[idx]
                else:
                    lo_b, hi_b = inp.support(j)
                    lo = torch.full((n,), lo_b, dtype=self.dtype, device=self.device)
                    hi = torch.full((n,), hi_b, dtype=self.dtype, device=self.device)
                    both = torch.cat([codes, codes])
                    both[:n, j] = m.CDF
                    both[n:, j] = m.OBSERVE

                    def evaluate(t, j=j, both=both, log_den=log_den):
                        x[:, j] = t
                        log, sign = model._log_f(torch.cat([x, x]), both)
                        val = sign * (log - torch.cat([log_den, log_den])).exp()
                        return val[:n], val[n:]

                    x[:, j] = _invert_cdf(evaluate, u, lo, hi)
                codes[:, j] = m.OBSERVE
        out = x[:, self._vars].reshape(*sample_shape, n_b, -1)
        return out.squeeze(len(sample_shape)) if self._single else out
