"""The folded (tensorized) circuit: an input layer and one sum layer per height.

All partitions whose parent region has the same height form one *folded* layer and run
in one batched call. Two kinds of sum layer combine a partition's two children
``a, b`` (each ``(K_in,)``) into the parent's ``K_out`` units:

* **CP** (``layer="cp"``): ``y_k = Σ_i W[k, i] a_i b_i``, weights ``(F, K_out, K_in)``;
* **Tucker** (``layer="tucker"``): ``y_k = Σ_{i,j} W[k, i, j] a_i b_j``, weights
  ``(F, K_out, K_in, K_in)``: a sum over the whole outer product ``a ⊗ b``.

Plain evaluation of ``c(x)`` runs through :func:`bayesfn.kernels.cp_layer` in both cases
(a Tucker layer is the CP layer over the ``K_in²`` pairs ``(i, j)``, so the Triton
dispatch applies to it unchanged). The matrix evaluation of ``∫ c cᵀ`` that squared
circuits use for partition functions, marginals, moments and CDFs runs through
:func:`bayesfn.kernels.sq_layer` for CP and through :func:`tucker_sq_layer` for Tucker.
The partitions of the root are the replicas; each gives one scalar output, so the
circuit returns a ``(R, B)`` tensor and the model decides how to combine the replicas
(summed for a monotonic circuit, squared then summed for a squared one).

Signed values are ``(log|v|, sign)`` pairs throughout.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import torch
from torch import nn

from bayesfn.circuits.inputs import InputLayer
from bayesfn.circuits.region_graph import RegionGraph
from bayesfn.kernels import cp_layer, signed_log, sq_layer
from bayesfn.kernels.cp_layer import cp_layer_positive_log

__all__ = [
    "CONST",
    "FULL",
    "LAYERS",
    "VECTOR",
    "TensorizedCircuit",
    "tucker_layer",
    "tucker_sq_layer",
]

#: The sum-layer kinds a :class:`TensorizedCircuit` can be built with.
LAYERS = ("cp", "tucker")

#: :func:`tucker_sq_layer` runs the batch in slices so that its ``(F, B, K_out, K_in, K_in)``
#: intermediates hold at most this many elements (2**24: 128 MiB in float64).
TUCKER_SQ_MAX_ELEMENTS = 2**24

#: Region kinds of :meth:`TensorizedCircuit.forward_matrix_mixed`: the same matrix for
#: every row, a rank-one ``c cᵀ`` per row (everything below observed), or a general one.
CONST, VECTOR, FULL = 0, 1, 2


def _shift(log: torch.Tensor, dim: tuple[int, ...]) -> torch.Tensor:
    """Detached max of ``log`` over ``dim`` (kept), with 0 where every entry is ``-inf``."""
    m = log.amax(dim=dim, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()


def tucker_layer(
    left_log: torch.Tensor,
    left_sign: torch.Tensor | None,
    right_log: torch.Tensor,
    right_sign: torch.Tensor | None,
    weight: torch.Tensor,
    *,
    signed: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One folded Tucker layer: ``y[f, b, k] = Σ_{i,j} W[f, k, i, j] a[f, b, i] b[f, b, j]``.

    The outer product ``a ⊗ b`` is the Hadamard product of ``a`` repeated along ``j`` and
    ``b`` repeated along ``i``, so the layer is :func:`bayesfn.kernels.cp_layer` over the
    ``K_in²`` flattened pairs ``(i, j)`` with the weights flattened the same way.

    Args:
        left_log: ``(F, B, K_in)`` log-magnitudes of the two children.
        right_log: see ``left_log``.
        left_sign: ``(F, B, K_in)`` signs, or ``None`` when ``signed=False``
            and the inputs are non-negative.
        right_sign: see ``left_sign``.
        weight: ``(F, K_out, K_in, K_in)``: real weights with ``signed=True``, log-weights
            ``θ`` of ``W = exp(θ)`` with ``signed=False`` (as for ``cp_layer``).
        signed: the weight convention, as for ``cp_layer``.

    Returns:
        ``(out_log, out_sign)``, each ``(F, B, K_out)``.
    """
    f, b, k = left_log.shape
    if weight.ndim != 4 or weight.shape[-2:] != (k, k) or weight.shape[0] != f:
        raise ValueError(
            f"weight must have shape ({f}, K_out, {k}, {k}) for inputs of shape "
            f"{tuple(left_log.shape)}; got {tuple(weight.shape)}"
        )

    def rows(t: torch.Tensor | None) -> torch.Tensor | None:  # a_i at pair (i, j)
        return None if t is None else t.unsqueeze(-1).expand(f, b, k, k).reshape(f, b, k * k)

    def cols(t: torch.Tensor | None) -> torch.Tensor | None:  # b_j at pair (i, j)
        return None if t is None else t.unsqueeze(-2).expand(f, b, k, k).reshape(f, b, k * k)

    return cp_layer(
        rows(left_log),
        rows(left_sign),
        cols(right_log),
        cols(right_sign),
        weight.reshape(f, weight.shape[1], k * k),
        signed=signed,
    )


def tucker_sq_layer(
    left_log: torch.Tensor,
    left_sign: torch.Tensor,
    right_log: torch.Tensor,
    right_sign: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared-mode Tucker layer: ``Y[k, k'] = Σ W[k,i,j] W[k',i',j'] A[i,i'] B[j,j']``.

    This is ``W_f (A ⊗ B) W_fᵀ`` for the ``(K_out, K_in²)`` flattening ``W_f`` of ``W``, but
    the ``(K_in², K_in²)`` Kronecker product is never formed: the sum runs as three
    contractions, over ``i`` (``A``), then ``j`` (``B``), then the pair ``(i', j')``
    (``W`` again), costing ``O(K_out K_in³ + K_out² K_in²)`` per fold and batch entry with
    ``(K_out, K_in, K_in)`` intermediates (the batch runs in slices so that these stay
    below :data:`TUCKER_SQ_MAX_ELEMENTS`). ``A`` and ``B`` are shifted by their own
    maximum log-magnitude before leaving log space.

    Args:
        left_log: ``(F, B, K_in, K_in)`` log-magnitudes of ``A`` and ``B``.
        right_log: see ``left_log``.
        left_sign: ``(F, B, K_in, K_in)`` signs in ``{-1, 0, +1}``.
        right_sign: see ``left_sign``.
        weight: ``(F, K_out, K_in, K_in)`` real weights (``exp(θ)`` for monotonic ones).

    Returns:
        ``(out_log, out_sign)``, each ``(F, B, K_out, K_out)``.
    """
    n_rows = max(left_log.shape[1], right_log.shape[1])
    # elements of one batch row's (K_out, K_in, K_in) intermediates, over all folds
    per_row = left_log.shape[0] * weight.shape[1] * left_log.shape[-1] ** 2
    chunk = max(1, TUCKER_SQ_MAX_ELEMENTS // per_row)
    if n_rows > chunk:

        def rows(t: torch.Tensor, start: int) -> torch.Tensor:  # a batch of 1 broadcasts
            return t if t.shape[1] == 1 else t[:, start : start + chunk]

        parts = [
            tucker_sq_layer(
                rows(left_log, s),
                rows(left_sign, s),
                rows(right_log, s),
                rows(right_sign, s),
                weight,
            )
            for s in range(0, n_rows, chunk)
        ]
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)
    ma = _shift(left_log, (-1, -2))
    mb = _shift(right_log, (-1, -2))
    a = left_sign * (left_log - ma).exp()
    b = right_sign * (right_log - mb).exp()
    # u[f, b, k, i', j] = Σ_i W[f, k, i, j] A[f, b, i, i']
    u = torch.einsum("fkij,fbia->fbkaj", weight, a)
    # v[f, b, k, i', j'] = Σ_j u[f, b, k, i', j] B[f, b, j, j']
    v = torch.matmul(u, b.unsqueeze(2))
    # y[f, b, k, k'] = Σ_{i', j'} v[f, b, k, i', j'] W[f, k', i', j']
    y = torch.matmul(v.flatten(-2), weight.flatten(-2).transpose(-1, -2).unsqueeze(1))
    out_log, out_sign = signed_log(y)
    return out_log + ma + mb, out_sign


#: How a layer reads one side's children (see ``TensorizedCircuit._read_plan``).
_Sel = slice | tuple[str, int]


def _grouped_logsumexp(log: torch.Tensor, group: torch.Tensor, size: int) -> torch.Tensor:
    """``(P, B, K)`` non-negative values in log space summed into ``size`` groups."""
    shape = (size, *log.shape[1:])
    idx = group.view(-1, *([1] * (log.ndim - 1))).expand_as(log)
    m = torch.full(shape, -torch.inf, dtype=log.dtype, device=log.device)
    m = m.scatter_reduce(0, idx, log.detach(), reduce="amax", include_self=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    total = torch.zeros(shape, dtype=log.dtype, device=log.device)
    total = total.index_add(0, group, (log - m[group]).exp())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, safe.log(), torch.full_like(total, -torch.inf)) + m


class TensorizedCircuit(nn.Module):
    """A circuit over a :class:`RegionGraph` with ``num_units`` units per region.

    Args:
        graph: the region graph (leaf regions hold one variable each).
        make_inputs: ``callable(variables) -> InputLayer`` for the ``(L,)`` variables of
            the leaf regions.
        num_units: ``K``, units per inner region (the root has one per replica).
        weights: ``"log"`` for positive weights ``exp(θ)`` (monotonic), ``"real"`` for
            unconstrained real weights (non-monotonic; needs ``squared=True``).
        squared: whether the circuit will be squared; then the graph must be
            structured-decomposable.
        layer: ``"cp"`` (weights ``(F, K_out, K_in)``) or ``"tucker"`` (weights
            ``(F, K_out, K_in, K_in)``); see the module docstring.
        generator: seeds the weight initialisation, element by element for either layer
            kind: ``W ~ U(0, 1)`` for real weights (the paper's NPC² initialisation; its
            code initialises Tucker weights with the same elementwise rule),
            ``θ = log U(0.01, 1)`` for positive ones.
    """

    def __init__(
        self,
        graph: RegionGraph,
        make_inputs: Callable[[torch.Tensor], InputLayer],
        num_units: int,
        *,
        weights: str,
        squared: bool,
        layer: str = "cp",
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}; got {layer!r}")
        if weights not in ("log", "real"):
            raise ValueError(f"weights must be 'log' or 'real'; got {weights!r}")
        if weights == "real" and not squared:
            raise ValueError("real (signed) weights need squared=True to give a density")
        if squared:
            graph.check_structured_decomposable("squaring a circuit")
        self.graph, self.weights_kind, self.squared = graph, weights, squared
        self.layer = layer
        self.num_units = K = int(num_units)
        # a Tucker weight has one input axis per child
        in_shape = (K, K) if layer == "tucker" else (K,)
        heights = graph.heights()
        inner = [p for p in graph.partitions if p[0] != graph.root]
        leaves, inner = _consumer_order(graph, heights, inner)
        self.inputs = make_inputs(torch.tensor([graph.scopes[r][0] for r in leaves]))
        pos = {r: i for i, r in enumerate(leaves)}  # region id -> buffer position
        self.layer_names: list[str] = []
        # partition (parent, left, right) -> (layer, fold): where its weights live
        self.slots: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.leaf_slots = pos.copy()  # leaf region id -> row of the input layer
        self._index: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]] = []
        params = []
        next_pos = len(leaves)
        for h in sorted({heights[p] for p, _, _ in inner}):
            parts = [q for q in inner if heights[q[0]] == h]
            # output rows follow the parents' first appearance in ``parts`` (so that an
            # ungrouped layer's fold f is region f)
            regions = list(dict.fromkeys(p for p, _, _ in parts))
            where = {r: i for i, r in enumerate(regions)}
            left = torch.tensor([pos[a] for _, a, _ in parts])
            right = torch.tensor([pos[b] for _, _, b in parts])
            group = None
            if len(regions) != len(parts):  # some region splits several ways (monotonic only)
                group = torch.tensor([where[p] for p, _, _ in parts])
            for r in regions:
                pos[r] = next_pos + where[r]
            next_pos += len(regions)
            self._index.append((left, right, group, len(regions)))
            self.slots.update({q: (len(self.layer_names), f) for f, q in enumerate(parts)})
            params.append(self._init_weight((len(parts), K, *in_shape), dtype, generator))
            self.layer_names.append(
                f"{'Tucker' if layer == 'tucker' else 'sum'} layer {len(self.layer_names)} "
                f"(height {h}, {len(parts)} folds)"
            )
        roots = graph.partitions_of(graph.root)
        self._index.append(
            (
                torch.tensor([pos[a] for _, a, _ in roots]),
                torch.tensor([pos[b] for _, _, b in roots]),
                None,
                len(roots),
            )
        )
        params.append(self._init_weight((len(roots), 1, *in_shape), dtype, generator))
        self.slots.update({q: (len(self.layer_names), f) for f, q in enumerate(roots)})
        self.layer_names.append(f"root sum layer ({len(roots)} replicas)")
        self.weight = nn.ParameterList(params)
        for i, (left, right, group, _) in enumerate(self._index):
            self.register_buffer(f"_left{i}", left, persistent=False)
            self.register_buffer(f"_right{i}", right, persistent=False)
            if group is not None:
                self.register_buffer(f"_group{i}", group, persistent=False)

    def _init_weight(self, shape, dtype, generator) -> nn.Parameter:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        if self.weights_kind == "real":
            return nn.Parameter(u.to(dtype))
        return nn.Parameter((0.01 + 0.99 * u).log().to(dtype))

    def _layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        size = self._index[i][3]
        group = getattr(self, f"_group{i}", None)
        return getattr(self, f"_left{i}"), getattr(self, f"_right{i}"), group, size

    def real_weight(self, i: int) -> torch.Tensor:
        """Weights of layer ``i`` on the linear scale: ``(F, K_out, K_in)`` for CP,
        ``(F, K_out, K_in, K_in)`` for Tucker."""
        w = self.weight[i]
        return w.exp() if self.weights_kind == "log" else w

    @property
    def num_replicas(self) -> int:
        return self._index[-1][3]

    # ------------------------------------------------------------------ vector
    def forward_vector(
        self,
        leaf_log: torch.Tensor,
        leaf_sign: torch.Tensor | None,
        *,
        signed: bool,
        trace: list | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluate ``c`` with the given leaf values.

        Args:
            leaf_log: ``(L, B, K)`` signed-log leaf values; ``leaf_sign`` is
                not read (may be ``None``) when ``signed=False`` and the weights are
                positive.
            leaf_sign: see ``leaf_log``.
            signed: whether any value may be negative (real weights, or signed leaves
                such as first moments).
            trace: if a list, ``(layer name, out_log)`` of every layer is appended.

        Returns:
            ``(R, B)`` signed-log value of each replica's root.
        """
        logs: list[torch.Tensor] = [leaf_log]
        signs: list[torch.Tensor | None] = [leaf_sign]
        use_signed = signed or self.weights_kind == "real"
        layer_fn = tucker_layer if self.layer == "tucker" else cp_layer
        reader = self._split_reader()
        pieces: list[list[torch.Tensor]] = []
        sign_pieces: list[list[torch.Tensor]] = []

        def stored(t_log: torch.Tensor, t_sign: torch.Tensor | None) -> None:
            # a tree reads every stored row once, in contiguous runs: split views whose
            # backward is one concatenation (no zero-filled gradient per read)
            if reader is not None:
                sizes = reader.sizes[len(pieces)]
                pieces.append(list(t_log.split(sizes)))
                if use_signed:
                    sign_pieces.append(list(t_sign.split(sizes)))

        stored(leaf_log, leaf_sign)
        for i, (j, lsel, rsel) in enumerate(self._read_plan()):
            group, size = self._index[i][2], self._index[i][3]
            w = self.real_weight(i) if use_signed else self.weight[i]
            if reader is not None:
                left, right = reader.read(i, 0, pieces), reader.read(i, 1, pieces)
                if use_signed:
                    ls, rs = reader.read(i, 0, sign_pieces), reader.read(i, 1, sign_pieces)
                else:
                    ls = rs = None
            else:
                # concatenate only the stored outputs this layer reads (usually the last)
                all_log = logs[j] if j == len(logs) - 1 else torch.cat(logs[j:])
                left, right = self._take(all_log, lsel), self._take(all_log, rsel)
                if use_signed:
                    all_sign = signs[j] if j == len(signs) - 1 else torch.cat(signs[j:])
                    ls, rs = self._take(all_sign, lsel), self._take(all_sign, rsel)
                else:
                    ls = rs = None
            if use_signed or self.layer == "tucker":
                out_log, out_sign = layer_fn(left, ls, right, rs, w, signed=use_signed)
            else:  # positive values: no sign tensor to build
                out_sign = None
                out_log = cp_layer_positive_log(left, right, w)
            if group is not None:
                if use_signed:
                    raise ValueError("a region with several partitions cannot carry signs")
                out_log = _grouped_logsumexp(out_log, getattr(self, f"_group{i}"), size)
            if trace is not None:
                trace.append((self.layer_names[i], out_log))
            logs.append(out_log)
            signs.append(out_sign if use_signed else None)
            if i < len(self._index) - 1:
                stored(out_log, out_sign)
        root_log = logs[-1].squeeze(-1)
        if use_signed:
            return root_log, signs[-1].squeeze(-1)
        return root_log, (~torch.isneginf(root_log)).to(root_log.dtype)

    def _read_plan(self) -> list[tuple[int, _Sel, _Sel]]:
        """Per layer: the first stored output ``j`` it reads (0 = the leaves) and how it
        reads its left and right children from the concatenation of outputs ``j, j+1, ...``:
        a ``slice`` (a strided view, no copy) where the rows form an arithmetic progression,
        the usual case, else ``(name of the index buffer, offset)`` to gather.
        Built once from the structure and cached."""
        if getattr(self, "_plan", None) is None:
            starts = [0, len(self.graph.leaves)]  # buffer position of each stored output
            for _, _, _, size in self._index[:-1]:
                starts.append(starts[-1] + size)
            plan = []
            for i, (left, right, _, _) in enumerate(self._index):
                low = int(min(left.min(), right.min()))
                j = max(t for t, s0 in enumerate(starts) if s0 <= low)
                sels = []
                for side, idx in (("_left", left), ("_right", right)):
                    rows = [v - starts[j] for v in idx.tolist()]
                    step = rows[1] - rows[0] if len(rows) > 1 else 1
                    if step > 0 and rows == list(range(rows[0], rows[0] + step * len(rows), step)):
                        sels.append(slice(rows[0], rows[0] + step * (len(rows) - 1) + 1, step))
                    else:
                        sels.append((f"{side}{i}", starts[j]))
                plan.append((j, sels[0], sels[1]))
            self._plan = plan
        return self._plan

    def _split_reader(self) -> _SplitReader | None:
        """The split-based reads of :meth:`forward_vector`, or ``None`` where some
        stored row is read twice or out of run order (then the gather plan is used)."""
        if not hasattr(self, "_reader"):
            sides = [(left.tolist(), right.tolist()) for left, right, _, _ in self._index]
            sizes = [len(self.graph.leaves)] + [size for *_, size in self._index[:-1]]
            self._reader = _SplitReader.build(sides, sizes)
        return self._reader

    def _take(self, t: torch.Tensor, sel: _Sel) -> torch.Tensor:
        """Rows ``sel`` (an entry of :meth:`_read_plan`) of ``t``."""
        if isinstance(sel, slice):
            # a strided view; the Triton kernels (CUDA) get dense rows, as a gather gives
            return t[sel] if t.device.type == "cpu" else t[sel].contiguous()
        name, offset = sel
        idx = getattr(self, name)
        return t[idx - offset if offset else idx]

    # ------------------------------------------------------------------ matrix
    def forward_matrix(
        self, leaf_log: torch.Tensor, leaf_sign: torch.Tensor, *, trace: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluate ``∫ c cᵀ``-type matrices of a squared circuit.

        Args:
            leaf_log: ``(L, B, K, K)`` signed-log leaf matrices (``B`` may be 1).
            leaf_sign: see ``leaf_log``.

        Returns:
            ``(R, B)`` signed-log value of each replica's squared root.
        """
        if not self.squared:
            raise RuntimeError("forward_matrix needs a circuit built with squared=True")
        logs, signs = [leaf_log], [leaf_sign]
        layer_fn = tucker_sq_layer if self.layer == "tucker" else sq_layer
        for i, (j, lsel, rsel) in enumerate(self._read_plan()):
            if j == len(logs) - 1:
                all_log, all_sign = logs[j], signs[j]
            else:
                all_log, all_sign = _cat_broadcast(logs[j:]), _cat_broadcast(signs[j:])
            out_log, out_sign = layer_fn(
                self._take(all_log, lsel),
                self._take(all_sign, lsel),
                self._take(all_log, rsel),
                self._take(all_sign, rsel),
                self.real_weight(i),
            )
            if trace is not None:
                trace.append((self.layer_names[i], out_log))
            logs.append(out_log)
            signs.append(out_sign)
        return logs[-1][..., 0, 0], signs[-1][..., 0, 0]

    # ------------------------------------------------------------------ mixed
    def forward_matrix_mixed(
        self,
        leaf_kind: torch.Tensor,
        const: tuple[torch.Tensor, torch.Tensor] | None,
        vector: tuple[torch.Tensor, torch.Tensor] | None,
        full: tuple[torch.Tensor, torch.Tensor] | None,
        *,
        batch: int,
        trace: list | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_matrix` that skips the per-row matrix work where it is not needed.

        Every region's matrix is one of three kinds, decided per fold from its children:

        * ``CONST``: the same for every row (all leaves below are integrated out, or
          integrated against ``x`` / ``x²``): one ``(1, K, K)`` matrix, never broadcast;
        * ``VECTOR``: every leaf below is observed in every row, so the matrix is the
          rank-one ``c cᵀ`` of the plain circuit value ``c``; the fold runs the vector
          layer (``O(K²)`` per row for CP, ``O(K³)`` for Tucker, instead of the matrix
          layer's ``O(K³)`` / ``O(K⁴)``);
        * ``FULL``: anything else; ``CONST`` and ``VECTOR`` children are turned into
          per-row matrices only where a ``FULL`` fold consumes them.

        Args:
            leaf_kind: ``(L,)`` long, :data:`CONST`, :data:`VECTOR` or :data:`FULL` per leaf.
            const: signed-log ``(L_c, 1, K, K)`` matrices of the ``CONST`` leaves, in
                leaf order (``None`` if there are none).
            vector: signed-log ``(L_v, B, K)`` values of the ``VECTOR`` leaves.
            full: signed-log ``(L_f, B, K, K)`` matrices of the ``FULL`` leaves.
            batch: ``B``.
            trace: as for :meth:`forward_matrix`.

        Returns:
            ``(R, B)`` signed-log value of each replica's squared root.
        """
        if not self.squared:
            raise RuntimeError("forward_matrix_mixed needs a circuit built with squared=True")
        kinds: list[int] = [int(k) for k in leaf_kind.tolist()]
        # every region's value lives in one block (a layer's output for one kind, or a
        # kind's leaves) at one row: gathering rows from the few blocks a layer reads is
        # cheaper than concatenating everything computed so far at every layer
        blocks: list[tuple[torch.Tensor, torch.Tensor]] = []
        where: list[tuple[int, int]] = [(-1, -1)] * len(kinds)
        for k, part in ((CONST, const), (VECTOR, vector), (FULL, full)):
            mine = [p for p, kp in enumerate(kinds) if kp == k]
            if not mine:
                continue
            if part is None:
                raise ValueError(f"leaf_kind asks for {len(mine)} leaves of kind {k}: got None")
            for row, p in enumerate(mine):
                where[p] = (len(blocks), row)
            blocks.append(part)
        signed = self.weights_kind == "real"
        vec_fn = tucker_layer if self.layer == "tucker" else cp_layer
        sq_fn = tucker_sq_layer if self.layer == "tucker" else sq_layer
        for i in range(len(self._index)):
            left, right, _, _ = self._layer(i)
            left_l, right_l = left.tolist(), right.tolist()
            fold_kind = []
            for a, b in zip(left_l, right_l, strict=True):
                ka, kb = kinds[a], kinds[b]
                fold_kind.append(ka if ka == kb and ka != FULL else FULL)
            new_where = [(-1, -1)] * len(fold_kind)
            w_all = self.real_weight(i)
            for k in (CONST, VECTOR, FULL):
                folds = [f for f, fk in enumerate(fold_kind) if fk == k]
                if not folds:
                    continue
                idx = torch.tensor(folds, device=w_all.device)
                lpos, rpos = [left_l[f] for f in folds], [right_l[f] for f in folds]
                if k == FULL:
                    a = _materialise(lpos, kinds, where, blocks, batch)
                    b = _materialise(rpos, kinds, where, blocks, batch)
                    out = sq_fn(*a, *b, w_all[idx])
                elif k == CONST:
                    a, b = _gather(lpos, where, blocks), _gather(rpos, where, blocks)
                    out = sq_fn(*a, *b, w_all[idx])
                else:
                    a, b = _gather(lpos, where, blocks), _gather(rpos, where, blocks)
                    w = w_all[idx] if signed else self.weight[i][idx]
                    out = vec_fn(*a, *b, w, signed=signed)
                if trace is not None:
                    trace.append((self.layer_names[i], out[0]))
                for row, f in enumerate(folds):
                    new_where[f] = (len(blocks), row)
                blocks.append(out)
            kinds.extend(fold_kind)
            where.extend(new_where)
        roots = list(range(len(kinds) - self.num_replicas, len(kinds)))
        log, sign = _materialise(roots, kinds, where, blocks, batch)
        return log[..., 0, 0], sign[..., 0, 0]


def _reorder(
    pieces: list[tuple[torch.Tensor, torch.Tensor]], order: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``pieces`` whose rows hold the items ``order`` and put them in item order."""
    if len(pieces) == 1:
        log, sign = pieces[0]
    else:
        log = torch.cat([p[0] for p in pieces])
        sign = torch.cat([p[1] for p in pieces])
    if order != sorted(order):
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        inverse = inverse.to(log.device)
        log, sign = log[inverse], sign[inverse]
    return log, sign


def _gather(
    positions: list[int],
    where: list[tuple[int, int]],
    blocks: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored values of ``positions`` (all of one kind), stacked in that order."""
    by_block: dict[int, list[int]] = {}
    for j, p in enumerate(positions):
        by_block.setdefault(where[p][0], []).append(j)
    pieces, order = [], []
    for blk, items in by_block.items():
        log, sign = blocks[blk]
        rows = torch.tensor([where[positions[j]][1] for j in items], device=log.device)
        pieces.append((log[rows], sign[rows]))
        order.extend(items)
    return _reorder(pieces, order)


def _materialise(
    positions: list[int],
    kinds: list[int],
    where: list[tuple[int, int]],
    blocks: list[tuple[torch.Tensor, torch.Tensor]],
    batch: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, B, K, K)`` per-row matrices of the regions at ``positions``, whatever their
    kind (``CONST`` broadcast over rows, ``VECTOR`` as outer products ``c cᵀ``)."""
    pieces, order = [], []
    for k in (CONST, VECTOR, FULL):
        which = [j for j, p in enumerate(positions) if kinds[p] == k]
        if not which:
            continue
        log, sign = _gather([positions[j] for j in which], where, blocks)
        if k == CONST:
            # contiguous: the Triton kernels behind sq_layer take dense tensors
            shape = (len(which), batch, *log.shape[2:])
            log, sign = log.expand(shape).contiguous(), sign.expand(shape).contiguous()
        elif k == VECTOR:
            log = log.unsqueeze(-1) + log.unsqueeze(-2)
            sign = sign.unsqueeze(-1) * sign.unsqueeze(-2)
        pieces.append((log, sign))
        order.extend(which)
    return _reorder(pieces, order)


def _cat_broadcast(tensors: list[torch.Tensor]) -> torch.Tensor:
    batch = max(t.shape[1] for t in tensors)
    return torch.cat([t.expand(t.shape[0], batch, *t.shape[2:]) for t in tensors])


def _consumer_order(
    graph: RegionGraph, heights: list[int], inner: list[tuple[int, int, int]]
) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Leaves and inner partitions ordered so that, in a tree, every stored output is
    read in contiguous runs: rows sorted by (reading layer, side, reader's fold).

    Fixed top-down: the root's folds are the replicas, each lower layer's folds follow
    the rows its readers want. Graphs where a region has several parents or several
    partitions keep the given order (they read through gathers)."""
    parents: dict[int, list[tuple[int, int, int]]] = {}
    for q in graph.partitions:
        for child in q[1:]:
            parents.setdefault(child, []).append(q)
    splits = [q[0] for q in inner]
    if any(len(v) != 1 for v in parents.values()) or len(splits) != len(set(splits)):
        return list(graph.leaves), inner
    order = sorted({heights[p] for p, _, _ in inner})
    layer_of = {h: i for i, h in enumerate(order)}
    root_layer = len(order)
    position = {q: f for f, q in enumerate(graph.partitions_of(graph.root))}

    def key(region: int) -> tuple[int, int, int]:
        q = parents[region][0]
        layer = root_layer if q[0] == graph.root else layer_of[heights[q[0]]]
        return (layer, 0 if q[1] == region else 1, position[q])

    ordered: list[tuple[int, int, int]] = []
    for h in reversed(order):  # readers (higher layers) are placed first
        parts = sorted((q for q in inner if heights[q[0]] == h), key=lambda q: key(q[0]))
        position.update((q, f) for f, q in enumerate(parts))
        ordered = parts + ordered
    return sorted(graph.leaves, key=key), ordered


class _SplitReader:
    """How each layer side assembles its children from runs of the stored outputs.

    ``sizes[b]``: the run lengths block ``b`` (0 = leaves, then each layer's output) is
    split into; ``plan[(layer, side)]``: the ``(block, run)`` pieces to concatenate, and
    the fold order of that concatenation (``None`` when it already is fold order)."""

    def __init__(self, sizes, plan) -> None:
        self.sizes, self.plan = sizes, plan

    @classmethod
    def build(cls, sides: list[tuple[list[int], list[int]]], block_sizes: list[int]):
        starts = [0]
        for n in block_sizes:
            starts.append(starts[-1] + n)
        runs: list[list[tuple[int, int]]] = [[] for _ in block_sizes]  # (start, length)
        reads: dict[tuple[int, int], list[tuple[int, int, list[int]]]] = {}
        for i, pair in enumerate(sides):
            for side, rows in enumerate(pair):
                by_block: dict[int, list[tuple[int, int]]] = {}
                for f, r in enumerate(rows):
                    b = bisect.bisect_right(starts, r) - 1
                    by_block.setdefault(b, []).append((f, r - starts[b]))
                for b, fr in sorted(by_block.items()):
                    local = [r for _, r in fr]
                    if local != list(range(local[0], local[0] + len(local))):
                        return None
                    runs[b].append((local[0], len(local)))
                    reads.setdefault((i, side), []).append((b, local[0], [f for f, _ in fr]))
        sizes, run_index = [], {}
        for b, rb in enumerate(runs):
            rb.sort()
            at = 0
            for k, (start, n) in enumerate(rb):
                if start != at:  # a row read twice, or never
                    return None
                run_index[(b, start)] = k
                at += n
            if at != block_sizes[b]:
                return None
            sizes.append([n for _, n in rb])
        plan = {}
        for key, pieces in reads.items():
            folds = [f for _, _, fs in pieces for f in fs]
            perm = None
            if folds != sorted(folds):
                inverse = [0] * len(folds)
                for at, f in enumerate(folds):
                    inverse[f] = at
                perm = torch.tensor(inverse)
            plan[key] = ([(b, run_index[(b, start)]) for b, start, _ in pieces], perm)
        return cls(sizes, plan)

    def read(self, layer: int, side: int, pieces: list[list[torch.Tensor]]) -> torch.Tensor:
        parts, perm = self.plan[(layer, side)]
        got = [pieces[b][k] for b, k in parts]
        out = got[0] if len(got) == 1 else torch.cat(got)
        if perm is not None:
            if perm.device != out.device:  # upload once: a recorded CUDA graph cannot
                perm = perm.to(out.device)
                self.plan[(layer, side)] = (parts, perm)
            out = out[perm]
        if out.device.type != "cpu":
            out = out.contiguous()  # the Triton kernels want dense rows
        return out
