"""MkDocs hooks: tutorials from ``tutorials/`` and reproduction tables from
``reproductions/*.json`` enter the site from their single source, never retyped.

A page line ``<!-- results: NAME -->`` becomes the paper-beside-ours table of
``reproductions/NAME`` (the same table ``bayesfn reproduce`` prints).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_MARK = re.compile(r"<!--\s*results:\s*([\w.-]+)\s*-->")


def on_pre_build(config, **kwargs):
    # mkdocs reads pages from docs_dir only: mirror the tutorials' jupytext sources
    target = Path(config["docs_dir"]) / "tutorials"
    target.mkdir(exist_ok=True)
    for path in sorted((ROOT / "tutorials").glob("[0-9]*.py")):
        shutil.copyfile(path, target / path.name)


def on_page_markdown(markdown, page, config, files, **kwargs):
    from bayesfn.reproduce.results import format_table

    def table(match: re.Match) -> str:
        path = ROOT / "reproductions" / match.group(1)
        if not path.exists():
            raise FileNotFoundError(f"{page.file.src_path} cites {path}, which does not exist")
        results = json.loads(path.read_text())
        return f"Scale: `{results['scale']}`.\n\n" + format_table(results)

    return _MARK.sub(table, markdown)
