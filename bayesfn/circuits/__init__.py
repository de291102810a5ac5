"""Monotonic and squared (subtractive) probabilistic circuits (Loconte et al., ICLR 2024).

* :class:`MonotonicCircuit` — MPC (positive weights), or MPC² with ``squared=True``;
* :class:`SquaredCircuit` — NPC², real weights, ``p = Σ_r c_r² / Z``;
* :class:`ConditionalPosterior` — exact conditionals, marginals, moments and samples;
* region graphs: :func:`random_binary_tree`, :func:`linear_tree`, :func:`quad_tree`,
  :class:`RegionGraph`;
* :func:`unique_disjointness_circuit` — the expressiveness example of the paper.
"""

from bayesfn.circuits.conditional import ConditionalPosterior
from bayesfn.circuits.expressiveness import unique_disjointness_circuit, unique_disjointness_graph
from bayesfn.circuits.models import CircuitModel, MonotonicCircuit, SquaredCircuit
from bayesfn.circuits.region_graph import (
    NotStructuredDecomposableError,
    RegionGraph,
    linear_tree,
    quad_tree,
    random_binary_tree,
)

__all__ = [
    "CircuitModel",
    "ConditionalPosterior",
    "MonotonicCircuit",
    "NotStructuredDecomposableError",
    "RegionGraph",
    "SquaredCircuit",
    "linear_tree",
    "quad_tree",
    "random_binary_tree",
    "unique_disjointness_circuit",
    "unique_disjointness_graph",
]
