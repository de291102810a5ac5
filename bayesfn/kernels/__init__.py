"""Compute kernels (Triton on CUDA, torch reference on CPU) for circuit evaluation.

Empty until the kernels issue lands; importing it never imports triton.
"""
