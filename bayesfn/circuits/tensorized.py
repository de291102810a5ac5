"""The folded (tensorized) circuit: an input layer and one CP sum layer per height.

All partitions whose parent region has the same height form one *folded* layer and run
in one batched call of :func:`bayesfn.kernels.cp_layer` (plain evaluation of ``c(x)``)
or :func:`bayesfn.kernels.sq_layer` (the matrix evaluation of ``∫ c cᵀ`` that squared
circuits use for partition functions, marginals, moments and CDFs). The partitions of
the root are the replicas; each gives one scalar output, so the circuit returns a
``(R, B)`` tensor and the model decides how to combine the replicas (summed for a
monotonic circuit, squared then summed for a squared one).

Signed values are ``(log|v|, sign)`` pairs throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bayesfn.circuits.inputs import InputLayer
from bayesfn.circuits.region_graph import RegionGraph
from bayesfn.kernels import cp_layer, sq_layer

__all__ = ["TensorizedCircuit"]


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
        generator: seeds the weight initialisation: ``W ~ U(0, 1)`` for real weights (the
            paper's NPC² initialisation), ``θ = log U(0.01, 1)`` for positive ones.
    """

    def __init__(
        self,
        graph: RegionGraph,
        make_inputs: Callable[[torch.Tensor], InputLayer],
        num_units: int,
        *,
        weights: str,
        squared: bool,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if weights not in ("log", "real"):
            raise ValueError(f"weights must be 'log' or 'real'; got {weights!r}")
        if weights == "real" and not squared:
            raise ValueError("real (signed) weights need squared=True to give a density")
        if squared:
            graph.check_structured_decomposable("squaring a circuit")
        self.graph, self.weights_kind, self.squared = graph, weights, squared
        self.num_units = K = int(num_units)
        leaves = graph.leaves
        self.inputs = make_inputs(torch.tensor([graph.scopes[r][0] for r in leaves]))
        pos = {r: i for i, r in enumerate(leaves)}  # region id -> buffer position
        heights = graph.heights()
        inner = [p for p in graph.partitions if p[0] != graph.root]
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
            params.append(self._init_weight((len(parts), K, K), dtype, generator))
            self.layer_names.append(
                f"sum layer {len(self.layer_names)} (height {h}, {len(parts)} folds)"
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
        params.append(self._init_weight((len(roots), 1, K), dtype, generator))
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
        """``(F, K_out, K_in)`` weights of layer ``i`` on the linear scale."""
        w = self.weight[i]
        return w.exp() if self.weights_kind == "log" else w

    @property
    def num_replicas(self) -> int:
        return self._index[-1][3]

    # ------------------------------------------------------------------ vector
    def forward_vector(
        self,
        leaf_log: torch.Tensor,
        leaf_sign: torch.Tensor,
        *,
        signed: bool,
        trace: list | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluate ``c`` with the given leaf values.

        Args:
            leaf_log, leaf_sign: ``(L, B, K)`` signed-log leaf values.
            signed: whether any value may be negative (real weights, or signed leaves
                such as first moments).
            trace: if a list, ``(layer name, out_log)`` of every layer is appended.

        Returns:
            ``(R, B)`` signed-log value of each replica's root.
        """
        logs, signs = [leaf_log], [leaf_sign]
        use_signed = signed or self.weights_kind == "real"
        for i in range(len(self._index)):
            left, right, group, size = self._layer(i)
            all_log, all_sign = torch.cat(logs), torch.cat(signs)
            w = self.real_weight(i) if use_signed else self.weight[i]
            out_log, out_sign = cp_layer(
                all_log[left],
                all_sign[left],
                all_log[right],
                all_sign[right],
                w,
                signed=use_signed,
            )
            if group is not None:
                if use_signed:
                    raise ValueError("a region with several partitions cannot carry signs")
                out_log = _grouped_logsumexp(out_log, group, size)
                out_sign = (~torch.isneginf(out_log)).to(out_log.dtype)
            if trace is not None:
                trace.append((self.layer_names[i], out_log))
            logs.append(out_log)
            signs.append(out_sign)
        return logs[-1].squeeze(-1), signs[-1].squeeze(-1)

    # ------------------------------------------------------------------ matrix
    def forward_matrix(
        self, leaf_log: torch.Tensor, leaf_sign: torch.Tensor, *, trace: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluate ``∫ c cᵀ``-type matrices of a squared circuit.

        Args:
            leaf_log, leaf_sign: ``(L, B, K, K)`` signed-log leaf matrices (``B`` may be 1).

        Returns:
            ``(R, B)`` signed-log value of each replica's squared root.
        """
        if not self.squared:
            raise RuntimeError("forward_matrix needs a circuit built with squared=True")
        logs, signs = [leaf_log], [leaf_sign]
        for i in range(len(self._index)):
            left, right, _, _ = self._layer(i)
            all_log, all_sign = _cat_broadcast(logs), _cat_broadcast(signs)
            out_log, out_sign = sq_layer(
                all_log[left],
                all_sign[left],
                all_log[right],
                all_sign[right],
                self.real_weight(i),
            )
            if trace is not None:
                trace.append((self.layer_names[i], out_log))
            logs.append(out_log)
            signs.append(out_sign)
        return logs[-1][..., 0, 0], signs[-1][..., 0, 0]


def _cat_broadcast(tensors: list[torch.Tensor]) -> torch.Tensor:
    batch = max(t.shape[1] for t in tensors)
    return torch.cat([t.expand(t.shape[0], batch, *t.shape[2:]) for t in tensors])
