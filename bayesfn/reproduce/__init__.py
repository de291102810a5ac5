"""One reproduction per paper, run by ``bayesfn reproduce <paper>``.

Each reproduction is a module ``bayesfn.reproduce.<name>`` exposing

* ``PAPER``: a one-line citation,
* ``run(*, scale, seeds, device, out) -> dict``: runs the experiment at ``scale``
  (``"smoke"`` or ``"full"``), writes plots into ``out`` and returns the
  ``results.json`` payload built with :func:`bayesfn.reproduce.results.make_results`.

A method issue adds its module and one line to ``REGISTRY``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# paper name -> module under bayesfn.reproduce; empty until the method issues land
REGISTRY: dict[str, str] = {
    "nngp": "nngp",
    "circuits": "circuits",
    "funcprior": "funcprior",
}


def available() -> list[str]:
    """Names accepted by ``bayesfn reproduce``."""
    return sorted(REGISTRY)


def load(name: str) -> ModuleType:
    """Import the reproduction module for paper ``name``."""
    if name not in REGISTRY:
        known = ", ".join(available()) or "none yet"
        raise ValueError(f"unknown paper {name!r}; available reproductions: {known}")
    return importlib.import_module(f"bayesfn.reproduce.{REGISTRY[name]}")
