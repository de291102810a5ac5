"""Inference algorithms for :class:`~bayesfn.bayesnn.BNN`, one file each.

``INFERENCES`` maps the short names that ``BNN(inference="...")`` accepts to their
classes (built with default settings).
"""

from bayesfn.bayesnn.inference.base import BNNTarget, Inference
from bayesfn.bayesnn.inference.ensemble import DeepEnsemble
from bayesfn.bayesnn.inference.laplace import LastLayerLaplace
from bayesfn.bayesnn.inference.map import MAP
from bayesfn.bayesnn.inference.mfvi import MeanFieldVI
from bayesfn.bayesnn.inference.sghmc import SGHMC

INFERENCES: dict[str, type[Inference]] = {
    "map": MAP,
    "sghmc": SGHMC,
    "ensemble": DeepEnsemble,
    "laplace": LastLayerLaplace,
    "mfvi": MeanFieldVI,
}

__all__ = [
    "INFERENCES",
    "MAP",
    "SGHMC",
    "BNNTarget",
    "DeepEnsemble",
    "Inference",
    "LastLayerLaplace",
    "MeanFieldVI",
]
