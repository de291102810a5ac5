"""Weight-space and infinite-width Bayesian neural networks.

Empty until the functional-prior, LIVI and scale-mixture NNGP issues land.
"""
