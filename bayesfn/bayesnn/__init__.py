"""Weight-space and infinite-width Bayesian neural networks.

* :class:`NNGPKernel` / :func:`nngp_kernel`: NNGP and NTK kernels of fully connected
  networks in neural-tangents' ``stax`` conventions.
* :class:`ScaleMixtureNNGP`: NNGP regression with a prior on the last-layer variance
  (Student-t and heavy-tailed processes; Lee et al., ICLR 2022).
* :func:`trained_network_predictive`: outputs of infinitely wide networks trained by
  gradient flow (Lee et al., NeurIPS 2019).
"""

from bayesfn.bayesnn.classification import OneHotNNGPClassifier, SVTPClassifier
from bayesfn.bayesnn.gradient_flow import trained_network_predictive
from bayesfn.bayesnn.nngp import NNGPKernel, nngp_kernel
from bayesfn.bayesnn.scale_mixture import QuadratureWarning, ScaleMixtureNNGP

__all__ = [
    "NNGPKernel",
    "OneHotNNGPClassifier",
    "QuadratureWarning",
    "SVTPClassifier",
    "ScaleMixtureNNGP",
    "nngp_kernel",
    "trained_network_predictive",
]
