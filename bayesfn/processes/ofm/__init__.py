"""Operator flow matching (Shi, Ross, Asimaki & Azizzadenesheli, NeurIPS 2025).

* :mod:`~bayesfn.processes.ofm.operator` — time-conditioned neural operators (a Fourier
  neural operator on 1-D / 2-D grids, an attention operator on arbitrary point sets);
* :mod:`~bayesfn.processes.ofm.flow` — the GP reference measure, minibatch optimal
  transport, the linear path, the ODE solver and exact densities;
* :mod:`~bayesfn.processes.ofm.latent` — posterior samplers in the reference's whitened
  latent space (pCN, NUTS, SGLD);
* :mod:`~bayesfn.processes.ofm.model` — :class:`OperatorFlowMatching`, the Model.
"""

from bayesfn.processes.ofm.model import OperatorFlowMatching

__all__ = ["OperatorFlowMatching"]
