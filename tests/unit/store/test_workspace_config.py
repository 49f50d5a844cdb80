"""A workspace's configuration versions: each change a new version with its author, note and
the changes from the version before; validated like a run's override; never rewritten."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert

from fwa_pipeline.domain.config import ConfigError, catalogue_document
from fwa_pipeline.store.models import Workspace
from fwa_pipeline.store.workspace_config import (
    StaleConfigError,
    config_history,
    config_version,
    current_config,
    current_config_of,
    set_config,
)


@pytest.fixture
def workspace(sqlite_engine: Engine) -> int:
    with sqlite_engine.begin() as connection:
        connection.execute(insert(Workspace).values(id=1, name="acme"))
    return 1


def test_each_change_is_a_new_version_with_its_changes(
    sqlite_engine: Engine, workspace: int
) -> None:
    assert current_config(sqlite_engine, workspace) is None  # runs apply the catalogue

    first, new = set_config(
        sqlite_engine,
        workspace,
        {"rules": {"RULE-MED-006": {"weight": 3.5}}},
        created_by="admin-1",
        note="death claims weigh less",
    )
    second, _ = set_config(
        sqlite_engine,
        workspace,
        {"quality": {"mode": "flag_only"}},
        created_by="admin-2",
        note="flag, do not hold",
    )

    assert new and (first.version, second.version) == (1, 2)
    # Stored whole: omitted keys are the catalogue's, so version 2 undoes version 1's weight.
    assert first.document["rules"]["RULE-MED-006"]["weight"] == 3.5
    assert second.document["rules"]["RULE-MED-006"]["weight"] == 9.0
    assert second.document["rules"].keys() == catalogue_document()["rules"].keys()
    assert current_config_of(sqlite_engine, "acme") == second
    assert config_version(sqlite_engine, workspace, 1) == first

    newest, oldest = config_history(sqlite_engine, workspace)
    assert (newest["version"], newest["created_by"], newest["note"]) == (
        2,
        "admin-2",
        "flag, do not hold",
    )
    assert newest["changes"] == [
        {
            "path": "quality.mode",
            "change": "changed",
            "before": "skip_invalid",
            "after": "flag_only",
        },
        {"path": "rules.RULE-MED-006.weight", "change": "changed", "before": 3.5, "after": 9.0},
    ]
    # Version 1 against what runs applied before it: the catalogue.
    assert oldest["changes"] == [
        {"path": "rules.RULE-MED-006.weight", "change": "changed", "before": 9.0, "after": 3.5}
    ]
    assert oldest["created_at"] <= newest["created_at"]


def test_the_same_document_again_makes_no_version(sqlite_engine: Engine, workspace: int) -> None:
    first, _ = set_config(sqlite_engine, workspace, {}, created_by="a", note="defaults")
    again, new = set_config(sqlite_engine, workspace, {}, created_by="b", note="again")

    assert not new and again == first
    assert len(config_history(sqlite_engine, workspace)) == 1


def test_invalid_documents_are_refused_by_field_and_store_nothing(
    sqlite_engine: Engine, workspace: int
) -> None:
    with pytest.raises(ConfigError) as typo:
        set_config(sqlite_engine, workspace, {"rules": {"RULE-NOPE": {}}}, created_by="a", note="x")
    assert typo.value.problems[0][0] == "rules.RULE-NOPE"
    assert "no rule RULE-NOPE in the catalogue" in typo.value.problems[0][1]

    with pytest.raises(ConfigError) as bad:
        set_config(
            sqlite_engine,
            workspace,
            {"rules": {"RULE-MED-006": {"weight": -1}}, "quality": {"mode": "sometimes"}},
            created_by="a",
            note="x",
        )
    assert sorted(field for field, _ in bad.value.problems) == [
        "quality.mode",
        "rules.RULE-MED-006.weight",
    ]
    with pytest.raises(ConfigError) as extra:
        set_config(sqlite_engine, workspace, {"scoring": {"bandz": {}}}, created_by="a", note="x")
    assert [field for field, _ in extra.value.problems] == ["scoring.bandz"]
    assert current_config(sqlite_engine, workspace) is None


def test_a_change_based_on_an_older_version_is_refused(
    sqlite_engine: Engine, workspace: int
) -> None:
    set_config(sqlite_engine, workspace, {}, created_by="a", note="one", based_on=0)
    set_config(
        sqlite_engine,
        workspace,
        {"scoring": {"multiplier": 9.0}},
        created_by="b",
        note="two",
        based_on=1,
    )

    with pytest.raises(StaleConfigError, match="at version 2, not 1"):
        set_config(
            sqlite_engine,
            workspace,
            {"quality": {"mode": "flag_only"}},
            created_by="a",
            note="three",
            based_on=1,
        )
    assert current_config(sqlite_engine, workspace).version == 2
