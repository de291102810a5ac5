"""Stochastic-process models: exact GPs now; neural diffusion processes and operator
flow matching as their issues land."""

from bayesfn.covariance import build_kernel
from bayesfn.processes.gaussian_process import GaussianProcess

__all__ = ["GaussianProcess", "build_kernel"]
