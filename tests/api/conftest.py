"""Fixtures for the API tests: the app on the real PostgreSQL (``pg_settings``) and the shared
Redis under a key prefix of its own, served in-process through httpx's ASGI transport with the
lifespan running; a throwaway ``redis-server`` for outage tests."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from fwa_api import services as services_module
from fwa_api.app import create_app
from fwa_api.auth import create_token
from fwa_api.health import checker as health_module
from fwa_pipeline.kit.logging import JsonFormatter
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import Workspace

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _patient_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeouts that guard requests against a hung Redis or database are short; on a loaded
    test machine a healthy server can miss them. Tests that are about those timeouts set them
    back themselves."""
    monkeypatch.setattr(services_module, "REDIS_TIMEOUT_S", 10.0)
    monkeypatch.setattr(health_module, "DB_TIMEOUT_S", 10.0)
    monkeypatch.setattr(health_module, "REDIS_TIMEOUT_S", 10.0)


@pytest.fixture(autouse=True)
def _own_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dagster instance an app opens (health reads the daemon's heartbeats from it) is the
    test's own, never the repository's ``dagster_home``; tests that need one set it up."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "default_dagster_home"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"fwa-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(SHARED_REDIS)
    with contextlib.closing(client):
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def api_settings(pg_settings: Settings) -> Settings:
    """PostgreSQL, the shared Redis, a generous rate limit, and an Ollama URL nothing answers."""
    return pg_settings.model_copy(
        update={
            "redis_url": SecretStr(SHARED_REDIS),
            "rate_limit_per_minute": 1000,
            "assistant": pg_settings.assistant.model_copy(
                update={"ollama_url": f"http://127.0.0.1:{free_port()}"}
            ),
        }
    )


@contextlib.asynccontextmanager
async def serve(
    app: FastAPI, client: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def api(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(api_settings, redis_prefix=redis_prefix)) as http:
        yield http


def make_workspace(engine: Engine, name: str, **fields: Any) -> int:
    with session_scope(engine) as session:
        workspace = Workspace(name=name, **fields)
        session.add(workspace)
        session.flush()
        return workspace.id


# The secret key and token lifetime of every test's settings (the defaults).
TOKEN_SETTINGS = Settings(environment="test", _env_file=None)


def make_token(engine: Engine, role: str, *workspaces: str, name: str | None = None) -> str:
    token, _ = create_token(
        engine,
        TOKEN_SETTINGS,
        name=name or f"{role}-{secrets.token_hex(3)}",
        role=role,
        workspaces=workspaces,
    )
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def app_log() -> Iterator[io.StringIO]:
    """Redirect the JSON handler the app's lifespan installed to a buffer, for the block."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(handlers) == 1, "start the app first"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                lines.append(entry)
    return lines


# --------------------------------------------------------------------------- throwaway Redis


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        with contextlib.closing(client):
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                time.sleep(0.05)
        raise RuntimeError("throwaway redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free port (never the shared one)."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.kill()
