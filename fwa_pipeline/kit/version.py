"""The code a run executes: the installed package's version, and the git commit when the package
runs from a git checkout (an image built without ``.git`` has none; that is not an error)."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE = "fwa-platform"
# The checkout this package runs from, when it does (an editable install).
ROOT = Path(__file__).resolve().parents[2]
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """``{"package": "0.1.0", "commit": "<40 hex>" | None}``, read once per process."""
    try:
        package: str | None = version(PACKAGE)
    except PackageNotFoundError:
        package = None
    return {"package": package, "commit": _git_commit()}


def _git_commit() -> str | None:
    # Only this project's own checkout: git would otherwise find a repository enclosing
    # site-packages and report a commit that has nothing to do with this code.
    if not (ROOT / ".git").exists() or not (ROOT / "pyproject.toml").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git binary, or it hung
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and COMMIT.match(commit) else None
