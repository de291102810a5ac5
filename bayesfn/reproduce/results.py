"""The ``results.json`` format every reproduction writes (DESIGN §5)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["make_results", "result_row", "write_results"]


def result_row(
    setting: str,
    metric: str,
    ours: float,
    *,
    paper: float | None = None,
    ours_std: float | None = None,
) -> dict[str, Any]:
    """One line of the comparison table: our number beside the paper's."""
    if not isinstance(ours, int | float) or math.isnan(ours):
        raise ValueError(f"ours must be a number for {setting}/{metric}; got {ours!r}")
    return {
        "setting": setting,
        "metric": metric,
        "paper": None if paper is None else float(paper),
        "ours": float(ours),
        "ours_std": None if ours_std is None else float(ours_std),
    }


def make_results(
    paper: str, scale: str, seeds: list[int], rows: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """Assemble the payload: ``{"paper", "scale", "seeds", "rows", ...extra}``."""
    if scale not in ("smoke", "full"):
        raise ValueError(f"scale must be 'smoke' or 'full'; got {scale!r}")
    return {"paper": paper, "scale": scale, "seeds": list(seeds), "rows": rows, **extra}


def write_results(results: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write ``results.json`` into folder ``out`` and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)
    return path
