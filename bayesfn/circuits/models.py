"""Monotonic and squared (subtractive) probabilistic circuits as :class:`~bayesfn.Model` s.

Three models share one tensorized circuit ``c`` over a region graph with ``R`` replicas
(the root's partitions), ``c_r(x)`` being replica ``r``'s output:

=========================================== ============================== ==============
model                                       unnormalised density ``f(x)``  weights
=========================================== ============================== ==============
``MonotonicCircuit()`` (MPC)                ``Σ_r c_r(x)``                 ``exp(θ) > 0``
``MonotonicCircuit(squared=True)`` (MPC²)   ``Σ_r c_r(x)²``                ``exp(θ) > 0``
``SquaredCircuit()`` (NPC²)                 ``Σ_r c_r(x)²``                real, any sign
=========================================== ============================== ==============

and ``p(x) = f(x) / Z`` with ``Z = ∫ f`` computed exactly (:meth:`log_partition`). A
squared model is a positive mixture of ``R`` squared replicas: each replica is squared on
its own and the squares are added; the mixture itself is never squared (the replicas'
scales play the role of the mixture weights). ``∫ c_r²`` and every marginal, moment and
CDF of a squared circuit are computed by propagating ``K x K`` matrices ``W (A ∘ B) Wᵀ``
(:func:`bayesfn.kernels.sq_layer`; for Tucker layers ``W (A ⊗ B) Wᵀ``, contracted without
forming the Kronecker product, :func:`~bayesfn.circuits.tensorized.tucker_sq_layer`) up
the (structured-decomposable) tree. Subtrees whose variables are all observed stay plain
vectors ``c`` (their matrix is ``c cᵀ``), and subtrees integrated the same way in every
row stay one shared matrix, so conditionals pay for per-row matrices only where needed.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch

from bayesfn.circuits.inputs import (
    BernoulliInput,
    BinomialInput,
    CategoricalInput,
    GaussianInput,
    InputLayer,
    SplineInput,
)
from bayesfn.circuits.region_graph import (
    RegionGraph,
    linear_tree,
    quad_tree,
    random_binary_tree,
)
from bayesfn.circuits.tensorized import CONST, FULL, LAYERS, VECTOR, TensorizedCircuit
from bayesfn.kernels import signed_logsumexp
from bayesfn.model import Model, as_tensor, resolve_device, resolve_dtype
from bayesfn.training import optimize

__all__ = ["MonotonicCircuit", "SquaredCircuit"]

# what a leaf is asked for, per variable (see CircuitModel._log_f)
MARGINALIZE, OBSERVE, CDF, MOMENT1, MOMENT2 = 0, 1, 2, 3, 4
_INPUTS = ("gaussian", "spline", "categorical", "bernoulli", "binomial")
_GRAPHS = ("random", "linear", "quad", "quad_graph")
_INITS = ("data", "centred", "auto")
# the nested start's unit scales, in data standard deviations, and how much of max_steps
# each restart's trial run takes (benchmarks/npc2_init_rates.py measured these)
_CENTRED_SCALES = (1.0, 0.5)
_RESTART_SHARE = 0.25
_RESTART_SEED_STRIDE = 100_003
# the held-out share fit(X) takes for validation when given none (holdout="auto"), and
# the fewest points it splits (benchmarks/npc2_holdout.py measured the default)
_AUTO_HOLDOUT = 0.1
_HOLDOUT_MIN_N = 50
_HOLDOUT_SEED_OFFSET = 7_919
#: Version of the saved parameter layout (2: leaves and folds in reader order, signed leaves)
_LAYOUT = 2


class CircuitModel(Model, abc.ABC):
    """Shared machinery of the circuit models (abstract; use :class:`MonotonicCircuit`
    or :class:`SquaredCircuit`).

    Args:
        num_units: ``K``, units per region (and per leaf).
        region_graph: ``"random"`` (random balanced binary trees, ``num_replicas`` of
            them), ``"linear"`` (a linear tree in a random order), ``"quad"`` (the
            structured quad-tree over an image of ``image_shape``), ``"quad_graph"`` (the
            non-structured quad graph; monotonic only), or a :class:`RegionGraph` / its
            ``to_dict()``.
        num_replicas: ``R`` for ``"random"``.
        input: leaf family: ``"gaussian"``, ``"spline"`` (B-splines, see
            :class:`~bayesfn.circuits.inputs.SplineInput`), ``"categorical"``,
            ``"bernoulli"`` or ``"binomial"``.
        num_states: states of categorical leaves, ``total_count + 1`` of binomial ones;
            ``None`` takes ``max + 1`` of the training data.
        image_shape: ``(height, width)`` for the quad graphs.
        spline_bases: ``M`` uniform B-spline bases of degree ``p`` per
            spline unit (``p = 2``: piecewise quadratic).
        spline_degree: see ``spline_bases``.
        layer: the sum layers: ``"cp"`` (default; ``y_k = Σ_i W[k,i] a_i b_i``, ``K²``
            weights per region) or ``"tucker"`` (``y_k = Σ_{i,j} W[k,i,j] a_i b_j``, ``K³``
            weights per region). Both keep every inference exact; see
            :mod:`bayesfn.circuits.tensorized`.
        init: how :meth:`fit` starts the parameters. ``"data"``: leaf means at random
            training values (spline / categorical leaves from a noisy histogram / noise),
            scales half the variable's standard deviation, sum weights ``U(0, 1)``
            (``log U(0.01, 1)`` for positive weights). ``"centred"``: nested leaves,
            every unit at the variable's data mean (plus 0.1 std jitter) and unit ``k``
            ``s_k`` standard deviations wide, ``s`` spaced geometrically from 1 down to
            0.5; sum weights of magnitude ``U(0.5, 1)`` whose signs alternate over the
            input units (``+ - + ...``) for real weights, positive otherwise, and in the
            lowest sum layer (over pairs of leaves) input unit ``(i, j)``'s magnitude
            times ``s_i s_j / s_0²``, so that every unit has about the same height at the
            data mean. Squaring ``wide - narrow`` then gives a hole at the mean, the start
            a subtractive circuit needs (a ring with ``K = 2``); without that balance the
            narrow unit, 2-8 times higher, makes a spike there instead, from which Adam
            reached the best ring fit in 13 of 32 single starts against 32 of 32 balanced
            (``benchmarks/npc2_init_ideas.py``). Discrete leaves have no centre and start
            as with ``"data"``. ``"auto"``: restart ``r`` starts ``"centred"`` for even
            ``r`` and ``"data"`` for odd ``r``.
        restarts: number of starts :meth:`fit` tries: each runs a quarter of ``max_steps``
            and is scored at the best of its checks every ``val_every`` steps; the one with
            the best validation log-likelihood (that of :meth:`fit`'s ``holdout`` share of
            the data when no ``validation`` is given; with neither, the full-batch
            training log-likelihood, or with mini-batches the training log-likelihood at
            the end of its trial) continues for the rest. ``1``: one start, no trial.
            Start ``r`` draws its parameters as start 0 of the same model with seed
            ``seed + 100003 r`` would (the region graph stays the one ``seed`` made).
        seed: seeds the region graph and the initialisation.
        dtype: ``"float64"`` (default) or ``"float32"``.
        device: where the circuit lives.
    """

    squared: bool
    _weights: str
    #: Squared circuits evaluate marginals / conditionals through
    #: ``forward_matrix_mixed`` (observed subtrees as vectors); False forces the plain
    #: all-matrix path (kept as the reference the fast path is tested against).
    _mixed_matrix_path: bool = True

    def __init__(
        self,
        num_units: int = 8,
        *,
        region_graph: str | dict | RegionGraph = "random",
        num_replicas: int = 1,
        input: str = "gaussian",
        num_states: int | None = None,
        image_shape: tuple[int, int] | None = None,
        spline_bases: int = 32,
        spline_degree: int = 2,
        layer: str = "cp",
        init: str = "data",
        restarts: int = 1,
        seed: int = 0,
        dtype: str | torch.dtype = "float64",
        device: str | None = None,
    ) -> None:
        if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 1:
            raise ValueError(f"num_units must be a positive int; got {num_units!r}")
        if isinstance(region_graph, RegionGraph):
            region_graph = region_graph.to_dict()
        if isinstance(region_graph, str) and region_graph not in _GRAPHS:
            raise ValueError(
                f"region_graph must be one of {_GRAPHS} or a RegionGraph; got {region_graph!r}"
            )
        if not isinstance(region_graph, str | dict):
            raise TypeError(
                "region_graph must be a str, dict or RegionGraph; got "
                f"{type(region_graph).__name__}"
            )
        if input not in _INPUTS:
            raise ValueError(f"input must be one of {_INPUTS}; got {input!r}")
        if num_states is not None and (not isinstance(num_states, int) or num_states < 2):
            raise ValueError(f"num_states must be an int of at least 2 or None; got {num_states!r}")
        if region_graph in ("quad", "quad_graph") and image_shape is None:
            raise ValueError(f"region_graph={region_graph!r} needs image_shape=(height, width)")
        self.num_units = num_units
        self.region_graph = region_graph
        self.num_replicas = int(num_replicas)
        self.input = input
        self.num_states = num_states
        self.image_shape = None if image_shape is None else [int(v) for v in image_shape]
        if not (isinstance(spline_degree, int) and 1 <= spline_degree <= 3):
            raise ValueError(f"spline_degree must be 1, 2 or 3; got {spline_degree!r}")
        if not (isinstance(spline_bases, int) and spline_bases > spline_degree):
            raise ValueError(
                f"spline_bases must be an int above spline_degree; got {spline_bases!r}"
            )
        self.spline_bases = spline_bases
        self.spline_degree = spline_degree
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}; got {layer!r}")
        self.layer = layer
        if not isinstance(init, str):
            raise TypeError(f"init must be a str, one of {_INITS}; got {type(init).__name__}")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}; got {init!r}")
        self.init = init
        if isinstance(restarts, bool) or not isinstance(restarts, int):
            raise TypeError(f"restarts must be an int (at least 1); got {type(restarts).__name__}")
        if restarts < 1:
            raise ValueError(f"restarts must be at least 1; got {restarts}")
        self.restarts = restarts
        self.seed = int(seed)
        self.dtype = resolve_dtype(dtype, torch.float64)
        self.device = None if device is None else str(resolve_device(device))

    def _check_squarable(self) -> None:
        """Refuse, at construction, a squared model over a graph known not to be
        structured-decomposable (a generated graph is checked again when built)."""
        if not self.squared:
            return
        if isinstance(self.region_graph, dict):
            RegionGraph.from_dict(self.region_graph).check_structured_decomposable(
                f"{type(self).__name__}(squared)"
            )
        elif self.region_graph == "quad_graph":
            h, w = self.image_shape
            quad_tree(h, w, structured=False).check_structured_decomposable(
                f"{type(self).__name__}(squared)"
            )

    # ------------------------------------------------------------------ building
    @property
    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _graph(self, d: int) -> RegionGraph:
        rg = self.region_graph
        if isinstance(rg, dict):
            graph = RegionGraph.from_dict(rg)
        elif rg == "random":
            graph = random_binary_tree(d, num_replicas=self.num_replicas, seed=self.seed)
        elif rg == "linear":
            graph = linear_tree(d, seed=self.seed)
        else:
            h, w = self.image_shape
            graph = quad_tree(h, w, structured=rg == "quad")
        if graph.num_variables != d:
            raise ValueError(
                f"the region graph covers {graph.num_variables} variables but the data has {d}"
            )
        return graph

    def _make_inputs(self, num_states: int | None) -> Any:
        dtype = self.dtype
        k = self.num_units

        # NPC²'s spline and categorical leaves are signed (real coefficients / tables),
        # as in the paper's code; MPC and MPC² keep densities, and so do Gaussian, binomial
        # and Bernoulli leaves everywhere (the authors' squared binomials are positive)
        signed = self.squared and self._weights == "real"

        def make(variables: torch.Tensor) -> InputLayer:
            if self.input == "gaussian":
                return GaussianInput(variables, k, dtype=dtype)
            if self.input == "spline":
                return SplineInput(
                    variables, k, self.spline_bases, self.spline_degree, signed=signed, dtype=dtype
                )
            if self.input == "bernoulli":
                return BernoulliInput(variables, k, dtype=dtype)
            if self.input == "binomial":
                return BinomialInput(variables, k, num_states - 1, dtype=dtype)
            return CategoricalInput(variables, k, num_states, signed=signed, dtype=dtype)

        return make

    def _build(self, d: int, num_states: int | None) -> torch.Generator:
        generator = torch.Generator().manual_seed(self.seed)
        self.num_variables_ = d
        self.num_states_ = num_states
        self.graph_ = self._graph(d)
        self.module_ = TensorizedCircuit(
            self.graph_,
            self._make_inputs(num_states),
            self.num_units,
            weights=self._weights,
            squared=self.squared,
            layer=self.layer,
            dtype=self.dtype,
            generator=generator,
        ).to(self._device)
        return generator

    # ------------------------------------------------------------------ validation
    def _check_x(self, x: Any, name: str, *, allow_nan: bool = False) -> torch.Tensor:
        t = as_tensor(x, name, dtype=self.dtype, device=self._device)
        d = self.num_variables_
        if t.ndim == 1 and t.shape[0] == d:
            raise ValueError(
                f"{name} must have shape (n, {d}); got {tuple(t.shape)} (add a row dimension)"
            )
        if t.ndim != 2 or t.shape[1] != d:
            raise ValueError(
                f"{name} must have shape (n, {d}): one column per variable of the circuit; "
                f"got {tuple(t.shape)}"
            )
        if t.shape[0] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
        if torch.isinf(t).any():
            raise ValueError(f"{name} contains inf")
        if not allow_nan and torch.isnan(t).any():
            row = int(torch.isnan(t).any(1).nonzero()[0])
            raise ValueError(
                f"{name} contains NaN (first in row {row}) but nothing says which values are "
                "missing: use marginal_log_prob(x, mask=...), posterior(evidence, mask=...) or "
                "impute(x)"
            )
        self.module_.inputs.check_values(torch.nan_to_num(t, nan=0.0), name)
        return t

    # ------------------------------------------------------------------ core evaluation
    def _leaf_vector(
        self, x: torch.Tensor, codes: torch.Tensor, *, need_sign: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Leaf values ``(L, B, K)`` for ``x`` ``(B, d)`` and ``codes`` ``(B, d)``.

        Each leaf quantity is computed only for the leaf rows whose variable asks for it.
        With ``need_sign=False`` the sign is ``None`` where every value is non-negative
        (the caller's circuit pass then reads no signs: positive weights).
        """
        inp = self.module_.inputs
        var = inp.variables
        xl = torch.nan_to_num(x[:, var].T, nan=0.0)  # (L, B)
        cl = codes[:, var].T  # (L, B)
        B, L, K = x.shape[0], inp.num_leaves, inp.num_units
        if codes.numel() and bool((cl == OBSERVE).all()):
            # the likelihood path: every leaf observed, no masking or scatter needed
            log, sign = inp.density(xl)
            return log, (sign if need_sign else None), inp.signed
        log = torch.zeros(L, B, K, dtype=x.dtype, device=x.device)
        sign = torch.ones_like(log)
        signed = False
        for code in torch.unique(codes).tolist():
            if code == MARGINALIZE:
                continue
            rows = (cl == code).any(1).nonzero().squeeze(-1)
            hit = (cl[rows] == code).unsqueeze(-1)
            if code == OBSERVE:
                vl, vs = inp.density(xl[rows], rows)
            elif code == CDF:
                vl, vs = inp.log_cdf(xl[rows], rows), None
            else:
                ml, ms = inp.moment(1 if code == MOMENT1 else 2, rows)
                vl, vs = ml.unsqueeze(1), ms.unsqueeze(1)
                signed = signed or code == MOMENT1
            log = log.index_put((rows,), torch.where(hit, vl, log[rows]))
            if vs is not None:
                sign = sign.index_put((rows,), torch.where(hit, vs, sign[rows]))
        sign = torch.where(torch.isneginf(log), torch.zeros_like(sign), sign)
        return log, sign, signed

    def _leaf_matrix(
        self, x: torch.Tensor, codes: torch.Tensor, leaves: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Leaf matrices ``(L, B, K, K)`` for ``x`` ``(B, d)`` and ``codes`` ``(B, d)``.

        ``leaves``: optional ``(L',)`` leaf rows to compute (then the result has ``L'``)."""
        inp = self.module_.inputs
        var = inp.variables if leaves is None else inp.variables[leaves]
        xl = torch.nan_to_num(x[:, var].T, nan=0.0)
        cl = codes[:, var].T  # (L', B)

        def rows_of(local: torch.Tensor) -> torch.Tensor:  # local rows -> input-layer rows
            return local if leaves is None else leaves[local]

        log, sign = inp.gram_moment(0, leaves)
        shape = (var.numel(), x.shape[0], inp.num_units, inp.num_units)
        present = [c for c in torch.unique(cl).tolist() if c != MARGINALIZE]
        if not present:
            return log.unsqueeze(1), sign.unsqueeze(1)  # batch-independent: broadcast
        log, sign = log.unsqueeze(1).expand(shape), sign.unsqueeze(1).expand(shape)
        for code in present:
            rows = (cl == code).any(1).nonzero().squeeze(-1)
            hit = (cl[rows] == code)[..., None, None]
            if code == OBSERVE:
                gl, gs = inp.gram_density(xl[rows], rows_of(rows))
            elif code == CDF:
                gl, gs = inp.gram_cdf(xl[rows], rows_of(rows))
            else:
                gl, gs = inp.gram_moment(1 if code == MOMENT1 else 2, rows_of(rows))
                gl, gs = gl.unsqueeze(1), gs.unsqueeze(1)
            log = log.index_put((rows,), torch.where(hit, gl, log[rows]))
            sign = sign.index_put((rows,), torch.where(hit, gs, sign[rows]))
        return log, sign

    def _matrix_mixed(
        self, x: torch.Tensor, codes: torch.Tensor, *, trace: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, B)`` squared replica values through
        :meth:`~bayesfn.circuits.tensorized.TensorizedCircuit.forward_matrix_mixed`: leaves
        observed in every row stay vectors, leaves asked for the same row-independent
        integral in every row stay one matrix, only the rest become per-row matrices."""
        inp = self.module_.inputs
        var = inp.variables
        cl = codes[:, var].T  # (L, B)
        first = cl[:, 0]
        uniform = (cl == first.unsqueeze(1)).all(1)
        row_free = (first == MARGINALIZE) | (first == MOMENT1) | (first == MOMENT2)
        kind = torch.full_like(first, FULL)
        kind = torch.where(uniform & (first == OBSERVE), VECTOR, kind)
        kind = torch.where(uniform & row_free, CONST, kind)
        const = vector = full = None
        ci = (kind == CONST).nonzero().squeeze(-1)
        if ci.numel():
            shape = (ci.numel(), inp.num_units, inp.num_units)
            log = torch.zeros(shape, dtype=x.dtype, device=x.device)
            sign = torch.zeros_like(log)
            for code, k in ((MARGINALIZE, 0), (MOMENT1, 1), (MOMENT2, 2)):
                sub = (first[ci] == code).nonzero().squeeze(-1)
                if sub.numel():
                    gl, gs = inp.gram_moment(k, ci[sub])
                    log, sign = log.index_put((sub,), gl), sign.index_put((sub,), gs)
            const = (log.unsqueeze(1), sign.unsqueeze(1))
        vi = (kind == VECTOR).nonzero().squeeze(-1)
        if vi.numel():
            xl = torch.nan_to_num(x[:, var[vi]].T, nan=0.0)
            vector = inp.density(xl, vi)
        fi = (kind == FULL).nonzero().squeeze(-1)
        if fi.numel():
            fl, fs = self._leaf_matrix(x, codes, fi)
            shape = (fi.numel(), x.shape[0], inp.num_units, inp.num_units)
            full = (fl.expand(shape), fs.expand(shape))
        return self.module_.forward_matrix_mixed(
            kind, const, vector, full, batch=x.shape[0], trace=trace
        )

    def _log_f(
        self, x: torch.Tensor, codes: torch.Tensor, *, trace: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed-log ``(B,)`` of ``∫ f`` with each leaf asked for what ``codes`` says.

        Args:
            x: ``(B, d)`` values (ignored where the code is ``MARGINALIZE`` / a moment).
            codes: ``(B, d)`` or ``(d,)`` long: ``MARGINALIZE`` (integrate out),
                ``OBSERVE`` (evaluate at ``x``), ``CDF`` (integrate up to ``x``),
                ``MOMENT1`` / ``MOMENT2`` (integrate against ``x`` / ``x²``).
        """
        codes = codes.expand(x.shape[0], -1) if codes.ndim == 1 else codes
        m = self.module_
        positive = self._weights != "real"
        if not self.squared:
            log, sign, signed = self._leaf_vector(x, codes, need_sign=not positive)
            rl, rs = m.forward_vector(log, sign, signed=signed, trace=trace)
            return signed_logsumexp(rl, rs, dim=0)
        if bool((codes == OBSERVE).all()):
            log, sign, _ = self._leaf_vector(x, codes, need_sign=not positive)
            rl, _ = m.forward_vector(log, sign, signed=not positive, trace=trace)
            out = torch.logsumexp(2 * rl, dim=0)
            return out, (~torch.isneginf(out)).to(out.dtype)
        if self._mixed_matrix_path:
            rl, rs = self._matrix_mixed(x, codes, trace=trace)
        else:
            log, sign = self._leaf_matrix(x, codes)
            rl, rs = m.forward_matrix(log, sign, trace=trace)
        out_log, out_sign = signed_logsumexp(rl, rs, dim=0)
        return out_log.expand(x.shape[0]), out_sign.expand(x.shape[0])

    # ------------------------------------------------------------------ public inference
    def log_partition(self) -> torch.Tensor:
        """``log Z = log ∫ f`` of the unnormalised circuit ``f``: a 0-d tensor."""
        self._check_fitted()
        with torch.no_grad():
            return self._log_partition()

    def _log_partition(self) -> torch.Tensor:
        """Differentiable ``log Z`` (marginalise every variable).

        What :meth:`_log_f` computes for a ``(1, d)`` batch that marginalises everything,
        without its per-code dispatch (run at every training step): the integral of a
        normalised leaf is 1, and a squared circuit's leaf matrices are the Gram matrices
        ``∫ f_i f_j`` for every leaf, so only the (batch-free) circuit pass remains."""
        m = self.module_
        inp = m.inputs
        if not self.squared:
            shape = (inp.num_leaves, 1, inp.num_units)
            log = torch.zeros(shape, dtype=self.dtype, device=self._device)
            rl, rs = m.forward_vector(log, torch.ones_like(log), signed=False)
        else:
            log, sign = inp.gram_moment(0)
            rl, rs = m.forward_matrix(log.unsqueeze(1), sign.unsqueeze(1))
        return signed_logsumexp(rl, rs, dim=0)[0][0]

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable ``log p(x)`` ``(B,)`` of complete data ``x`` ``(B, d)``: the
        training objective, so it skips :meth:`_log_f`'s per-code dispatch (and its host
        synchronisations) and, for an unsquared circuit, computes ``log Z`` in the same
        pass as ``log f(x)``: integrating every leaf out gives leaf values of exactly 1,
        so ``Z`` is one more batch row through the same layers. That halves the kernel
        launches of a training step, which is what bounds it on a GPU at these sizes."""
        m = self.module_
        inp = m.inputs
        xl = x[:, inp.variables].T  # (L, B)
        if self._weights == "real":  # NPC²: signed weights (and leaves)
            rl, _ = m.forward_vector(*inp.density(xl), signed=True)
        else:
            log = inp.log_density(xl)  # (L, B, K); positive weights read no signs
            if not self.squared:
                log = torch.cat((log, log.new_zeros(log.shape[0], 1, log.shape[2])), dim=1)
                out = torch.logsumexp(m.forward_vector(log, None, signed=False)[0], dim=0)
                return out[:-1] - out[-1]  # row B is log Z
            rl, _ = m.forward_vector(log, None, signed=False)
        return torch.logsumexp(2 * rl, dim=0) - self._log_partition()

    def log_prob(self, x: Any) -> torch.Tensor:
        """Exact log density (or mass) ``log p(x)``: ``x`` is ``(n, d)``, the result ``(n,)``."""
        self._check_fitted()
        x = self._check_x(x, "x")
        with torch.no_grad():
            return self._log_prob(x)

    def marginal_log_prob(self, x: Any, mask: Any) -> torch.Tensor:
        """Exact ``log p(x_S)`` of the variables ``S`` where ``mask`` is True.

        Args:
            x: ``(n, d)``; entries outside ``S`` are ignored (NaN allowed there).
            mask: ``(d,)`` or ``(n, d)`` bool, True = observed (kept), False = integrated
                out. All False gives ``log 1 = 0``.

        Returns:
            ``(n,)`` log marginal densities.
        """
        self._check_fitted()
        x = self._check_x(x, "x", allow_nan=True)
        mask = self._check_mask(mask, x)
        if torch.isnan(x[mask.expand_as(x)]).any():
            raise ValueError("x contains NaN where mask says the value is observed")
        codes = torch.where(mask, OBSERVE, MARGINALIZE).long()
        with torch.no_grad():
            return self._log_f(x, codes)[0] - self.log_partition()

    def _check_mask(self, mask: Any, x: torch.Tensor | None) -> torch.Tensor:
        d = self.num_variables_
        m = torch.as_tensor(mask, device=self._device)
        if m.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = observed); got dtype {m.dtype}")
        ok = m.shape == (d,) or (x is not None and m.shape == x.shape)
        if not ok:
            raise ValueError(f"mask must have shape ({d},) or that of x; got {tuple(m.shape)}")
        return m

    def posterior(self, evidence: Any = None, *, mask: Any = None) -> Any:
        """The exact conditional distribution of the unobserved variables.

        Args:
            evidence: ``(n, d)`` (batch ``(n,)``) or ``(d,)`` (no batch) values; entries
                where ``mask`` is False are ignored and may be NaN. ``None`` gives the
                joint distribution of all ``d`` variables.
            mask: ``(d,)`` bool, True where ``evidence`` is observed, shared by every row
                (the event ``(d_unobserved,)`` must be one shape). Required whenever
                ``evidence`` is given.

        Returns:
            A :class:`~bayesfn.circuits.ConditionalPosterior` with event
            ``(d_unobserved,)``.
        """
        from bayesfn.circuits.conditional import ConditionalPosterior

        self._check_fitted()
        d = self.num_variables_
        if evidence is None:
            if mask is not None and bool(torch.as_tensor(mask).any()):
                raise ValueError("mask says some values are observed but evidence is None")
            x = torch.zeros(d, dtype=self.dtype, device=self._device)
            return ConditionalPosterior(self, x, torch.zeros(d, dtype=torch.bool))
        ev = as_tensor(evidence, "evidence", dtype=self.dtype, device=self._device)
        if mask is None:
            raise ValueError(
                "posterior(evidence) needs mask= (a (d,) bool tensor, True = observed); "
                "to impute NaN entries row by row use impute()"
            )
        mask = torch.as_tensor(mask, device=self._device)
        if mask.dtype != torch.bool or mask.shape != (d,):
            raise ValueError(
                f"mask must be a ({d},) bool tensor shared by all rows; got dtype "
                f"{mask.dtype}, shape {tuple(mask.shape)} (use impute() for row-wise masks)"
            )
        single = ev.ndim == 1
        rows = self._check_x(ev.unsqueeze(0) if single else ev, "evidence", allow_nan=True)
        if torch.isnan(rows[:, mask]).any():
            raise ValueError("evidence contains NaN where mask says the value is observed")
        return ConditionalPosterior(self, rows[0] if single else rows, mask)

    def sample(self, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(num_samples, d)`` exact samples by sequential conditional inverse CDF."""
        return self.posterior().sample((int(num_samples),), generator=generator)

    def impute(
        self,
        x: Any,
        mask: Any = None,
        *,
        method: str = "mean",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill the missing entries of ``x`` from the exact conditionals.

        Args:
            x: ``(n, d)`` data; missing entries are NaN (or given by ``mask``).
            mask: optional ``(n, d)`` bool, True = observed; default ``~isnan(x)``.
            method: ``"mean"`` (conditional mean of each missing variable), ``"mode"``
                (discrete leaves: most probable state of each missing variable's
                conditional marginal) or ``"sample"`` (one joint conditional draw).

        Returns:
            ``(n, d)`` with observed entries unchanged and missing ones filled.
        """
        self._check_fitted()
        if method not in ("mean", "mode", "sample"):
            raise ValueError(f"method must be 'mean', 'mode' or 'sample'; got {method!r}")
        x = self._check_x(x, "x", allow_nan=True)
        if mask is None:
            mask = ~torch.isnan(x)
        else:
            mask = self._check_mask(mask, x).expand_as(x)
        out = x.clone()
        patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
        for i, pattern in enumerate(patterns):
            if bool(pattern.all()):
                continue
            rows = (inverse == i).nonzero().squeeze(-1)
            post = self.posterior(x[rows], mask=pattern)
            if method == "mean":
                fill = post.mean
            elif method == "sample":
                fill = post.sample(generator=generator)
            else:
                fill = post.mode
            block = out[rows]
            block[:, ~pattern] = fill.to(out.dtype)
            out[rows] = block
        return out

    # ------------------------------------------------------------------ fitting
    def _infer_states(self, x: torch.Tensor) -> int | None:
        if self.input in ("gaussian", "spline"):
            return None
        if self.input == "bernoulli":
            return 2
        if self.num_states is not None:
            return self.num_states
        return max(int(x.max().item()) + 1, 2)

    def fit(
        self,
        X: Any,
        *,
        validation: Any = None,
        holdout: float | str | None = "auto",
        max_steps: int = 1000,
        batch_size: int | None = None,
        lr: float = 0.01,
        patience: int | None = 5,
        val_every: int = 50,
        seed: int | None = None,
        callbacks=(),
        progress_bar: bool = True,
        checkpoint_dir=None,
        checkpoint_every: int = 100,
        warm_start: bool = False,
        cuda_graph: bool = False,
    ) -> CircuitModel:
        """Maximum likelihood by Adam on the exact NLL, ``Z`` recomputed every step.

        Args:
            X: ``(n, d)`` training data (numpy or torch; discrete leaves need integer
                states).
            validation: optional ``(m, d)`` validation data; then the fit stops early
                when the validation log-likelihood has not improved for ``patience``
                evaluations (every ``val_every`` steps) and keeps the best parameters.
                Without it, ``holdout`` takes its place; with neither, a full-batch fit
                (``batch_size=None``) checks the training log-likelihood every
                ``val_every`` steps and ends at the best check (no early stopping).
            holdout: without ``validation``, the share of ``X`` (a float in ``(0, 0.5]``)
                held out at random (seeded by ``seed``) as validation data: it scores the
                restarts and the checks and stops the fit early as ``validation`` would,
                and the model trains on the rest. ``None``: no hold-out (train on all of
                ``X``). ``"auto"`` (default): ``0.1`` when ``X`` has at least 50 points
                and no ``validation`` is given, else none. Passing both ``validation``
                and a float ``holdout`` is an error. Measured on 1000-point 2-D sets
                (``benchmarks/npc2_holdout.py``, 20 seeds per row): NPC² with spline
                leaves at ``K=8`` overfits without it (banana -3.665, with it -3.567);
                where nothing overfits, it costs 0-0.02 nats of held-out likelihood.
            max_steps: as in :func:`bayesfn.training.optimize`, like ``batch_size``,
                ``lr``, ``callbacks``, ``progress_bar``, ``checkpoint_dir`` and
                ``checkpoint_every`` (a checkpoint resumes only a fit of the same data
                and settings).
            batch_size: see ``max_steps``.
            lr: see ``max_steps``.
            seed: as in :func:`bayesfn.training.optimize`; defaults to ``self.seed``.
            callbacks: see ``max_steps``.
            progress_bar: see ``max_steps``.
            checkpoint_dir: see ``max_steps``.
            checkpoint_every: see ``max_steps``.
            warm_start: continue from the current parameters of an already fitted
                model (same number of variables) instead of building and initialising
                a new circuit, e.g. after setting parameters by hand (``init`` and
                ``restarts`` are then not used).
            cuda_graph: on a CUDA device, replay each training step's kernels as one
                recorded CUDA graph (:func:`bayesfn.training.optimize`); this removes the
                per-kernel launch cost that bounds small circuits on a GPU. Untimed so
                far: ``benchmarks/kernels_circuit_bench.py`` measures it.

        Returns:
            ``self``; ``fit_result_.diagnostics`` holds ``train_log_likelihood`` and, with
            validation data, ``val_log_likelihood`` (means per example); with
            ``restarts > 1`` also ``restart_log_likelihoods`` (each start's score after
            its trial steps) and ``restart_chosen`` (the start kept), and
            ``returned_to_trial=True`` when the continued run ended below the kept start's
            trial score and the fit returned to that start's state. The trial steps
            count in ``max_steps``: the kept start runs ``max_steps`` in all, the fit
            ``(1 + (restarts - 1) / 4) max_steps`` steps.

        Raises:
            FloatingPointError: the loss became non-finite; the message names the first
                layer whose output (or parameter) is not finite.
        """
        x = as_tensor(X, "X", dtype=self.dtype, device=self._device)
        if x.ndim != 2:
            raise ValueError(f"X must have shape (n, d); got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("X is empty")
        if not torch.isfinite(x).all():
            raise ValueError("X contains NaN or inf; fit needs complete data")
        share = self._holdout_share(holdout, validation, x.shape[0])
        if warm_start:
            self._check_fitted()
            x = self._check_x(x, "X")
        else:
            generator = self._build(x.shape[1], self._infer_states(x))
            x = self._check_x(x, "X")
            # every start draws from all of X: spline knots then span the held-out points
            x_init = x
            self._initialise(x, generator, 0)
        xv = None if validation is None else self._check_x(validation, "validation")
        if share is not None:
            g = torch.Generator().manual_seed(
                (self.seed if seed is None else seed) + _HOLDOUT_SEED_OFFSET
            )
            order = torch.randperm(x.shape[0], generator=g).to(x.device)
            m = max(1, round(share * x.shape[0]))
            x, xv = x[order[m:]], x[order[:m]]
        module = self.module_

        def loss_fn(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return -self._log_prob(batch[0]).mean()  # no host sync: CUDA-graph safe

        def val_fn() -> float:
            return float(-self._log_prob(xv).mean())

        def train_fn() -> float:
            return float(-self._log_prob(x).mean())

        # full batches and no validation data: every step's loss is the training NLL, so
        # checking it every val_every steps costs little and lets a late Adam spike
        # (measured on squared circuits near a cancellation) be undone
        keep_best_train = xv is None and batch_size is None and not cuda_graph

        trials: list[float] = []
        if not warm_start and self.restarts > 1 and max_steps > 0:
            trial_steps = max(1, int(_RESTART_SHARE * max_steps))
            trials = self._try_starts(
                x,
                x_init,
                loss_fn,
                val_fn if xv is not None else (train_fn if keep_best_train else None),
                steps=trial_steps,
                val_every=val_every,
                batch_size=batch_size,
                lr=lr,
                seed=self.seed if seed is None else seed,
                callbacks=callbacks,
                cuda_graph=cuda_graph,
            )
            max_steps -= trial_steps
            # the kept start, at its best trial check: the rest of the fit starts Adam
            # afresh (its first steps move every parameter by about lr), which near a
            # cancellation can throw a squared circuit out of the basin its trial found
            # and below the trial's own score (measured: 4 of 120 ring fits, one banana
            # fit of 6 ended below MPC that way); the fit then returns to this state
            kept = {k: v.detach().clone() for k, v in module.state_dict().items()}
        result = optimize(
            module,
            loss_fn,
            data=(x,),
            batch_size=batch_size,
            max_steps=max_steps,
            lr=lr,
            seed=self.seed if seed is None else seed,
            callbacks=callbacks,
            val_fn=val_fn if xv is not None else (train_fn if keep_best_train else None),
            val_every=val_every,
            patience=patience if xv is not None else None,
            progress_bar=progress_bar,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            fingerprint=None if checkpoint_dir is None else self.get_config(),
            desc=type(self).__name__,
            on_nonfinite=lambda batch, loss: self._explain_nonfinite(batch[0], loss),
            cuda_graph=cuda_graph,
        )
        if trials:
            with torch.no_grad():
                nll = val_fn() if xv is not None else train_fn()
            if not -nll >= max(trials):
                module.load_state_dict(kept)
                result.diagnostics["returned_to_trial"] = True
        if share is not None:
            result.diagnostics["holdout_size"] = int(xv.shape[0])
        with torch.no_grad():
            result.diagnostics["train_log_likelihood"] = float(self._log_prob(x).mean())
            if xv is not None:
                result.diagnostics["val_log_likelihood"] = float(self._log_prob(xv).mean())
            result.diagnostics["log_partition"] = float(self._log_partition())
        if trials:
            result.diagnostics["restart_log_likelihoods"] = trials
            result.diagnostics["restart_chosen"] = max(range(len(trials)), key=trials.__getitem__)
        self.fit_result_ = result
        return self

    @staticmethod
    def _holdout_share(holdout: Any, validation: Any, n: int) -> float | None:
        """The share of ``n`` training points :meth:`fit` holds out (``None``: none)."""
        if isinstance(holdout, str):
            if holdout != "auto":
                raise ValueError(
                    f"holdout must be a float in (0, 0.5], None or 'auto'; got {holdout!r}"
                )
            if validation is not None or n < _HOLDOUT_MIN_N:
                return None
            return _AUTO_HOLDOUT
        if holdout is None:
            return None
        if isinstance(holdout, bool) or not isinstance(holdout, int | float):
            raise TypeError(
                f"holdout must be a float in (0, 0.5], None or 'auto'; got {type(holdout).__name__}"
            )
        if not 0 < holdout <= 0.5:
            raise ValueError(f"holdout must be in (0, 0.5]; got {holdout!r}")
        if validation is not None:
            raise ValueError(
                "pass validation= or holdout=, not both (holdout=None with validation)"
            )
        if n < 2:
            raise ValueError(f"holdout needs at least 2 points in X; got {n}")
        return float(holdout)

    @torch.no_grad()
    def _initialise(self, x: torch.Tensor, generator: torch.Generator, start: int) -> None:
        """Start ``start`` (0-based) of a circuit whose weights were just drawn as at
        build time, from the ``(n, d)`` training data, as ``init`` says."""
        init = self.init
        if init == "auto":
            init = "centred" if start % 2 == 0 else "data"
        module, inputs = self.module_, self.module_.inputs
        k = self.num_units
        hi, lo = _CENTRED_SCALES
        scales = torch.logspace(math.log10(hi), math.log10(lo), k, dtype=torch.float64)
        scales = scales if k > 1 else scales[:1]
        centred = init == "centred" and hasattr(inputs, "init_centred")
        if centred:
            inputs.init_centred(x, generator, scales)
        else:
            inputs.init_from_data(x, generator)
        for i, w in enumerate(module.weight):
            if init == "data":
                continue  # the build-time draw
            u = 0.5 + 0.5 * torch.rand(w.shape, generator=generator, dtype=torch.float64)
            if centred and i == 0:
                # the lowest layer multiplies pairs of nested univariate leaves: input unit
                # (i, j) peaks at the data mean with height ∝ 1 / (s_i s_j); weighting it by
                # s_i s_j / s_0² gives every unit the same height there, so that
                # wide - narrow is a hole (c = 0 near the mean) rather than a spike
                # (benchmarks/npc2_init_ideas.py balance: one nested start alone, 1000
                # steps, reached the best K=2 fit of two concentric rings in 16 of 16 runs
                # balanced, 4 of 16 unbalanced; of a thick ring 16 of 16 against 9 of 16)
                rel = scales / scales[0]
                u = u * (rel[:, None] * rel[None, :] if w.ndim == 4 else rel**2)
            if module.weights_kind == "real":
                sign = 1 - 2 * (torch.arange(w.shape[-1], dtype=torch.float64) % 2)
                w.copy_((u * sign).to(w))
            else:
                w.copy_(u.log().to(w))

    def _try_starts(
        self,
        x,
        x_init,
        loss_fn,
        check,
        *,
        steps,
        val_every,
        batch_size,
        lr,
        seed,
        callbacks,
        cuda_graph,
    ) -> list[float]:
        """Run ``restarts`` starts for ``steps`` Adam steps each, leave the circuit at the
        best one and return each start's score: minus ``check()`` (the validation, else
        the full-batch training, mean negative log-likelihood) at the best of its checks
        every ``val_every`` steps and at the end, each start ending at that check (a
        late Adam spike near a cancellation then does not decide the choice); without a
        check (mini-batches and no validation data) the training log-likelihood at the
        end; ``-inf`` for a start whose loss diverged."""
        module = self.module_
        scores: list[float] = []
        best, best_state = -math.inf, None
        for start in range(self.restarts):
            if start > 0:
                # start r is start 0 of the same circuit seeded seed + 100003 r
                g = torch.Generator().manual_seed(self.seed + _RESTART_SEED_STRIDE * start)
                with torch.no_grad():
                    for w in module.weight:
                        w.copy_(module._init_weight(tuple(w.shape), w.dtype, g).to(w))
                self._initialise(x_init, g, start)
            try:
                optimize(
                    module,
                    loss_fn,
                    data=(x,),
                    batch_size=batch_size,
                    max_steps=steps,
                    lr=lr,
                    seed=seed,
                    callbacks=callbacks,
                    val_fn=check,
                    val_every=val_every,
                    progress_bar=False,
                    desc=f"{type(self).__name__} start {start}",
                    cuda_graph=cuda_graph,
                )
                with torch.no_grad():
                    nll = check() if check is not None else -self._log_prob(x).mean()
                score = -float(nll)
            except FloatingPointError:
                score = -math.inf
            score = score if math.isfinite(score) else -math.inf
            scores.append(score)
            if score > best or best_state is None:
                best = score
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(best_state)
        return scores

    def _explain_nonfinite(self, x: torch.Tensor, loss: torch.Tensor) -> None:
        for name, p in self.module_.named_parameters():
            if not torch.isfinite(p).all():
                raise FloatingPointError(
                    f"the loss became {loss.item()}: parameter {name!r} holds non-finite "
                    "values; lower lr= or use dtype='float64'"
                )
        with torch.no_grad():
            for label, codes in (("log-likelihood", OBSERVE), ("partition function", MARGINALIZE)):
                trace: list = []
                xx = x if codes == OBSERVE else x[:1]
                codes_t = torch.full((x.shape[1],), codes, dtype=torch.long, device=x.device)
                self._log_f(xx, codes_t, trace=trace)
                for name, out in trace:
                    if torch.isnan(out).any() or (out == math.inf).any():
                        raise FloatingPointError(
                            f"the loss became {loss.item()}: {name} produced non-finite values "
                            f"while computing the {label}; lower lr= or use dtype='float64'"
                        )
        raise FloatingPointError(
            f"the loss became {loss.item()}: the data have zero density under the model "
            "(every layer output is finite or -inf)"
        )

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> dict[str, Any]:
        return {
            "layout": _LAYOUT,
            "num_variables": self.num_variables_,
            "num_states": self.num_states_,
            "graph": self.graph_.to_dict(),
            "module": self.module_.state_dict(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        if state.get("layout") != _LAYOUT:
            # rows of the leaves and folds follow the reader order since layout 2: an older
            # state would load into permuted slots without any error
            raise ValueError(
                f"this circuit was saved with parameter layout {state.get('layout', 1)}; this "
                f"version reads layout {_LAYOUT} only: refit the model"
            )
        rg = self.region_graph
        self.region_graph = state["graph"]  # rebuild exactly the saved graph
        try:
            self._build(int(state["num_variables"]), state["num_states"])
        finally:
            self.region_graph = rg
        module_state = {k: v.to(self._device) for k, v in state["module"].items()}
        self.module_.load_state_dict(module_state)
        self.module_.eval()


class MonotonicCircuit(CircuitModel):
    """Monotonic PC (MPC): positive weights ``exp(θ)``, ``p = c / Z``; with
    ``squared=True`` the squared monotonic PC (MPC²), ``p = Σ_r c_r² / Z``.

    See :class:`CircuitModel` for the settings; ``squared`` needs a
    structured-decomposable region graph.
    """

    _weights = "log"

    def __init__(
        self,
        num_units: int = 8,
        *,
        squared: bool = False,
        region_graph: str | dict | RegionGraph = "random",
        num_replicas: int = 1,
        input: str = "gaussian",
        num_states: int | None = None,
        image_shape: tuple[int, int] | None = None,
        spline_bases: int = 32,
        spline_degree: int = 2,
        layer: str = "cp",
        init: str = "data",
        restarts: int = 1,
        seed: int = 0,
        dtype: str | torch.dtype = "float64",
        device: str | None = None,
    ) -> None:
        super().__init__(
            num_units,
            region_graph=region_graph,
            num_replicas=num_replicas,
            input=input,
            num_states=num_states,
            image_shape=image_shape,
            spline_bases=spline_bases,
            spline_degree=spline_degree,
            layer=layer,
            init=init,
            restarts=restarts,
            seed=seed,
            dtype=dtype,
            device=device,
        )
        self.squared = bool(squared)
        self._check_squarable()


class SquaredCircuit(CircuitModel):
    """Squared non-monotonic PC (NPC², Loconte et al., ICLR 2024): real weights of any
    sign, ``p(x) = Σ_r c_r(x)² / Z``.

    By default (``init="auto"``, ``restarts=4``) :meth:`fit` tries two nested,
    sign-alternating, height-balanced starts and two data starts (see
    :class:`CircuitModel`) for a quarter of ``max_steps`` each and continues the best
    (about 1.75x the steps of one start): from the paper's all-positive ``U(0, 1)`` start
    alone (``init="data", restarts=1``, the initialisation before this option existed)
    Adam rarely leaves the monotonic basin, e.g. it fits a ring like a monotonic circuit
    of the same size. The nested starts find the subtractive solutions (a ring's hole);
    the data starts keep the monotonic kind of solution within reach where that is the
    better one. ``benchmarks/npc2_init_rates.py`` measures how often each setting reaches
    the best solution (``benchmarks/RESULTS.md``).
    Spline and categorical leaves are signed too (real B-spline coefficients and real
    tables over the states, see :class:`~bayesfn.circuits.inputs.SplineInput` and
    :class:`~bayesfn.circuits.inputs.CategoricalInput`); Gaussian, binomial and Bernoulli
    leaves stay normalised densities, as in the paper's code. For signed leaves over
    ``{0, 1}``, use ``input="categorical"`` with ``num_states=2``.

    See :class:`CircuitModel` for the settings; the region graph must be
    structured-decomposable.
    """

    _weights = "real"
    squared = True

    def __init__(
        self,
        num_units: int = 8,
        *,
        region_graph: str | dict | RegionGraph = "random",
        num_replicas: int = 1,
        input: str = "gaussian",
        num_states: int | None = None,
        image_shape: tuple[int, int] | None = None,
        spline_bases: int = 32,
        spline_degree: int = 2,
        layer: str = "cp",
        init: str = "auto",
        restarts: int = 4,
        seed: int = 0,
        dtype: str | torch.dtype = "float64",
        device: str | None = None,
    ) -> None:
        super().__init__(
            num_units,
            region_graph=region_graph,
            num_replicas=num_replicas,
            input=input,
            num_states=num_states,
            image_shape=image_shape,
            spline_bases=spline_bases,
            spline_degree=spline_degree,
            layer=layer,
            init=init,
            restarts=restarts,
            seed=seed,
            dtype=dtype,
            device=device,
        )
        self._check_squarable()
