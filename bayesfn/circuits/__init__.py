"""Monotonic and squared (subtractive) probabilistic circuits.

Empty until the circuits issue lands.
"""
