"""``fwa config show|set|history``: an operator sets a workspace's configuration from a file, and
``fwa run`` applies it unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import get_engine
from fwa_pipeline.store.runs import get_run
from tests.pipeline.test_cli import env, invoke

__all__ = ["env"]  # the fixture this module shares


def test_config_set_show_and_history(env: Settings, tmp_path: Path) -> None:
    code, output, _ = invoke("config", "show", "--workspace", "acme")
    assert code == 0 and json.loads(output)["version"] is None

    lighter = tmp_path / "lighter.yaml"
    lighter.write_text("rules:\n  RULE-MED-006:\n    weight: 3.5\n")
    code, output, errors = invoke(
        "config", "set", "--workspace", "acme", "--file", str(lighter), "--note", "lighter"
    )
    assert code == 0, errors
    assert json.loads(output) == {
        "version": 1,
        "created": True,
        "changes": [
            {"path": "rules.RULE-MED-006.weight", "change": "changed", "before": 9.0, "after": 3.5}
        ],
    }
    flagged = tmp_path / "flag.json"
    flagged.write_text('{"quality": {"mode": "flag_only"}}')
    code, output, _ = invoke(
        "config", "set", "--workspace", "acme", "--file", str(flagged), "--note", "flag",
        "--by", "alice", "--based-on", "1",
    )  # fmt: skip
    assert code == 0 and json.loads(output)["version"] == 2

    code, output, _ = invoke("config", "show", "--workspace", "acme")
    shown = json.loads(output)
    assert (shown["version"], shown["created_by"], shown["note"]) == (2, "alice", "flag")
    assert shown["config"]["quality"]["mode"] == "flag_only"
    code, output, _ = invoke("config", "show", "--workspace", "acme", "--version", "1")
    assert json.loads(output)["config"]["rules"]["RULE-MED-006"]["weight"] == 3.5

    code, output, _ = invoke("config", "history", "--workspace", "acme")
    history = json.loads(output)
    assert [(v["version"], v["note"]) for v in history] == [(2, "flag"), (1, "lighter")]
    assert history[1]["created_by"].startswith("cli")
    assert "document" not in history[0] and history[0]["changes"]

    # fwa run applies version 2; --quality-mode overrides it for that run only.
    code, output, _ = invoke("run", "--workspace", "acme", "--quality-mode", "halt_on_errors")
    summary = json.loads(output)
    snapshot = get_run(get_engine(env), summary["run_id"]).config_snapshot
    assert code == 1  # batch one's invalid claims halt the run
    assert summary["config_version"] == 2
    assert snapshot["config_version"] == 2
    assert snapshot["override"] == {"quality": {"mode": "halt_on_errors"}}


def test_config_set_refuses_what_a_run_would_refuse(env: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    for text, named in (
        ("rules:\n  RULE-NOPE:\n    enabled: false\n", "no rule RULE-NOPE in the catalogue"),
        ("rules:\n  RULE-MED-006:\n    weight: -1\n", "rules.RULE-MED-006.weight"),
        ("- a list\n", "expected a mapping of config sections"),
        ("quality: [unclosed\n", "not YAML or JSON"),
    ):
        bad.write_text(text)
        code, _, errors = invoke(
            "config", "set", "--workspace", "acme", "--file", str(bad), "--note", "x"
        )
        assert code != 0 and named in errors, errors
        assert "Traceback" not in errors
    bad.write_text("{}\n")
    code, _, errors = invoke(
        "config", "set", "--workspace", "acme", "--file", str(bad), "--note", " "
    )
    assert code != 0 and "note: must not be blank" in errors
    code, _, errors = invoke("config", "show", "--workspace", "nobody")
    assert code != 0 and "no workspace 'nobody'" in errors
    code, _, errors = invoke("config", "show", "--workspace", "acme", "--version", "3")
    assert code != 0 and "has no configuration version 3" in errors
    code, output, _ = invoke("config", "history", "--workspace", "acme")
    assert json.loads(output) == []
