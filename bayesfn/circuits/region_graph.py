"""Region graphs: which variables each circuit layer covers and how scopes split.

A :class:`RegionGraph` is a DAG of *regions* (sets of variables) and binary
*partitions* ``parent -> (left, right)`` whose children have disjoint scopes covering the
parent's. Leaf regions hold one variable each. The root covers every variable; its
partitions are the *replicas* (mixture components) of the circuit.

Builders:

* :func:`random_binary_tree` — ``num_replicas`` independent random balanced splits
  (RAT-SPN style), every replica split down to single variables;
* :func:`linear_tree` — ``x_1 | (x_2 | (x_3 | ...))`` in a given or random order;
* :func:`quad_tree` — image pixels split into halves alternately by rows and columns
  (a 4-way quad split written as two binary splits); ``structured=False`` gives the
  quad *graph*, where every rectangle splits both ways (not structured-decomposable).

Squaring needs structured decomposability: every non-root region has at most one
partition (so each replica is a tree and ``∫ c²`` factorises along it).
:meth:`RegionGraph.check_structured_decomposable` raises a clear error otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NotStructuredDecomposableError",
    "RegionGraph",
    "linear_tree",
    "quad_tree",
    "random_binary_tree",
]


class NotStructuredDecomposableError(ValueError):
    """Raised when a squared circuit is asked of a region graph that is not
    structured-decomposable."""


@dataclass(frozen=True)
class RegionGraph:
    """An immutable region graph.

    Attributes:
        num_variables: ``d``; variables are ``0 .. d-1``.
        scopes: the sorted variable tuple of each region; index = region id.
        partitions: ``(parent, left, right)`` region ids; children scopes are disjoint
            and their union is the parent's.
        root: id of the region covering all variables.
    """

    num_variables: int
    scopes: tuple[tuple[int, ...], ...]
    partitions: tuple[tuple[int, int, int], ...]
    root: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", tuple(tuple(int(v) for v in s) for s in self.scopes))
        object.__setattr__(
            self, "partitions", tuple(tuple(int(i) for i in p) for p in self.partitions)
        )
        self._validate()

    # ------------------------------------------------------------ validation
    def _validate(self) -> None:
        d, n = self.num_variables, len(self.scopes)
        if not isinstance(d, int) or d < 2:
            raise ValueError(f"num_variables must be an int of at least 2; got {d!r}")
        if not 0 <= self.root < n:
            raise ValueError(f"root {self.root} is not a region id in [0, {n})")
        if set(self.scopes[self.root]) != set(range(d)):
            raise ValueError("the root region must cover every variable 0 .. d-1")
        for i, s in enumerate(self.scopes):
            if not s or list(s) != sorted(set(s)) or s[0] < 0 or s[-1] >= d:
                raise ValueError(f"region {i} has an invalid scope {s}")
        has_partition = set()
        for p, a, b in self.partitions:
            for r in (p, a, b):
                if not 0 <= r < n:
                    raise ValueError(f"partition ({p}, {a}, {b}) names region {r} out of range")
            sa, sb = set(self.scopes[a]), set(self.scopes[b])
            if sa & sb or sa | sb != set(self.scopes[p]):
                raise ValueError(
                    f"partition of region {p} {self.scopes[p]} into {self.scopes[a]} and "
                    f"{self.scopes[b]} is not decomposable (children must be disjoint and "
                    "cover the parent)"
                )
            has_partition.add(p)
        for i, s in enumerate(self.scopes):
            if i not in has_partition and len(s) != 1:
                raise ValueError(
                    f"region {i} with scope {s} has no partition; leaf regions must hold "
                    "exactly one variable"
                )
        if self.root not in has_partition:
            raise ValueError("the root region has no partition")
        # every region must be reachable from the root (no dangling regions)
        children: dict[int, list[int]] = {}
        for p, a, b in self.partitions:
            children.setdefault(p, []).extend((a, b))
        seen, stack = {self.root}, [self.root]
        while stack:
            for c in children.get(stack.pop(), []):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        if len(seen) != n:
            raise ValueError(f"{n - len(seen)} region(s) are not reachable from the root")

    # ------------------------------------------------------------ queries
    @property
    def leaves(self) -> list[int]:
        """Region ids with no partition (one variable each), in id order."""
        parents = {p for p, _, _ in self.partitions}
        return [i for i in range(len(self.scopes)) if i not in parents]

    @property
    def num_replicas(self) -> int:
        """Number of partitions of the root: the mixture components of the circuit."""
        return sum(1 for p, _, _ in self.partitions if p == self.root)

    def partitions_of(self, region: int) -> list[tuple[int, int, int]]:
        return [q for q in self.partitions if q[0] == region]

    def heights(self) -> list[int]:
        """Height of each region: 0 for leaves, 1 + max child height otherwise."""
        kids: dict[int, list[int]] = {}
        for p, a, b in self.partitions:
            kids.setdefault(p, []).extend((a, b))
        h: dict[int, int] = {}

        def visit(r: int) -> int:
            if r not in h:
                h[r] = 1 + max(visit(c) for c in kids[r]) if r in kids else 0
            return h[r]

        for r in range(len(self.scopes)):
            visit(r)
        return [h[i] for i in range(len(self.scopes))]

    def is_structured_decomposable(self) -> bool:
        """Whether every non-root region has at most one partition, so that each
        root partition (replica) is a tree that can be squared exactly."""
        counts: dict[int, int] = {}
        for p, _, _ in self.partitions:
            counts[p] = counts.get(p, 0) + 1
        return all(c <= 1 for r, c in counts.items() if r != self.root)

    def check_structured_decomposable(self, what: str = "squaring") -> None:
        """Raise :class:`NotStructuredDecomposableError` unless structured-decomposable."""
        if self.is_structured_decomposable():
            return
        bad = [
            (r, self.scopes[r])
            for r in range(len(self.scopes))
            if r != self.root and len(self.partitions_of(r)) > 1
        ]
        r, s = bad[0]
        raise NotStructuredDecomposableError(
            f"{what} needs a structured-decomposable region graph, but {len(bad)} non-root "
            f"region(s) split in more than one way (e.g. region {r} with scope {s} has "
            f"{len(self.partitions_of(r))} partitions); the square of such a circuit has "
            "no tractable partition function. Use random_binary_tree, linear_tree or "
            "quad_tree(structured=True)."
        )

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` inverts it."""
        return {
            "num_variables": self.num_variables,
            "scopes": [list(s) for s in self.scopes],
            "partitions": [list(p) for p in self.partitions],
            "root": self.root,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionGraph:
        try:
            return cls(
                num_variables=int(data["num_variables"]),
                scopes=tuple(tuple(s) for s in data["scopes"]),
                partitions=tuple(tuple(p) for p in data["partitions"]),
                root=int(data["root"]),
            )
        except KeyError as err:
            raise ValueError(f"region graph dict is missing key {err}") from None


class _Builder:
    """Collects regions keyed by ``(tag, scope)`` and partitions without duplicates."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self.scopes: list[tuple[int, ...]] = []
        self.partitions: list[tuple[int, int, int]] = []
        self._seen: set[tuple[int, int, int]] = set()

    def region(self, scope: Sequence[int], tag: Any = None) -> tuple[int, bool]:
        key = (tag, tuple(sorted(scope)))
        if key in self.ids:
            return self.ids[key], False
        self.ids[key] = len(self.scopes)
        self.scopes.append(key[1])
        return self.ids[key], True

    def partition(self, p: int, a: int, b: int) -> None:
        if (p, a, b) not in self._seen:
            self._seen.add((p, a, b))
            self.partitions.append((p, a, b))

    def build(self, d: int, root: int) -> RegionGraph:
        return RegionGraph(d, tuple(self.scopes), tuple(self.partitions), root)


def _check_d(num_variables: int) -> int:
    if isinstance(num_variables, bool) or not isinstance(num_variables, int) or num_variables < 2:
        raise ValueError(f"num_variables must be an int of at least 2; got {num_variables!r}")
    return num_variables


def random_binary_tree(num_variables: int, *, num_replicas: int = 1, seed: int = 0) -> RegionGraph:
    """``num_replicas`` random balanced binary trees over ``d`` variables under one root.

    Each replica shuffles the variables, halves them recursively down to single
    variables, and owns its regions (no sharing between replicas). The root has one
    partition per replica.
    """
    d = _check_d(num_variables)
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive int; got {num_replicas!r}")
    rng = random.Random(seed)
    b = _Builder()
    root, _ = b.region(range(d), tag="root")

    def split(parent: int, scope: list[int], tag: int) -> None:
        rng.shuffle(scope)
        half = len(scope) // 2
        kids = []
        for part in (scope[:half], scope[half:]):
            rid, _ = b.region(part, tag=tag)
            kids.append((rid, part))
        b.partition(parent, kids[0][0], kids[1][0])
        for rid, part in kids:
            if len(part) > 1:
                split(rid, list(part), tag)

    for r in range(num_replicas):
        split(root, list(range(d)), r)
    return b.build(d, root)


def linear_tree(
    num_variables: int, *, order: Sequence[int] | None = None, seed: int | None = None
) -> RegionGraph:
    """The linear (right-deep) tree ``x_o1 | (x_o2 | (... | x_od))``.

    Args:
        order: a permutation of ``0 .. d-1``; a random one (from ``seed``) when ``None``
            and ``seed`` is given, the identity when both are ``None``.
    """
    d = _check_d(num_variables)
    if order is None:
        order = list(range(d))
        if seed is not None:
            random.Random(seed).shuffle(order)
    order = [int(v) for v in order]
    if sorted(order) != list(range(d)):
        raise ValueError(f"order must be a permutation of 0..{d - 1}; got {order}")
    b = _Builder()
    root, _ = b.region(order)
    parent = root
    for i in range(d - 1):
        left, _ = b.region([order[i]])
        right, _ = b.region(order[i + 1 :])
        b.partition(parent, left, right)
        parent = right
    return b.build(d, root)


def quad_tree(height: int, width: int, *, structured: bool = True) -> RegionGraph:
    """Region graph over the pixels of a ``height x width`` image (row-major ids).

    With ``structured=True`` every rectangle splits once, into halves along its longer
    side (rows first on ties): the binary form of a quad-tree, structured-decomposable.
    With ``structured=False`` every rectangle with both sides longer than one splits
    both ways (the quad *graph*), sharing sub-rectangles: fine for a monotonic circuit,
    refused for squaring.
    """
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")
    d = _check_d(height * width)
    b = _Builder()

    def pixels(r0: int, r1: int, c0: int, c1: int) -> list[int]:
        return [r * width + c for r in range(r0, r1) for c in range(c0, c1)]

    root, _ = b.region(pixels(0, height, 0, width))
    stack = [(root, 0, height, 0, width)]
    done = set()
    while stack:
        rid, r0, r1, c0, c1 = stack.pop()
        if rid in done:
            continue
        done.add(rid)
        h, w = r1 - r0, c1 - c0
        cuts = []
        if h > 1 and (not structured or h >= w):
            m = r0 + h // 2
            cuts.append(((r0, m, c0, c1), (m, r1, c0, c1)))
        if w > 1 and (not structured or w > h):
            m = c0 + w // 2
            cuts.append(((r0, r1, c0, m), (r0, r1, m, c1)))
        for box_a, box_b in cuts:
            ia, _ = b.region(pixels(*box_a))
            ib, _ = b.region(pixels(*box_b))
            b.partition(rid, ia, ib)
            stack += [(ia, *box_a), (ib, *box_b)]
    return b.build(d, root)
