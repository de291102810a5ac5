"""Infinitely wide networks: NNGP / NTK kernels, their scale mixtures (Student-t and
heavy-tailed processes), the NNGP classifiers and the gradient-flow predictive."""

from bayesfn.bayesnn.nngp.classification import OneHotNNGPClassifier, SVTPClassifier
from bayesfn.bayesnn.nngp.gradient_flow import trained_network_predictive
from bayesfn.bayesnn.nngp.kernel import (
    NNGPKernel,
    activation_slopes,
    check_architecture,
    nngp_kernel,
)
from bayesfn.bayesnn.nngp.scale_mixture import QuadratureWarning, ScaleMixtureNNGP

__all__ = [
    "NNGPKernel",
    "OneHotNNGPClassifier",
    "QuadratureWarning",
    "SVTPClassifier",
    "ScaleMixtureNNGP",
    "activation_slopes",
    "check_architecture",
    "nngp_kernel",
    "trained_network_predictive",
]
