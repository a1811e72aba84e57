"""The repository's files as a fresh clone of the working tree would have them."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def repository_files(root: Path = ROOT) -> list[str]:
    """Paths (relative to ``root``) of the files git tracks and of the untracked ones it does not ignore,
    as they are in the working tree (deleted ones and links left out)."""
    listed = subprocess.run(  # noqa: S603
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = []
    for raw in filter(None, listed):
        rel = raw.decode()
        path = root / rel
        if path.is_file() and not path.is_symlink():
            paths.append(rel)
    return paths
