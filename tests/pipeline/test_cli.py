"""``fwa run``, ``fwa export`` and ``fwa demo`` as a user runs them: the embedded default store
and a Dagster home of their own."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from fwa_pipeline.cli import cli
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.runs.tags import TRIGGER_TAG
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import get_engine
from fwa_pipeline.store.runs import get_run
from tests.conftest import make_key
from tests.pipeline import batch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(
    settings: Settings, sqlite_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The environment a user's shell would have: store, data directory, key, Dagster home."""
    monkeypatch.setenv("FWA_ENVIRONMENT", "test")
    monkeypatch.setenv("FWA_DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("FWA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("FWA_ENCRYPTION_KEY", settings.encryption_key.get_secret_value())
    home = tmp_path / "dagster_home"  # a copy of the repository's embedded default
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    load_directory(sqlite_engine, settings, "acme", batch.write(batch.batch_one(), tmp_path / "b1"))
    return settings


def invoke(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (where Dagster logs a failing step and click its errors)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_fwa_run_runs_in_process_and_records_the_run(env: Settings) -> None:
    code, output, _ = invoke("run", "--workspace", "acme")

    assert code == 0, output
    summary = json.loads(output)
    assert summary["status"] == "success"
    assert summary["quality"]["failed"] == 2
    assert summary["stats"]["claims_in"] == 9
    with dg.DagsterInstance.get() as instance:  # the run shows in `dagster dev` on this home
        (record,) = instance.get_run_records()
        assert record.dagster_run.run_id == summary["run_id"]
        assert record.dagster_run.tags[TRIGGER_TAG] == "cli"


def test_fwa_run_exits_non_zero_when_the_gate_halts(env: Settings, tmp_path: Path) -> None:
    config = tmp_path / "halt.yaml"
    config.write_text("quality:\n  mode: halt_on_errors\nrules:\n  RULE-MED-006:\n    weight: 2\n")

    code, output, _ = invoke("run", "--workspace", "acme", "--config", str(config))

    assert code == 1
    summary = json.loads(output)
    assert summary["status"] == "failure" and summary["quality"]["failed"] == 2


def test_fwa_run_refuses_unknown_workspaces_and_invalid_config(
    env: Settings, tmp_path: Path
) -> None:
    code, _, errors = invoke("run", "--workspace", "nobody")
    assert code != 0 and "no workspace 'nobody'" in errors
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  RULE-MED-006:\n    weight: -1\n")
    code, _, errors = invoke("run", "--workspace", "acme", "--config", str(bad))
    assert code != 0 and "invalid pipeline config" in errors
    bad.write_text("rules:\n  RULE-NOPE:\n    enabled: false\n")  # a typo, named as such
    code, _, errors = invoke("run", "--workspace", "acme", "--config", str(bad))
    assert code != 0 and "no rule RULE-NOPE in the catalogue" in errors


def test_the_documented_config_example_runs(env: Settings, tmp_path: Path) -> None:
    readme = (ROOT / "docs" / "pipeline.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "overrides.yaml"
    config.write_text(example)

    code, output, errors = invoke("run", "--workspace", "acme", "--config", str(config))

    assert code == 0, errors
    run = get_run(get_engine(env), json.loads(output)["run_id"])
    assert run is not None
    snapshot = run.config_snapshot
    assert snapshot["quality"]["mode"] == "flag_only"
    assert snapshot["rules"]["RULE-RX-010"]["enabled"] is False


def test_commands_on_an_unmigrated_or_unreachable_store_say_so_without_a_traceback(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fwa_api.cli import cli as full_cli  # serve and token join the data commands there

    def refused(*args: str) -> str:
        # catch_exceptions=False: a traceback would fail the test rather than be an exit code.
        result = CliRunner().invoke(full_cli, list(args), catch_exceptions=False)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.stderr
        return result.stderr

    monkeypatch.setenv("FWA_DATABASE_URL", f"sqlite:///{tmp_path / 'new.sqlite'}")
    batch_dir = batch.write(batch.batch_two(), tmp_path / "b2")
    for args in (
        ("load", "--workspace", "acme", str(batch_dir)),
        ("run", "--workspace", "acme"),
        ("export", "--workspace", "acme", "cases"),
        ("token", "list"),
        ("serve", "--port", "1"),  # refused before binding
    ):
        message = refused(*args)
        assert "none (an empty database)" in message and "run `fwa db upgrade`" in message
    assert invoke("db", "upgrade")[0] == 0
    assert invoke("load", "--workspace", "acme", str(batch_dir))[0] == 0

    # Port 1: nothing listens there.
    monkeypatch.setenv("FWA_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert "cannot reach the database" in refused("run", "--workspace", "acme")


def test_fwa_load_refuses_oversize_and_header_only_files_without_a_traceback(
    env: Settings, tmp_path: Path
) -> None:
    directory = batch.write(batch.batch_two(), tmp_path / "b2")
    claims = directory / "medical_claims.csv"
    valid = claims.read_bytes()
    # A column name past the csv module's own field limit (128 KiB).
    claims.write_bytes(b'"' + b"x" * 200 * 1024 + b'",' + valid)

    # catch_exceptions=False: an exception escaping the command fails the test.
    code, _, errors = invoke("load", "--workspace", "acme", str(directory))
    assert code == 2
    assert "medical_claims.csv, line 1: a column name is longer than 65,536 bytes" in errors
    assert "Traceback" not in errors

    claims.write_bytes(valid.split(b"\n", 1)[0] + b"\n")
    code, _, errors = invoke("load", "--workspace", "fresh", str(directory))
    assert code == 2
    assert "medical_claims.csv: the file has a header but no data rows" in errors
    code, _, errors = invoke("run", "--workspace", "fresh")
    assert code != 0 and "no workspace 'fresh'" in errors


def test_fwa_export_writes_hits_scores_and_cases(env: Settings, tmp_path: Path) -> None:
    assert invoke("run", "--workspace", "acme")[0] == 0
    run_id = json.loads(invoke("run", "--workspace", "acme", "--force-reprocess")[1])["run_id"]

    code, output, _ = invoke("export", "--workspace", "acme", "rule-hits", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(output)))
    assert {"claim_id", "rule_id", "severity", "weight", "evidence", "run_id"} <= set(rows[0])
    death = next(r for r in rows if r["rule_id"] == "RULE-MED-006")
    assert death["claim_id"] == "MC-3" and death["run_id"] == run_id
    # M2 died on 2024-01-15: the evidence says how many days after, not the date (PHI).
    assert json.loads(death["evidence"]) == {"service_date": "2024-02-20", "days_after_death": 36}

    code, output, _ = invoke("export", "--workspace", "acme", "rule-hits", "--format", "json")
    hits = json.loads(output)
    assert len(hits) == len(rows)
    assert isinstance(hits[0]["evidence"], dict)

    target = tmp_path / "cases.json"
    code, _, _ = invoke(
        "export", "--workspace", "acme", "cases", "--format", "json", "-o", str(target)
    )
    cases = json.loads(target.read_text())
    assert code == 0 and cases and cases[0]["case_number"].startswith("CASE-")
    assert isinstance(cases[0]["explanation"], dict) and cases[0]["claims"] >= 1

    code, output, _ = invoke("export", "--workspace", "acme", "scores", "--format", "csv")
    scores = list(csv.DictReader(io.StringIO(output)))
    assert code == 0 and {"claim_id", "score", "risk_level", "run_id"} <= set(scores[0])


@pytest.mark.slow
def test_fwa_demo_runs_end_to_end(env: Settings) -> None:
    code, output, _ = invoke("demo", "--claims", "3000", "--seed", "7")

    assert code == 0, output
    assert ": success" in output
    assert "quality issues: " in output and "invalid_npi" in output
    assert "RULE-MED-001" in output and "all rules" in output
    assert "open cases by risk level: critical" in output
    assert "dagster dev -w workspace.yaml" in output
    assert "future_date" in output  # dated after the synthetic data's anchor date
    # Again: the demo workspace is replaced, not duplicated.
    code, again, _ = invoke("demo", "--claims", "3000", "--seed", "7")
    assert code == 0 and "replaced the earlier 'demo' workspace" in again
    engine = get_engine(env)
    with engine.connect() as connection:
        (claims,) = connection.execute(
            text(
                "SELECT count(*) FROM medical_claims WHERE workspace_id NOT IN "
                "(SELECT id FROM workspaces WHERE name = 'acme')"
            )
        ).one()
    assert (
        claims == sum(1 for _ in (env.data_dir / "demo" / "demo" / "medical_claims.csv").open()) - 1
    )


def test_fwa_db_upgrade_encrypts_dates_of_death_with_the_configured_keys(
    env: Settings, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0007 through the CLI: without the key the members are under, a clear refusal
    naming the key id and no traceback; with it, M2's date of death is encrypted again."""

    def stored() -> str | None:
        with sqlite_engine.connect() as conn:
            return conn.execute(
                text("SELECT date_of_death FROM members WHERE member_id = 'M2'")
            ).scalar_one()

    assert invoke("db", "downgrade", "0006")[0] == 0
    assert stored() == "2024-01-15"
    monkeypatch.setenv("FWA_ENCRYPTION_KEY", make_key("other"))
    code, _, errors = invoke("db", "upgrade")
    assert code == 1
    assert "key id(s) test1" in errors and "Traceback" not in errors
    assert stored() == "2024-01-15"  # nothing changed

    monkeypatch.setenv("FWA_ENCRYPTION_KEY", env.encryption_key.get_secret_value())
    assert invoke("db", "upgrade")[0] == 0
    sealed = stored()
    assert sealed is not None and sealed.startswith("v1:test1:")
