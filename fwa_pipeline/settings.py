"""The one settings object shared by the pipeline and the API (env prefix ``FWA_``).

In ``production`` the process refuses to start, with one message listing every problem, when a
secret is a development default or guessable, the database is SQLite or carries the development
password, the encryption keys are missing or malformed, Redis is missing while rate limiting is
on, or CORS allows any origin, ``null``, a plain ``http://`` origin or is left at its development
default. The assistant's settings (``settings.assistant``) are read from their own flat variables
(``FWA_LLM_*``, ``FWA_AGENT_*``, ``FWA_OLLAMA_*``), and a bad one is refused at start-up too, not
at the first chat.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEV_SECRET_KEY = "dev-secret-key-change-me"
DEV_DB_PASSWORD = "fwa_dev_password"
MIN_SECRET_BYTES = 32
# A secret of one repeated character (or a few) is as guessable as a short one.
MIN_SECRET_DISTINCT_CHARS = 10
KEY_BYTES = 32  # AES-256
# Shared with store.db.engine_for, so an engine made from a URL alone matches the settings' one.
DB_CONNECT_TIMEOUT_S = 5
DB_STATEMENT_TIMEOUT_S = 300


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class ConfigurationError(RuntimeError):
    """Raised at start-up when the settings are unsafe for the environment."""


def default_data_dir() -> Path:
    return Path.cwd() / "data"


def is_https_origin(origin: str) -> bool:
    """``https://host[:port]`` and nothing else: what a browser sends as ``Origin``."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and bool(parts.hostname)
        and "@" not in parts.netloc
        and origin == f"{parts.scheme}://{parts.netloc}"
    )


def parse_encryption_keys(raw: str) -> dict[str, bytes]:
    """Parse ``kid:base64key[,kid:base64key...]``; the first entry is the active key.

    Raises ValueError naming the entry that is malformed (never the key material).
    """
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(part.strip() for part in raw.split(",") if part.strip()):
        kid, sep, encoded = entry.partition(":")
        if not sep or not kid or not kid.isalnum() or len(kid) > 16:
            raise ValueError(
                f"encryption key #{position + 1}: expected 'KEYID:BASE64' with an "
                "alphanumeric key id of at most 16 characters"
            )
        try:
            material = base64.urlsafe_b64decode(encoded.encode())
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"encryption key {kid!r}: not valid base64") from exc
        if len(material) != KEY_BYTES:
            raise ValueError(
                f"encryption key {kid!r}: must decode to {KEY_BYTES} bytes, got {len(material)}"
            )
        if kid in keys:
            raise ValueError(f"encryption key {kid!r}: key id appears twice")
        keys[kid] = material
    return keys


class AssistantSettings(BaseModel):
    """Which LLM server the assistant talks to, how long it waits, and how much one turn may do.

    Each field is read from ``FWA_`` and its name (``FWA_LLM_URL``). With ``FWA_LLM_URL`` and
    ``FWA_LLM_MODEL`` unset, the Ollama backend uses ``FWA_OLLAMA_URL`` and ``FWA_OLLAMA_MODEL``.

        FWA_LLM_BACKEND=openai FWA_LLM_URL=http://127.0.0.1:8080/v1 FWA_LLM_MODEL=qwen2.5 fwa serve
    """

    model_config = ConfigDict(extra="forbid")

    # ollama: Ollama's native API; openai: any OpenAI-compatible server (llama.cpp, vLLM).
    llm_backend: Literal["ollama", "openai"] = "ollama"
    # Base URL: Ollama's root (http://host:11434) or the OpenAI-style root ending in /v1.
    llm_url: str = ""
    llm_model: str = ""
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_model: str = "llama3.1:8b"
    llm_api_key: SecretStr = SecretStr("")
    # OpenAI-compatible servers cannot be asked whether a model calls tools: say so here
    # (vLLM with a tool parser: true; llama.cpp's Python server ignores ``tools``: false).
    llm_native_tools: bool = False
    # How an OpenAI-compatible server takes a JSON schema: ``json_schema`` (OpenAI, vLLM,
    # llama.cpp's server) or ``json_object`` with ``schema`` (llama-cpp-python).
    llm_json_mode: Literal["json_schema", "json_object"] = "json_schema"
    # Chat templates without a system role (Gemma's; llama-cpp-python's ``gemma`` format drops
    # the system message silently): send the system prompt at the start of the first user
    # message instead.
    llm_system_as_user: bool = False

    llm_connect_timeout_s: float = Field(3.0, gt=0)
    # Longest silence between two streamed chunks (a cold model load is the slow case).
    llm_read_timeout_s: float = Field(60.0, gt=0)
    # Longest one LLM call may take, first byte to last.
    llm_call_timeout_s: float = Field(120.0, gt=0)
    # /api/tags, /api/show, /v1/models; /api/ps may block while a model loads.
    llm_probe_timeout_s: float = Field(2.0, gt=0)
    # How long a model's capabilities (and an unreachable server) are remembered.
    llm_capabilities_ttl_s: float = Field(300.0, ge=0)
    llm_unreachable_ttl_s: float = Field(5.0, ge=0)
    llm_temperature: float = Field(0.2, ge=0)
    # Most tokens one call may generate: a model that never stops is cut off here, not at
    # the call's timeout.
    llm_max_tokens: int = Field(1024, ge=16, le=32768)

    agent_max_iterations: int = Field(5, ge=1, le=10)
    agent_history_messages: int = Field(20, ge=0, le=200)
    # Longest one turn may take, all its calls and tools together: then it answers with what
    # it has gathered and says it was cut short.
    agent_turn_timeout_s: float = Field(90.0, gt=0)
    # Estimated tokens a prompt may hold (history, tool results and all); with the answer's
    # ``llm_max_tokens`` it must fit the model's context window.
    agent_prompt_tokens: int = Field(6000, ge=1000)
    # How long a pipeline run the assistant proposed waits for the user's confirmation.
    agent_confirm_ttl_s: float = Field(600.0, gt=0)

    @field_validator("llm_url", "ollama_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value == "":  # FWA_LLM_URL unset: the Ollama URL (which must not be empty: below)
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _a_server_to_ask(self) -> Self:
        if self.llm_backend == "openai" and not (self.llm_url and self.llm_model):
            raise ValueError("FWA_LLM_BACKEND=openai needs FWA_LLM_URL and FWA_LLM_MODEL")
        if not (self.base_url and self.model):
            raise ValueError("FWA_OLLAMA_URL and FWA_OLLAMA_MODEL must not be empty")
        return self

    @property
    def base_url(self) -> str:
        """``FWA_LLM_URL``, else (Ollama) ``FWA_OLLAMA_URL``, without a trailing slash."""
        return (self.llm_url or self.ollama_url).rstrip("/")

    @property
    def model(self) -> str:
        return self.llm_model or self.ollama_model


class AssistantVariables(PydanticBaseSettingsSource):
    """``Settings.assistant`` from its flat variables (``FWA_LLM_URL``, not a nested
    ``FWA_ASSISTANT`` one): the environment's first, then the ``.env`` file's."""

    def __init__(self, settings_cls: type[BaseSettings], *sources: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self.sources = sources

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the variables itself

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for source in reversed(self.sources):  # the first source's value wins
            for name in AssistantSettings.model_fields:
                # The sources' keys are lower case: variable names are case-insensitive.
                value = source.env_vars.get(f"fwa_{name}")
                if value is not None:
                    values[name] = value
        return {"assistant": values} if values else {}


def variable(loc: tuple[int | str, ...]) -> str | None:
    """The environment variable a validation error's location names; None for an error of the
    assistant's settings as a whole (its message names the variables)."""
    names = [str(part) for part in loc]
    if names[:1] == ["assistant"]:
        names = names[1:]
    return f"FWA_{names[0].upper()}" if names else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FWA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Environment = Environment.development
    data_dir: Path = Field(default_factory=default_data_dir)
    # Empty means "SQLite file under data_dir" (the embedded default).
    database_url: SecretStr = SecretStr("")
    # PostgreSQL: how long to wait for a connection (a server that accepts and never answers must
    # not hang start-up) and for any one statement, lock waits included (0: no limit).
    db_connect_timeout_s: int = Field(DB_CONNECT_TIMEOUT_S, ge=1)
    db_statement_timeout_s: int = Field(DB_STATEMENT_TIMEOUT_S, ge=0)
    redis_url: SecretStr | None = None
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    # ``kid:base64(32 bytes)`` entries, comma-separated; the first is the active key.
    encryption_key: SecretStr = SecretStr("")
    allowed_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000"]
    trusted_proxies: Annotated[list[str], NoDecode] = []
    rate_limit_per_minute: int = Field(60, ge=1)
    # Off only when asked: production without Redis is refused unless this is false.
    rate_limit_enabled: bool = True
    # API tokens expire this long after they are made unless `fwa token create --expires-in` says
    # otherwise (longer only with --long-lived).
    token_lifetime_days: int = Field(90, ge=1)
    # The browser's sign-in (POST /api/session): a session unused this long ends, and none
    # outlives the cap however busy.
    session_idle_minutes: int = Field(30, ge=1)
    session_max_hours: int = Field(12, ge=1)
    log_level: str = "INFO"
    assistant: AssistantSettings = Field(default_factory=AssistantSettings)
    max_upload_mb: int = Field(50, ge=1)
    max_upload_rows: int = Field(2_000_000, ge=1)
    max_upload_columns: int = Field(64, ge=1)
    # Longest a request may wait on a pipeline job (POST /api/pipeline/run-full and run-stream).
    pipeline_wait_max_s: int = Field(600, ge=1)
    # Health calls the Dagster daemon stale (queued jobs would never start) when a daemon the
    # instance needs has written no heartbeat for this long; each writes one every 30 s.
    daemon_heartbeat_tolerance_s: int = Field(300, ge=60)
    # How long an enqueue's Idempotency-Key returns its first job (then a new job may reuse it).
    pipeline_idempotency_hours: int = Field(24, ge=1)
    # Where a run computes: in its own process, or on Dask (the scheduler at
    # dask_scheduler_address, which implies dask unless FWA_COMPUTE says local; without one, a
    # LocalCluster of dask_workers processes, 0: one per core, that the run starts and stops).
    compute: Literal["local", "dask"] = "local"
    dask_scheduler_address: str = ""
    dask_workers: int = Field(0, ge=0)
    # Each worker's memory limit on a run's own cluster ("3GB"; "auto": the machine's memory
    # shared between them); a worker above it is restarted and its task retried once.
    dask_worker_memory: str = Field("auto", pattern=r"^(auto|\d+(\.\d+)?\s*[KMGT]i?B)$")
    # How many parts the claims are split into (0: one in process, twice the workers on Dask).
    shards: int = Field(0, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)  # a subclass
        assistant = AssistantVariables(settings_cls, env_settings, dotenv_settings)
        return init_settings, env_settings, assistant, dotenv_settings, file_secret_settings

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("dask_scheduler_address")
    @classmethod
    def _scheduler_address(cls, value: str) -> str:
        if value == "":
            return value
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            port = None
        if (
            port is None
            or parts.scheme not in ("tcp", "tls")
            or not parts.hostname
            or "@" in parts.netloc
            or value != f"{parts.scheme}://{parts.netloc}"
        ):
            raise ValueError("expected tcp://host:port or tls://host:port")
        return value

    @model_validator(mode="after")
    def _scheduler_means_dask(self) -> Self:
        if self.dask_scheduler_address and "compute" not in self.model_fields_set:
            self.compute = "dask"
        return self

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        return value.upper()

    @field_validator("environment", mode="before")
    @classmethod
    def _lower_environment(cls, value: object) -> object:
        # FWA_ENVIRONMENT=Production must not quietly skip the production checks.
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        problems = self.problems()
        if problems:
            raise ConfigurationError(
                f"refusing to start with this {self.environment.value} configuration:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
        return self

    def problems(self) -> list[str]:
        """Every reason this configuration is unsafe for its environment (empty when fine)."""
        problems: list[str] = []
        try:
            keys = parse_encryption_keys(self.encryption_key.get_secret_value())
        except ValueError as exc:
            # Malformed keys are a problem in every environment: data would be unreadable.
            return [f"FWA_ENCRYPTION_KEY is malformed: {exc}"]
        if self.environment is not Environment.production:
            return problems
        secret = self.secret_key.get_secret_value()
        if secret == DEV_SECRET_KEY:
            problems.append("FWA_SECRET_KEY is the development default")
        elif len(secret.strip().encode()) < MIN_SECRET_BYTES:
            problems.append(
                f"FWA_SECRET_KEY is shorter than {MIN_SECRET_BYTES} bytes (surrounding spaces "
                "not counted)"
            )
        elif len(set(secret)) < MIN_SECRET_DISTINCT_CHARS:
            problems.append(
                f"FWA_SECRET_KEY has fewer than {MIN_SECRET_DISTINCT_CHARS} distinct characters"
            )
        url = self.database_url.get_secret_value()
        if not url or url.startswith("sqlite"):
            problems.append("FWA_DATABASE_URL is SQLite; production needs PostgreSQL")
        if DEV_DB_PASSWORD in unquote(url):  # percent-encoded or not
            problems.append("FWA_DATABASE_URL carries the development database password")
        if not keys:
            problems.append("FWA_ENCRYPTION_KEY is empty; member PHI must be encrypted")
        if self.rate_limit_enabled and not (self.redis_url and self.redis_url.get_secret_value()):
            problems.append(
                "FWA_REDIS_URL is not set, so nothing would be rate limited: set it, or turn "
                "rate limiting off explicitly with FWA_RATE_LIMIT_ENABLED=false"
            )
        problems.extend(self._origin_problems())
        return problems

    def _origin_problems(self) -> list[str]:
        if "allowed_origins" not in self.model_fields_set:
            return [
                "FWA_ALLOWED_ORIGINS is not set (the default is a development origin): name the "
                "UI's https:// origins, or set it empty for none"
            ]
        problems = []
        for origin in self.allowed_origins:
            if "*" in origin:
                problems.append(f"FWA_ALLOWED_ORIGINS contains '*' ({origin!r})")
            elif origin.lower() == "null":
                # Sandboxed frames and file:// pages send Origin: null: any site can.
                problems.append("FWA_ALLOWED_ORIGINS contains 'null'")
            elif not is_https_origin(origin):
                problems.append(
                    f"FWA_ALLOWED_ORIGINS entry {origin!r} is not an https:// origin "
                    "(scheme, host and port only)"
                )
        return problems

    @property
    def sqlalchemy_url(self) -> str:
        url = self.database_url.get_secret_value()
        if not url:
            return f"sqlite:///{self.data_dir / 'fwa.db'}"
        # Plain postgresql:// would pick psycopg2; the store speaks psycopg 3 (COPY support).
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def encryption_keys(self) -> dict[str, bytes]:
        return parse_encryption_keys(self.encryption_key.get_secret_value())

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def environment_variables() -> set[str]:
    """Every ``FWA_`` variable the settings read, the assistant's flat ones included."""
    names = [n for n in Settings.model_fields if n != "assistant"]
    return {f"FWA_{n.upper()}" for n in [*names, *AssistantSettings.model_fields]}
