"""Neural diffusion processes (Dutordoir, Saul, Ghahramani & Simpson, ICML 2023).

* :mod:`~bayesfn.processes.ndp.network` - the bi-dimensional attention noise model;
* :mod:`~bayesfn.processes.ndp.diffusion` - schedule, loss, ancestral, RePaint and SMC
  sampling, probability-flow ODE and moment-matched likelihoods;
* :mod:`~bayesfn.processes.ndp.model` - :class:`NeuralDiffusionProcess`, the model.
"""

from bayesfn.processes.ndp.model import NeuralDiffusionProcess
from bayesfn.processes.ndp.network import BiDimensionalAttention

__all__ = ["BiDimensionalAttention", "NeuralDiffusionProcess"]
