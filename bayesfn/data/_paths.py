"""Where the offline benchmark data lives on disk.

Every real-data loader in :mod:`bayesfn.data` takes a ``root=`` argument: the folder that
holds the data sets (``uci_regression/``, ``mnist/``, ``debd/``, ...). The folder is chosen
in this order, and only the first source that is given is used:

1. the ``root=`` argument;
2. the ``BAYESFN_DATA`` environment variable;
3. the defaults, tried in turn: ``../shared/data`` relative to the current working
   directory, then ``shared/data`` beside the repository clone (the folder three levels
   above this file), which is where CI puts it.

When the data set is absent, :class:`FileNotFoundError` says which data set was wanted,
every place that was looked in, and how to point the loader at the data.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "data_file", "default_roots", "resolve_root"]

#: Name of the environment variable that points at the data folder.
ENV_VAR = "BAYESFN_DATA"


def default_roots() -> list[Path]:
    """The default data folders, in the order they are tried.

    Returns:
        ``[cwd / "../shared/data", <repository parent> / "shared/data"]``, each made
        absolute, with duplicates removed.
    """
    candidates = [
        Path.cwd() / ".." / "shared" / "data",
        Path(__file__).resolve().parents[3] / "shared" / "data",
    ]
    unique: list[Path] = []
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def _candidates(root: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    """Data folders to try, each with a few words saying where it came from."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(
                f"root must be a path (str or os.PathLike) or None; got {type(root).__name__}"
            )
        return [(Path(root).expanduser(), "from the root= argument")]
    env = os.environ.get(ENV_VAR, "")
    if env:
        return [(Path(env).expanduser(), f"from the {ENV_VAR} environment variable")]
    return [(path, "default location") for path in default_roots()]


def _fix_hint(subdir: str) -> str:
    top = subdir.strip("/").split("/")[0]
    return (
        f"To fix this, pass root=<folder that contains '{top}/'> to the loader, or set the "
        f"environment variable {ENV_VAR} to that folder."
    )


def resolve_root(root: str | os.PathLike[str] | None, subdir: str) -> Path:
    """Find the folder ``<data root>/<subdir>`` of one data set.

    Args:
        root: the data root given by the caller, or ``None`` to use ``BAYESFN_DATA`` or
            the defaults (see the module docstring).
        subdir: the data set's folder relative to the data root, e.g.
            ``"uci_regression/concrete"`` or ``"mnist"``.

    Returns:
        The absolute path of the data set's folder.

    Raises:
        FileNotFoundError: when no candidate data root holds ``subdir``; the message
            names the data set, every path looked in, and how to fix it.
    """
    tried = []
    for base, origin in _candidates(root):
        folder = base / subdir
        if folder.is_dir():
            return folder.resolve()
        tried.append(f"  - {folder} ({origin})")
    raise FileNotFoundError(
        f"Data set '{subdir}' was not found. Looked in:\n"
        + "\n".join(tried)
        + "\n"
        + _fix_hint(subdir)
    )


def data_file(folder: Path, filename: str, dataset: str) -> Path:
    """Return ``folder / filename``, or raise a clear error when that file is missing.

    Args:
        folder: a data set's folder, as returned by :func:`resolve_root`.
        filename: the file wanted inside it.
        dataset: the data set's name, for the error message.

    Raises:
        FileNotFoundError: naming the data set and the full path of the missing file.
    """
    path = folder / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"Data set '{dataset}': the file {path} is missing, so the data folder "
            f"{folder} is incomplete. Restore the file (shared/data/SHA256SUMS lists every "
            f"data file), or point the loader at a complete copy with root= or {ENV_VAR}."
        )
    return path
