"""The unique-disjointness family, the paper's separation between squared non-monotonic
and monotonic circuits.

``UDISJ_n(x, y) = (1 - Σ_i x_i y_i)²`` on ``{0, 1}^{2n}`` is zero exactly when the sets
encoded by ``x`` and ``y`` meet in one element. A monotonic circuit needs size
``2^{Ω(n)}`` for it (and for its normalised version); the squared circuit built here
has ``O(n)`` size: ``c(x, y) = 1 - Σ_i x_i y_i`` with one negative weight, over the
linear vtree ``(x_1 y_1) | ((x_2 y_2) | ...)`` with three units per region.
"""

from __future__ import annotations

import torch

from bayesfn.circuits.models import SquaredCircuit
from bayesfn.circuits.region_graph import RegionGraph
from bayesfn.training import FitResult

__all__ = ["unique_disjointness_circuit", "unique_disjointness_graph"]


def unique_disjointness_graph(n: int) -> RegionGraph:
    """The linear vtree over pairs: variables ``x_i = 2i``, ``y_i = 2i + 1``.

    Regions: the suffixes ``S_i = {x_i, y_i, ..., x_n, y_n}`` (``S_1`` is the root,
    ``S_n`` is the last pair), the pairs ``P_i = {x_i, y_i}`` and the single variables.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int of at least 2; got {n!r}")
    scopes: list[tuple[int, ...]] = []
    ids: dict[tuple[int, ...], int] = {}

    def region(scope) -> int:
        scope = tuple(sorted(scope))
        if scope not in ids:
            ids[scope] = len(scopes)
            scopes.append(scope)
        return ids[scope]

    partitions = []
    for i in range(n):
        suffix = region(range(2 * i, 2 * n))
        pair = region((2 * i, 2 * i + 1))
        if i < n - 1:
            partitions.append((suffix, pair, region(range(2 * i + 2, 2 * n))))
        partitions.append((pair, region((2 * i,)), region((2 * i + 1,))))
    return RegionGraph(2 * n, tuple(scopes), tuple(partitions), ids[tuple(range(2 * n))])


def unique_disjointness_circuit(n: int, *, dtype: str = "float64") -> SquaredCircuit:
    """A ready-to-use :class:`SquaredCircuit` with ``p(x, y) ∝ (1 - Σ_i x_i y_i)²``.

    Leaves (signed tables over ``{0, 1}``, 3 units each): ``u_0 = u_2 = 1/2`` (the
    constant ``1`` up to a factor absorbed into the weights) and ``u_1 = [v = 1]`` (a
    point mass: its exact zero runs through the exact-zero path). Each region
    ``R`` carries the units ``(1, a_R, b_R)``:

    * pair ``P_i``: ``diag(4, 1, 4)`` on ``(1/4, x_i y_i, 1/4)`` gives ``(1, x_i y_i, 1)``;
    * suffix ``S_i`` (right child): from ``P_i ⊙ S_{i+1} = (1, x_i y_i, s_{i+1})`` the
      weights ``[[1,0,0],[1,0,0],[0,1,1]]`` give ``(1, 1, s_i)`` with ``s_i = Σ_{j≥i} x_j y_j``;
    * root: ``[1, -1, -1]`` gives ``c = 1 - x_1 y_1 - s_2``.

    Size: ``2n - 1`` sum folds of (at most) ``3 x 3`` weights and ``6n`` leaf units: ``O(n)``.
    """
    graph = unique_disjointness_graph(n)
    model = SquaredCircuit(3, region_graph=graph, input="categorical", num_states=2, dtype=dtype)
    model._build(2 * n, 2)
    m = model.module_
    with torch.no_grad():
        table = torch.full_like(m.inputs.coef, 0.5)
        table[:, 1] = torch.tensor([0.0, 1.0])  # unit 1 is the point mass at 1
        m.inputs.coef.copy_(table)
        for w in m.weight:
            w.zero_()
        pair_of = {}
        for i in range(n):
            pair_of[i] = graph.scopes.index((2 * i, 2 * i + 1))
        last_pair = pair_of[n - 1]
        for q, (layer, fold) in m.slots.items():
            parent = q[0]
            w = m.weight[layer][fold]
            if parent == graph.root:
                w.copy_(torch.tensor([[1.0, -1.0, -1.0]]))
            elif len(graph.scopes[parent]) == 2:
                # a pair; the last pair is also the suffix S_n, a right child
                if parent == last_pair:
                    w.copy_(torch.tensor([[4.0, 0, 0], [4.0, 0, 0], [0, 1.0, 0]]))
                else:
                    w.copy_(torch.diag(torch.tensor([4.0, 1.0, 4.0])))
            else:
                w.copy_(torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 1.0]]))
    model.fit_result_ = FitResult(diagnostics={"constructed": f"unique disjointness, n={n}"})
    return model
