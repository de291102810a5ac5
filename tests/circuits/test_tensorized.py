"""The folded circuit against a naive region-by-region recursion over the region graph."""

import pytest
import torch

from bayesfn.circuits import models as M

from .conftest import KINDS, fitted


def _apply(weight, a, b):
    """One partition's sum unit outputs ``(B, K_out)`` from its children ``(B, K_in)``."""
    if weight.ndim == 3:  # Tucker: a sum over the outer product a ⊗ b
        return torch.einsum("kij,ni,nj->nk", weight, a, b)
    return (a * b) @ weight.T


def _naive_root_values(model, x):
    """``(R, B)`` replica outputs ``c_r(x)`` computed one region at a time."""
    g, m = model.graph_, model.module_
    leaf = m.inputs.log_density(x[:, m.inputs.variables].T).exp()  # (L, B, K)
    val = {r: leaf[i] for r, i in m.leaf_slots.items()}
    heights = g.heights()
    for r in sorted(range(len(g.scopes)), key=heights.__getitem__):
        if r in val or r == g.root:
            continue
        total = 0
        for q in g.partitions_of(r):
            layer, fold = m.slots[q]
            total = total + _apply(m.real_weight(layer)[fold], val[q[1]], val[q[2]])
        val[r] = total
    roots = []
    for q in g.partitions_of(g.root):
        layer, fold = m.slots[q]
        roots.append(_apply(m.real_weight(layer)[fold], val[q[1]], val[q[2]])[:, 0])
    return torch.stack(roots)


_GRAPHS = {
    "random-R3": {"region_graph": "random", "num_replicas": 3},
    "linear": {"region_graph": "linear"},
    "quad": {"region_graph": "quad", "image_shape": (3, 3)},
    "quad-graph": {"region_graph": "quad_graph", "image_shape": (3, 3)},
}
# squaring a quad graph is refused (tested elsewhere), so only the monotonic circuit runs it
_KIND_GRAPH = [
    (kind, name) for kind in KINDS for name in _GRAPHS if kind == "mpc" or name != "quad-graph"
]


@pytest.mark.parametrize(
    ("kind", "graph_name"), _KIND_GRAPH, ids=[f"{k}-{g}" for k, g in _KIND_GRAPH]
)
@pytest.mark.parametrize("layer", ["cp", "tucker"])
def test_folded_evaluation_matches_naive_recursion(kind, graph_name, layer):
    graph = _GRAPHS[graph_name]
    x = torch.randn(30, 9, dtype=torch.float64)
    model = fitted(kind, x, num_units=3, seed=11, layer=layer, **graph)
    assert model.module_.weight[0].ndim == (4 if layer == "tucker" else 3)
    # trees read stored outputs as split views; the DAG quad graph gathers
    assert (model.module_._split_reader() is None) == (graph["region_graph"] == "quad_graph")
    roots = _naive_root_values(model, x[:7])
    log_f, _ = model._log_f(x[:7], torch.full((9,), M.OBSERVE))
    want = roots.sum(0) if kind == "mpc" else (roots**2).sum(0)
    torch.testing.assert_close(log_f.exp(), want, rtol=1e-10, atol=0)
