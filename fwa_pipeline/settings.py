"""The one settings object shared by the pipeline and the API (env prefix ``FWA_``).

In ``production`` the process refuses to start, with one message listing every problem, when a
secret is a development default or guessable, the database is SQLite or carries the development
password, the encryption keys are missing or malformed, Redis is missing while rate limiting is
on, or CORS allows any origin, ``null``, a plain ``http://`` origin or is left at its development
default.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    log_level: str = "INFO"
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_model: str = "llama3.1:8b"
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

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

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
