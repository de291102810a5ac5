"""Optional bridges from bayesfn to other libraries, each behind an extra.

* :mod:`bayesfn.integrations.botorch` (``pip install bayesfn[botorch]``): any fitted
  model whose posterior is over function values, presented as a BoTorch ``Model`` for
  Bayesian optimisation.

This package imports nothing: each bridge is imported by name, so that ``import
bayesfn`` never pulls in BoTorch.
"""

__all__: list[str] = []
