"""One reproduction per paper, run by ``bayesfn reproduce <paper>``.

Each reproduction is a module ``bayesfn.reproduce.<name>`` exposing

* ``PAPER``: a one-line citation,
* ``SCALES``: the named presets ``run`` accepts (a dict keyed by name, or a sequence
  of names), at least ``"smoke"`` and ``"full"``; :func:`check_scale` validates a name
  against it before any work starts,
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
    "livi_baselines": "livi_baselines",
    "ofm": "ofm",
    "livi": "livi",
    "ndp": "ndp",
    "ndp_extras": "ndp_extras",
    "ndp_multidim": "ndp_multidim",
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


def scales(module: ModuleType) -> list[str]:
    """The preset names a reproduction module accepts (its ``SCALES``)."""
    presets = getattr(module, "SCALES", None)
    if presets is None:
        raise AttributeError(f"reproduction {module.__name__} does not define SCALES")
    return list(presets)


def check_scale(module: ModuleType, scale: str) -> None:
    """Raise a ``ValueError`` naming the accepted presets unless ``scale`` is one of
    ``module``'s; called before any work, by the CLI and by each ``run``."""
    names = scales(module)
    if scale not in names:
        paper = module.__name__.rsplit(".", 1)[-1]
        raise ValueError(
            f"scale {scale!r} is not a preset of the {paper!r} reproduction; choose from "
            f"{sorted(names)}"
        )
