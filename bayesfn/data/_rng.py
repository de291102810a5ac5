"""Turning ``generator=`` / ``seed=`` arguments into one ``torch.Generator``."""

from __future__ import annotations

import torch

__all__ = ["make_generator"]


def make_generator(
    generator: torch.Generator | None = None, seed: int | None = None
) -> torch.Generator | None:
    """Return the generator to draw from.

    Args:
        generator: an explicit ``torch.Generator``, used as is (its state advances).
        seed: an integer; a fresh CPU generator seeded with it is created.

    Returns:
        The generator, or ``None`` when neither is given, in which case torch's default
        generator is used (reproducible only through ``torch.manual_seed``).

    Raises:
        ValueError: both ``generator`` and ``seed`` are given.
        TypeError: ``generator`` is not a ``torch.Generator`` or ``seed`` is not an int.
    """
    if generator is not None and seed is not None:
        raise ValueError("pass either generator= or seed=, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None; got {type(generator).__name__}"
            )
        return generator
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None; got {seed!r}")
        return torch.Generator().manual_seed(seed)
    return None
