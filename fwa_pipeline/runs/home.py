"""Where the local Dagster instance lives. A module of its own so the API and ``fwa dev`` can
find it without importing the Dagster definitions."""

import os
from pathlib import Path


def default_dagster_home() -> Path:
    """``DAGSTER_HOME``, set to ``./dagster_home`` (the repository's embedded default) when
    unset; a home created here gets a minimal dagster.yaml (SQLite storage is Dagster's
    default; without the file Dagster prints a telemetry notice on stdout)."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(Path.cwd() / "dagster_home")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home
