"""Stochastic-process models: exact GPs now; neural diffusion processes and operator
flow matching as their issues land."""

from bayesfn.processes.gaussian_process import GaussianProcess, build_kernel

__all__ = ["GaussianProcess", "build_kernel"]
