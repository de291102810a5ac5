"""Inference algorithms for :class:`~bayesfn.bayesnn.BNN`, one file each.

``INFERENCES`` maps the short names that ``BNN(inference="...")`` accepts to their
classes (built with default settings).
"""

from bayesfn.bayesnn.inference.base import BNNTarget, Inference
from bayesfn.bayesnn.inference.implicit_vi import ImplicitVI
from bayesfn.bayesnn.inference.map import MAP

INFERENCES: dict[str, type[Inference]] = {
    "map": MAP,
    "livi": ImplicitVI,
}

__all__ = ["INFERENCES", "MAP", "BNNTarget", "ImplicitVI", "Inference"]
