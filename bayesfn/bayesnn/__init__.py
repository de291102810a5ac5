"""Weight-space and infinite-width Bayesian neural networks.

Infinite width (:mod:`bayesfn.bayesnn.nngp`):

* :class:`NNGPKernel` / :func:`nngp_kernel`: NNGP and NTK kernels of fully connected
  networks in neural-tangents' ``stax`` conventions.
* :class:`ScaleMixtureNNGP`: NNGP regression with a prior on the last-layer variance
  (Student-t and heavy-tailed processes; Lee et al., ICLR 2022).
* :func:`trained_network_predictive`: outputs of infinitely wide networks trained by
  gradient flow (Lee et al., NeurIPS 2019).
"""

from bayesfn.bayesnn.nngp import (
    NNGPKernel,
    OneHotNNGPClassifier,
    QuadratureWarning,
    ScaleMixtureNNGP,
    SVTPClassifier,
    nngp_kernel,
    trained_network_predictive,
)

__all__ = [
    "NNGPKernel",
    "OneHotNNGPClassifier",
    "QuadratureWarning",
    "SVTPClassifier",
    "ScaleMixtureNNGP",
    "nngp_kernel",
    "trained_network_predictive",
]
