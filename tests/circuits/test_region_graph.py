"""Region-graph builders and the structured-decomposability check."""

import pytest
import torch

from bayesfn.circuits import (
    MonotonicCircuit,
    NotStructuredDecomposableError,
    RegionGraph,
    SquaredCircuit,
    linear_tree,
    quad_tree,
    random_binary_tree,
)


def _check_tree(graph: RegionGraph):
    scopes = graph.scopes
    for p, a, b in graph.partitions:
        assert set(scopes[a]).isdisjoint(scopes[b])
        assert set(scopes[a]) | set(scopes[b]) == set(scopes[p])
    for leaf in graph.leaves:
        assert len(scopes[leaf]) == 1


@pytest.mark.parametrize("d", [2, 3, 7, 16])
def test_random_binary_tree_replicas(d):
    g = random_binary_tree(d, num_replicas=3, seed=1)
    _check_tree(g)
    assert g.num_replicas == 3 and g.is_structured_decomposable()
    # each replica splits down to every variable once: 3 leaves per variable
    leaf_vars = sorted(g.scopes[r][0] for r in g.leaves)
    assert leaf_vars == sorted(list(range(d)) * 3)
    assert max(g.heights()) <= (d - 1).bit_length() + 1


def test_linear_tree_follows_the_order():
    g = linear_tree(4, order=[2, 0, 3, 1])
    _check_tree(g)
    root_part = g.partitions_of(g.root)[0]
    assert g.scopes[root_part[1]] == (2,)
    assert g.heights()[g.root] == 3
    with pytest.raises(ValueError, match="permutation"):
        linear_tree(3, order=[0, 0, 1])


def test_quad_tree_is_structured_and_quad_graph_is_not():
    t = quad_tree(4, 4)
    _check_tree(t)
    assert t.is_structured_decomposable() and t.num_replicas == 1
    q = quad_tree(3, 3, structured=False)
    _check_tree(q)
    assert not q.is_structured_decomposable()
    with pytest.raises(NotStructuredDecomposableError, match="structured-decomposable"):
        q.check_structured_decomposable()


def test_squaring_a_non_structured_graph_is_refused_but_monotonic_works():
    x = torch.randn(40, 9, dtype=torch.float64)
    with pytest.raises(NotStructuredDecomposableError, match=r"region .* partitions"):
        SquaredCircuit(2, region_graph="quad_graph", image_shape=(3, 3)).fit(
            x, max_steps=1, progress_bar=False
        )
    with pytest.raises(NotStructuredDecomposableError):
        MonotonicCircuit(2, squared=True, region_graph="quad_graph", image_shape=(3, 3))
    m = MonotonicCircuit(2, region_graph="quad_graph", image_shape=(3, 3)).fit(
        x, max_steps=3, progress_bar=False
    )
    assert (
        abs(float(m.marginal_log_prob(x[:2], torch.zeros(9, dtype=torch.bool)).abs().max())) < 1e-10
    )


def test_round_trip_and_validation():
    g = random_binary_tree(5, num_replicas=2, seed=3)
    assert RegionGraph.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError, match="not decomposable"):
        RegionGraph(2, ((0, 1), (0,), (0,)), ((0, 1, 2),), 0)
    with pytest.raises(ValueError, match="leaf regions must hold exactly one variable"):
        RegionGraph(3, ((0, 1, 2), (0, 1), (2,)), ((0, 1, 2),), 0)
    with pytest.raises(ValueError, match="num_variables"):
        random_binary_tree(1)
