"""Each workspace's pipeline configuration, versioned: every change is a new ``WorkspaceConfig``
row holding the full validated document, who set it, when and why. Runs that do not override it
apply the newest version (see ``runs.config.workspace_run_config``), and record its number.

A document is validated exactly as a run's override is (``domain.config.resolve_config``: laid
over the catalogue defaults, unknown rules refused by name), and stored whole, so a version
means the same configuration whatever later releases change in the catalogue's defaults.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from fwa_pipeline.domain.config import catalogue_document, resolve_config
from fwa_pipeline.kit.validation import InvalidInput, clean_text
from fwa_pipeline.store.bulk import connection_of
from fwa_pipeline.store.models import Workspace, WorkspaceConfig

Source = Engine | Connection
MAX_NOTE_CHARS = 500  # the note column's length


class StaleConfigError(RuntimeError):
    """The version a change was based on is no longer the workspace's newest."""


@dataclass(frozen=True)
class ConfigVersion:
    workspace_id: int
    version: int
    document: dict[str, Any]
    created_by: str
    created_at: dt.datetime
    note: str


def _version(row: Any) -> ConfigVersion:
    # The row holds every column of the table; a version is those of them it names.
    return ConfigVersion(**{f.name: getattr(row, f.name) for f in fields(ConfigVersion)})


def current_config(source: Source, workspace_id: int) -> ConfigVersion | None:
    """The workspace's newest version; None while it has none (runs apply the catalogue)."""
    with connection_of(source) as connection:
        row = connection.execute(
            select(WorkspaceConfig)
            .where(WorkspaceConfig.workspace_id == workspace_id)
            .order_by(WorkspaceConfig.version.desc())
            .limit(1)
        ).first()
    return None if row is None else _version(row)


def current_config_of(source: Source, workspace: str) -> ConfigVersion | None:
    """:func:`current_config` by workspace name (what launchers know); None for no workspace."""
    with connection_of(source) as connection:
        ws_id = connection.scalar(select(Workspace.id).where(Workspace.name == workspace))
        return None if ws_id is None else current_config(connection, ws_id)


def config_history(source: Source, workspace_id: int) -> list[dict[str, Any]]:
    """Every version, newest first, each with its changes from the one before (version 1: from
    the catalogue defaults, which runs applied until then)."""
    with connection_of(source) as connection:
        rows = connection.execute(
            select(WorkspaceConfig)
            .where(WorkspaceConfig.workspace_id == workspace_id)
            .order_by(WorkspaceConfig.version)
        ).all()
    history = []
    previous: Mapping[str, Any] = catalogue_document()
    for row in rows:
        history.append({**_version(row).__dict__, "changes": diff(previous, row.document)})
        previous = row.document
    history.reverse()
    return history


def set_config(
    engine: Engine,
    workspace_id: int,
    document: Mapping[str, Any],
    *,
    created_by: str,
    note: str,
    based_on: int | None = None,
) -> tuple[ConfigVersion, bool]:
    """Validate ``document`` (laid over the catalogue defaults; raises ``ConfigError``, and
    ``InvalidInput`` for a blank or overlong ``note``) and
    store it as the workspace's next version. Returns the version and whether it is new: a
    document equal to the newest version's makes none. ``based_on``: the version the change
    was made from; another one saved since raises :class:`StaleConfigError` (as does a
    concurrent change to the same workspace)."""
    note = clean_text(note, "note")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput([("note", f"at most {MAX_NOTE_CHARS} characters")])
    full = resolve_config(document).model_dump(mode="json")
    try:
        with engine.begin() as connection:
            current = current_config(connection, workspace_id)
            number = current.version if current else 0
            if based_on is not None and based_on != number:
                raise StaleConfigError(
                    f"the configuration is at version {number}, not {based_on}: read it again "
                    "and apply the change to it"
                )
            if current is not None and current.document == full:
                return current, False
            connection.execute(
                insert(WorkspaceConfig).values(
                    workspace_id=workspace_id,
                    version=number + 1,
                    document=full,
                    created_by=created_by,
                    note=note,
                )
            )
            stored = current_config(connection, workspace_id)
    except IntegrityError:  # another change took the same version number first
        raise StaleConfigError(
            "another change to this configuration was saved at the same time: read it again"
        ) from None
    assert stored is not None
    return stored, True


def config_version(source: Source, workspace_id: int, version: int) -> ConfigVersion | None:
    with connection_of(source) as connection:
        row = connection.execute(
            select(WorkspaceConfig).where(
                WorkspaceConfig.workspace_id == workspace_id, WorkspaceConfig.version == version
            )
        ).first()
    return None if row is None else _version(row)


def diff(
    before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = ""
) -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after``, one entry per leaf (a list is one leaf):
    ``{"path": "rules.RULE-MED-006.weight", "change": "changed", "before": 9.0, "after": 3.5}``
    (``added`` has no ``before``, ``removed`` no ``after``), in path order."""
    changes: list[dict[str, Any]] = []
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}{key}"
        if key not in after:
            changes.append({"path": path, "change": "removed", "before": before[key]})
        elif key not in before:
            changes.append({"path": path, "change": "added", "after": after[key]})
        elif isinstance(before[key], Mapping) and isinstance(after[key], Mapping):
            changes.extend(diff(before[key], after[key], f"{path}."))
        elif before[key] != after[key]:
            changes.append(
                {"path": path, "change": "changed", "before": before[key], "after": after[key]}
            )
    return changes
