"""Stochastic-process models: exact GPs, neural diffusion processes and operator flow
matching."""

from bayesfn.covariance import build_kernel
from bayesfn.processes.gaussian_process import GaussianProcess
from bayesfn.processes.ndp import NeuralDiffusionProcess
from bayesfn.processes.ofm import OperatorFlowMatching

__all__ = ["GaussianProcess", "NeuralDiffusionProcess", "OperatorFlowMatching", "build_kernel"]
