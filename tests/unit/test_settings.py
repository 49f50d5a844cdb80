"""Production refuses to start on unsafe settings, naming every problem at once; every
environment refuses a setting that does not parse, the assistant's included, naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fwa_pipeline.settings import (
    DEV_DB_PASSWORD,
    DEV_SECRET_KEY,
    ConfigurationError,
    Settings,
    get_settings,
)
from tests.conftest import make_key

GOOD = {
    "environment": "production",
    "secret_key": "kT3v9-QpZx_Lw2Rb8NcYf4HjUm6AsEgD",
    "database_url": "postgresql://fwa:a-real-password@db:5432/fwa",
    "encryption_key": make_key("prod1"),
    "allowed_origins": "https://fwa.example.org",
    "redis_url": "redis://redis:6379/0",
    "_env_file": None,
}


def test_safe_production_settings_start() -> None:
    settings = Settings(**GOOD)
    assert settings.allowed_origins == ["https://fwa.example.org"]
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"secret_key": DEV_SECRET_KEY}, "FWA_SECRET_KEY is the development default"),
        ({"secret_key": "short-but-not-default"}, "FWA_SECRET_KEY is shorter than 32 bytes"),
        ({"secret_key": " " * 32}, "FWA_SECRET_KEY is shorter than 32 bytes"),
        ({"secret_key": "  " + "x7Kq" * 7 + "  "}, "shorter than 32 bytes"),
        ({"secret_key": "s" * 48}, "fewer than 10 distinct characters"),
        ({"database_url": ""}, "FWA_DATABASE_URL is SQLite"),
        ({"database_url": "sqlite:////tmp/x.db"}, "FWA_DATABASE_URL is SQLite"),
        (
            {"database_url": f"postgresql://fwa:{DEV_DB_PASSWORD}@db/fwa"},
            "carries the development database password",
        ),
        (
            {"database_url": "postgresql://fwa:fwa%5Fdev%5Fpassword@db/fwa"},
            "carries the development database password",
        ),
        ({"encryption_key": ""}, "FWA_ENCRYPTION_KEY is empty"),
        ({"encryption_key": "k1:not-base64!!"}, "FWA_ENCRYPTION_KEY is malformed"),
        ({"encryption_key": "k1:c2hvcnQ="}, "must decode to 32 bytes"),
        ({"allowed_origins": "https://a.example.org,*"}, "FWA_ALLOWED_ORIGINS contains '*'"),
        ({"redis_url": ""}, "FWA_REDIS_URL is not set, so nothing would be rate limited"),
        ({"redis_url": None}, "FWA_RATE_LIMIT_ENABLED=false"),
        ({"allowed_origins": "null"}, "FWA_ALLOWED_ORIGINS contains 'null'"),
        ({"allowed_origins": "http://fwa.example.org"}, "'http://fwa.example.org' is not an https"),
        ({"allowed_origins": "https://fwa.example.org/ui"}, "is not an https:// origin"),
        ({"allowed_origins": "https://u@fwa.example.org"}, "is not an https:// origin"),
        ({"allowed_origins": "fwa.example.org"}, "is not an https:// origin"),
    ],
)
def test_each_unsafe_setting_is_refused(override: dict[str, str], message: str) -> None:
    with pytest.raises(
        ConfigurationError, match="refusing to start with this production configuration"
    ) as info:
        Settings(**{**GOOD, **override})
    assert message in str(info.value)


def test_all_problems_are_listed_together() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(
            environment="production",
            secret_key=DEV_SECRET_KEY,
            database_url="",
            encryption_key="",
            allowed_origins="*",
            _env_file=None,
        )
    text = str(info.value)
    for fragment in ("SECRET_KEY", "DATABASE_URL", "ENCRYPTION_KEY is empty", "ALLOWED_ORIGINS"):
        assert fragment in text


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FWA_ALLOWED_ORIGINS", "https://a.example.org, https://b.example.org")
    monkeypatch.setenv("FWA_RATE_LIMIT_PER_MINUTE", "7")
    settings = Settings(_env_file=None)
    assert settings.allowed_origins == ["https://a.example.org", "https://b.example.org"]
    assert settings.rate_limit_per_minute == 7


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings(**GOOD)
    shown = repr(settings) + str(settings.model_dump())
    assert "a-real-password" not in shown
    assert GOOD["secret_key"] not in shown
    assert GOOD["encryption_key"].split(":", 1)[1] not in shown


def test_development_defaults_to_sqlite_under_data_dir(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'fwa.db'}"
    assert settings.encryption_keys == {}


def test_production_needs_the_allowed_origins_set() -> None:
    unset = {k: v for k, v in GOOD.items() if k != "allowed_origins"}
    with pytest.raises(ConfigurationError) as info:
        Settings(**unset)
    assert "FWA_ALLOWED_ORIGINS is not set" in str(info.value)
    # Set empty: no cross-origin caller at all, which is safe.
    assert Settings(**{**GOOD, "allowed_origins": ""}).allowed_origins == []
    assert Settings(**{**GOOD, "allowed_origins": "https://a.example.org:8443"}).allowed_origins


@pytest.mark.parametrize("spelling", ["Production", "PRODUCTION", " production "])
def test_the_environment_is_read_case_insensitively(
    monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.setenv("FWA_ENVIRONMENT", spelling)
    with pytest.raises(ConfigurationError, match="production configuration"):
        Settings(_env_file=None)  # the development defaults: refused as production
    assert Settings(**{**GOOD, "environment": spelling}).environment == "production"


def test_the_cli_refuses_an_unknown_environment_without_a_traceback() -> None:
    from click.testing import CliRunner

    from fwa_pipeline.cli import cli

    result = CliRunner().invoke(
        cli,
        ["db", "upgrade"],
        env={"FWA_ENVIRONMENT": "prod", "FWA_RATE_LIMIT_PER_MINUTE": "many"},
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "invalid configuration" in result.stderr
    assert "FWA_ENVIRONMENT: Input should be 'development', 'test' or 'production'" in result.stderr
    assert "FWA_RATE_LIMIT_PER_MINUTE" in result.stderr
    assert "many" not in result.stderr  # the values are not echoed


def test_production_without_redis_starts_only_with_rate_limiting_turned_off() -> None:
    settings = Settings(**{**GOOD, "redis_url": None, "rate_limit_enabled": False})
    assert settings.rate_limit_enabled is False


def test_the_assistants_settings_come_from_their_own_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FWA_LLM_READ_TIMEOUT_S", "7.5")
    monkeypatch.setenv("FWA_OLLAMA_URL", "http://ollama:11434/")
    monkeypatch.setenv("fwa_ollama_model", "qwen")  # names are case-insensitive
    assistant = Settings(_env_file=None).assistant
    assert (assistant.llm_backend, assistant.base_url, assistant.model) == (
        "ollama",
        "http://ollama:11434",
        "qwen",
    )
    assert assistant.llm_read_timeout_s == 7.5
    # The environment over the .env file, the constructor's values over both.
    env_file = tmp_path / ".env"
    env_file.write_text("FWA_LLM_URL=http://file:8080\nFWA_OLLAMA_MODEL=from-file\n")
    assistant = Settings(_env_file=env_file).assistant
    assert (assistant.base_url, assistant.model) == ("http://file:8080", "qwen")
    given = Settings(_env_file=env_file, assistant={"llm_model": "given"}).assistant
    assert (given.base_url, given.model, given.llm_read_timeout_s) == (
        "http://file:8080",
        "given",
        7.5,
    )


@pytest.mark.parametrize(
    ("variables", "named", "message"),
    [
        ({"FWA_LLM_BACKEND": "nonsense"}, "FWA_LLM_BACKEND", "Input should be 'ollama'"),
        ({"FWA_AGENT_TURN_TIMEOUT_S": "-1"}, "FWA_AGENT_TURN_TIMEOUT_S", "greater than 0"),
        ({"FWA_LLM_URL": "llm-host:8080/v1"}, "FWA_LLM_URL", "an http:// or https:// URL"),
        ({"FWA_OLLAMA_URL": "http://:11434"}, "FWA_OLLAMA_URL", "an http:// or https:// URL"),
        ({"FWA_LLM_MAX_TOKENS": "many"}, "FWA_LLM_MAX_TOKENS", "a valid integer"),
        ({"FWA_LLM_BACKEND": "openai"}, "FWA_LLM_URL", "needs FWA_LLM_URL and FWA_LLM_MODEL"),
        ({"FWA_OLLAMA_MODEL": ""}, "FWA_OLLAMA_MODEL", "must not be empty"),
    ],
)
def test_a_bad_assistant_setting_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str, message: str
) -> None:
    from click.testing import CliRunner

    from fwa_api.app import create_app
    from fwa_pipeline.cli import cli

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)
    get_settings.cache_clear()
    with pytest.raises(ValidationError, match=message):
        create_app()  # the app's own settings: refused before it serves a request
    # Every command (``fwa serve`` too) refuses with the variable's name, not the value.
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=variables)
    assert result.exit_code == 1
    assert "invalid configuration" in result.stderr
    assert named in result.stderr
    assert message in result.stderr
    assert "nonsense" not in result.stderr and "many" not in result.stderr


def test_runs_compute_in_process_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    assert (settings.compute, settings.shards, settings.dask_workers) == ("local", 0, 0)
    assert settings.dask_scheduler_address == ""
    monkeypatch.setenv("FWA_COMPUTE", "dask")
    monkeypatch.setenv("FWA_SHARDS", "8")
    monkeypatch.setenv("FWA_DASK_WORKERS", "3")
    settings = Settings(_env_file=None)
    assert (settings.compute, settings.shards, settings.dask_workers) == ("dask", 8, 3)


@pytest.mark.parametrize("address", ["tcp://dask-scheduler:8786", "tls://10.0.0.5:8786"])
def test_a_scheduler_address_means_dask_unless_local_is_asked(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("FWA_DASK_SCHEDULER_ADDRESS", address)
    assert Settings(_env_file=None).compute == "dask"
    # Set explicitly, local wins: a cluster can be left out without removing its address.
    monkeypatch.setenv("FWA_COMPUTE", "local")
    assert Settings(_env_file=None).compute == "local"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"FWA_DASK_SCHEDULER_ADDRESS": "dask-scheduler:8786"}, "tcp://host:port"),
        ({"FWA_DASK_SCHEDULER_ADDRESS": "http://dask-scheduler:8786"}, "tcp://host:port"),
        ({"FWA_DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler"}, "tcp://host:port"),
        ({"FWA_DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler:port"}, "tcp://host:port"),
        ({"FWA_DASK_SCHEDULER_ADDRESS": "tcp://:8786"}, "tcp://host:port"),
        ({"FWA_DASK_SCHEDULER_ADDRESS": "tcp://u:p@dask-scheduler:8786"}, "tcp://host:port"),
        ({"FWA_DASK_SCHEDULER_ADDRESS": "tcp://dask-scheduler:8786/x"}, "tcp://host:port"),
        ({"FWA_COMPUTE": "ray"}, "'local' or 'dask'"),
        ({"FWA_SHARDS": "-1"}, "greater than or equal to 0"),
        ({"FWA_DASK_WORKERS": "-2"}, "greater than or equal to 0"),
    ],
)
def test_a_bad_compute_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)


@pytest.mark.parametrize("limit", ["auto", "3GB", "1.5GiB", "512MB"])
def test_a_worker_memory_limit_dask_reads_is_accepted(limit: str) -> None:
    assert Settings(dask_worker_memory=limit, _env_file=None).dask_worker_memory == limit  # type: ignore[call-arg]


def test_a_worker_memory_limit_without_a_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="dask_worker_memory"):
        Settings(dask_worker_memory="3", _env_file=None)  # type: ignore[call-arg]
