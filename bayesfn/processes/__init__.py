"""Stochastic-process models: exact GPs now; neural diffusion processes and operator
flow matching as their issues land."""

from bayesfn.covariance import build_kernel
from bayesfn.processes.gaussian_process import GaussianProcess
from bayesfn.processes.ndp import NeuralDiffusionProcess

__all__ = ["GaussianProcess", "NeuralDiffusionProcess", "build_kernel"]
