"""Where the real (never committed) data lives: `$UT_DATA_DIR`, else `../shared/data` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "UT_DATA_DIR"


def candidate_data_dirs() -> list[Path]:
    """The folders `find_data_dir` tries, in order."""
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(REPO_ROOT.parent / "shared" / "data")
    return dirs


def find_data_dir(subdir: str | None = None) -> Path:
    """Return the real data folder (or `subdir` inside it).

    Looks at `$UT_DATA_DIR` first (when set), then `<repo root>/../shared/data`. Raises `FileNotFoundError`
    listing every place it looked when none exists.
    """
    looked = []
    for base in candidate_data_dirs():
        path = base / subdir if subdir else base
        looked.append(path)
        if path.is_dir():
            return path
    where = "\n  ".join(str(p) for p in looked)
    raise FileNotFoundError(
        f"data folder {subdir or ''!s} not found; looked in:\n  {where}\n"
        f"Set {ENV_VAR} to the folder holding babi/, lambada/ ... (see ../shared/data/README.md)."
    )
