"""The ``results.json`` format every reproduction writes (DESIGN §5), and the
paper-beside-ours table that ``bayesfn reproduce`` prints and writes to ``report.md``."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_table", "make_results", "merge_results", "result_row", "write_results"]

_PRESET = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def result_row(
    setting: str,
    metric: str,
    ours: float,
    *,
    paper: float | None = None,
    ours_std: float | None = None,
    seeds: Sequence[int] | None = None,
    reference: float | None = None,
    reference_source: str | None = None,
) -> dict[str, Any]:
    """One line of the comparison table: our number beside the paper's.

    Args:
        setting, metric: what was measured.
        ours: our value (mean over ``seeds``); ``ours_std`` its spread.
        paper: the paper's own number, or ``None``.
        seeds: the seeds this row's value was computed from.
        reference: a number from another source (a baseline paper, an official
            notebook); ``reference_source`` says which. Kept apart from ``paper``.
    """
    if not isinstance(ours, int | float) or math.isnan(ours):
        raise ValueError(f"ours must be a number for {setting}/{metric}; got {ours!r}")
    if (reference is None) != (reference_source is None):
        raise ValueError(f"{setting}/{metric}: give reference= and reference_source= together")
    row = {
        "setting": setting,
        "metric": metric,
        "paper": None if paper is None else float(paper),
        "ours": float(ours),
        "ours_std": None if ours_std is None else float(ours_std),
    }
    if seeds is not None:
        row["seeds"] = [int(s) for s in seeds]
    if reference is not None:
        row["reference"] = float(reference)
        row["reference_source"] = str(reference_source)
    return row


def make_results(
    paper: str, scale: str, seeds: list[int], rows: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """Assemble the payload: ``{"paper", "scale", "seeds", "rows", ...extra}``.

    ``scale`` is the name of the preset that actually ran (``"smoke"``, ``"cpu"``,
    ``"full"``, ...). A row without its own ``seeds`` was computed from all ``seeds``.
    """
    if not isinstance(scale, str) or not _PRESET.match(scale):
        raise ValueError(
            f"scale must be the name of the preset that ran, e.g. 'smoke', 'cpu' or 'full'; "
            f"got {scale!r}"
        )
    rows = [r if "seeds" in r else {**r, "seeds": list(seeds)} for r in rows]
    return {"paper": paper, "scale": scale, "seeds": list(seeds), "rows": rows, **extra}


def merge_results(parts: Sequence[dict[str, Any]], sources: Sequence[str]) -> dict[str, Any]:
    """Merge the ``results.json`` payloads of runs of one paper and preset that were
    split (by data set or seed) over several processes or machines.

    Rows are concatenated; a ``(setting, metric)`` pair may appear in only one part.
    Extra keys of each part are kept under ``merged_from`` with its source, so that
    nothing a part recorded is lost.
    """
    if not parts:
        raise ValueError("nothing to merge")
    if len(parts) != len(sources):
        raise ValueError("give one source name per part")
    paper, scale = parts[0]["paper"], parts[0]["scale"]
    rows, seen, seeds, merged_from = [], {}, [], []
    for part, source in zip(parts, sources, strict=True):
        if (part["paper"], part["scale"]) != (paper, scale):
            raise ValueError(
                f"{source} holds {part['paper']!r} at scale {part['scale']!r}; the first part "
                f"holds {paper!r} at scale {scale!r}: only runs of one paper and preset merge"
            )
        for row in part["rows"]:
            key = (row["setting"], row["metric"])
            if key in seen:
                raise ValueError(f"row {key} appears in both {seen[key]} and {source}")
            seen[key] = source
            rows.append(row if "seeds" in row else {**row, "seeds": part["seeds"]})
        seeds.extend(s for s in part["seeds"] if s not in seeds)
        extra = {k: v for k, v in part.items() if k not in ("paper", "scale", "seeds", "rows")}
        merged_from.append({"source": source, "seeds": part["seeds"], **extra})
    return make_results(paper, scale, seeds, rows, merged_from=merged_from)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def format_table(results: dict[str, Any]) -> str:
    """The rows as a Markdown table: setting, metric, paper, ours ± std, gap, seeds
    (and the reference column with its source when any row has one)."""
    rows = results["rows"]
    has_ref = any("reference" in r for r in rows)
    head = ["setting", "metric", "paper", "ours ± std", "gap (ours − paper)", "seeds"]
    if has_ref:
        head[3:3] = ["reference"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sources: dict[str, int] = {}
    for r in rows:
        ours = _num(r["ours"]) + (f" ± {_num(r['ours_std'])}" if r["ours_std"] is not None else "")
        gap = "" if r["paper"] is None else _num(r["ours"] - r["paper"])
        cells = [r["setting"], r["metric"], _num(r["paper"]), ours, gap]
        cells.append(",".join(str(s) for s in r.get("seeds", [])))
        if has_ref:
            ref = ""
            if "reference" in r:
                mark = sources.setdefault(r["reference_source"], len(sources) + 1)
                ref = f"{_num(r['reference'])} [{mark}]"
            cells[3:3] = [ref]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for source, mark in sources.items():
        lines.append(f"\n[{mark}] {source}")
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write ``results.json`` and ``report.md`` (the table) into folder ``out``; return
    the path of ``results.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)
    report = f"# {results['paper']}\n\nscale: {results['scale']}\n\n{format_table(results)}"
    (out / "report.md").write_text(report)
    return path
