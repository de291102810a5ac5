"""Weight-space and infinite-width Bayesian neural networks.

Weight space:

* :class:`BNN`: ``BNN(net, prior, likelihood, inference)``, one model for every
  weight-space method; architectures :class:`MLP` and :class:`CNN`
  (``sqrt(fan_in)``-scaled layers), priors in :mod:`bayesfn.bayesnn.priors`,
  likelihoods in :mod:`bayesfn.bayesnn.likelihoods`, inferences in
  :mod:`bayesfn.bayesnn.inference`.

Infinite width (:mod:`bayesfn.bayesnn.nngp`):

* :class:`NNGPKernel` / :func:`nngp_kernel`: NNGP and NTK kernels of fully connected
  networks in neural-tangents' ``stax`` conventions.
* :class:`ScaleMixtureNNGP`: NNGP regression with a prior on the last-layer variance
  (Student-t and heavy-tailed processes; Lee et al., ICLR 2022).
* :func:`trained_network_predictive`: outputs of infinitely wide networks trained by
  gradient flow (Lee et al., NeurIPS 2019).
"""

from bayesfn.bayesnn.bnn import BNN
from bayesfn.bayesnn.functional_prior import FunctionalPriorResult, fit_functional_prior
from bayesfn.bayesnn.inference import (
    MAP,
    NUTS,
    SGHMC,
    DeepEnsemble,
    ImplicitVI,
    Inference,
    LastLayerLaplace,
    MeanFieldVI,
)
from bayesfn.bayesnn.likelihoods import CategoricalLikelihood, GaussianLikelihood
from bayesfn.bayesnn.nets import CNN, MLP
from bayesfn.bayesnn.nngp import (
    NNGPKernel,
    OneHotNNGPClassifier,
    QuadratureWarning,
    ScaleMixtureNNGP,
    SVTPClassifier,
    nngp_kernel,
    trained_network_predictive,
)
from bayesfn.bayesnn.priors import FlowPrior, GaussianPrior, HierarchicalPrior

__all__ = [
    "BNN",
    "CNN",
    "MAP",
    "MLP",
    "NUTS",
    "SGHMC",
    "CategoricalLikelihood",
    "DeepEnsemble",
    "FlowPrior",
    "FunctionalPriorResult",
    "GaussianLikelihood",
    "GaussianPrior",
    "HierarchicalPrior",
    "ImplicitVI",
    "Inference",
    "LastLayerLaplace",
    "MeanFieldVI",
    "NNGPKernel",
    "OneHotNNGPClassifier",
    "QuadratureWarning",
    "SVTPClassifier",
    "ScaleMixtureNNGP",
    "fit_functional_prior",
    "nngp_kernel",
    "trained_network_predictive",
]
