"""``fwa token ...`` against the real PostgreSQL, and ``fwa serve`` as a real uvicorn process."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from fwa_api.auth import REDIS_PREFIX, load_principal, token_key
from fwa_api.cli import cli
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ApiToken
from tests.api.conftest import TOKEN_SETTINGS, bearer, free_port, make_workspace

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


# The commands and the served app use the default key prefix: give them a database of the
# shared Redis that the in-process tests (database 0, prefixes of their own) do not use.
CLI_REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def env(pg_database_url: str, pg_engine: Engine) -> Iterator[dict[str, str]]:
    yield {
        "FWA_ENVIRONMENT": "test",
        "FWA_DATABASE_URL": pg_database_url,
        "FWA_REDIS_URL": CLI_REDIS,
        "FWA_RATE_LIMIT_PER_MINUTE": "100000",
        "FWA_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
    }
    client = redis.Redis.from_url(CLI_REDIS)
    with contextlib.closing(client):
        client.delete(f"{REDIS_PREFIX}rl:127.0.0.1")  # the served app's window for this client


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_token_create_list_revoke(env: dict[str, str], pg_engine: Engine) -> None:
    make_workspace(pg_engine, "north")
    code, out, err = run(
        env, "token", "create", "--name", "erin", "--role", "investigator",
        "--workspace", "north", "--workspace", "later",
    )  # fmt: skip
    assert code == 0, err
    token = out.strip()
    assert token.startswith("fwa_") and "\n" not in token  # stdout: the token alone
    assert "shown only this once" in err
    assert "workspace 'later' does not exist yet" in err

    code, out, _ = run(env, "token", "list")
    assert code == 0
    assert token[:12] in out and "erin" in out and "active" in out
    assert token not in out
    assert "expires (UTC)" in out and "last used (UTC)" in out
    (line,) = [line for line in out.splitlines() if "erin" in line]
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).strftime("%Y-%m-%d")
    assert expires in line  # the default lifetime
    assert "never" in line

    assert load_principal(pg_engine, token, token_key(TOKEN_SETTINGS)) is not None  # a use
    (line,) = [line for line in run(env, "token", "list")[1].splitlines() if "erin" in line]
    assert "never" not in line
    assert line.count(dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")) == 2  # created, last used

    code, out, err = run(env, "token", "revoke", token[:12])
    assert code == 0, err
    assert "revoked token" in out
    assert "dropped it now" in err  # announced on Redis
    code, out, _ = run(env, "token", "list")
    assert "revoked" in out


CREATE_VIEWER = ["token", "create", "--name", "x", "--role", "viewer", "--workspace", "a"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "revoke", "fwa_nothing"], "no token match"),
        (["token", "create", "--name", "x", "--role", "root", "--workspace", "a"], "root"),
        (["token", "create", "--name", "x", "--role", "viewer"], "--workspace"),
        (
            [*CREATE_VIEWER, "--expires-in", "soon"],
            "'soon' is not a duration",
        ),
        (
            [*CREATE_VIEWER, "--expires-in", "180d"],
            "a lifetime over the default 90 days needs --long-lived",
        ),
    ],
)
def test_token_commands_refuse_bad_input(
    env: dict[str, str], args: list[str], message: str
) -> None:
    code, _, err = run(env, *args)
    assert code != 0
    assert message in err


def test_token_create_with_a_lifetime(env: dict[str, str], pg_engine: Engine) -> None:
    base = ["token", "create", "--role", "viewer", "--workspace", "a"]
    code, _, err = run(env, *base, "--name", "short", "--expires-in", "12h")
    assert code == 0, err
    assert "UTC. It is shown only this once." in err
    code, _, err = run(env, *base, "--name", "long", "--expires-in", "52w", "--long-lived")
    assert code == 0, err
    with session_scope(pg_engine) as session:
        lifetimes = {
            row.name: row.expires_at - row.created_at for row in session.scalars(select(ApiToken))
        }
    assert lifetimes == {"short": dt.timedelta(hours=12), "long": dt.timedelta(weeks=52)}


def test_token_list_shows_expired_tokens(env: dict[str, str], pg_engine: Engine) -> None:
    code, _, err = run(
        env, "token", "create", "--name", "old", "--role", "viewer", "--workspace", "a"
    )
    assert code == 0, err
    with session_scope(pg_engine) as session:
        session.execute(update(ApiToken).values(expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    (line,) = [line for line in run(env, "token", "list")[1].splitlines() if "old" in line]
    assert "expired" in line and "2026-01-01 00:00" in line


def test_token_list_when_empty(env: dict[str, str]) -> None:
    assert run(env, "token", "list")[:2] == (0, "no tokens\n")


def test_pipeline_commands_are_still_there(env: dict[str, str]) -> None:
    code, out, _ = run(env, "--help")
    assert code == 0
    for command in ("serve", "token", "db", "keys", "synth", "load"):
        assert command in out


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        """SIGTERM, wait, and return what the server wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        return self.log.read_text()


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """``fwa serve`` in a process of its own, answering on a free port."""
    port = free_port()
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "fwa_api.cli", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        for _ in range(300):  # bounded wait for start-up
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{server.url}/api/health", timeout=5)
                break
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def test_serve_answers_over_http_with_json_logs(
    served: Server, env: dict[str, str], pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    code, token, err = run(
        env, "token", "create", "--name", "svc", "--role", "viewer", "--workspace", "north"
    )
    assert code == 0, err
    health = httpx.get(f"{served.url}/api/health", timeout=10)
    assert health.status_code == 200  # database up: healthy or degraded, never 503
    assert "server" not in health.headers
    listed = httpx.get(f"{served.url}/api/workspaces", headers=bearer(token.strip()), timeout=10)
    assert listed.status_code == 200
    assert [w["name"] for w in listed.json()["workspaces"]] == ["north"]

    lines = [line for line in served.stop().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's too
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    access = [e for e in entries if e["logger"] == "fwa_api.access"]
    assert any(
        e["request_id"] == listed.headers["X-Request-ID"] and e.get("actor") == "svc"
        for e in access
    )


def test_serve_starts_and_says_so_when_the_database_never_answers(
    silent_database: int, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "FWA_ENVIRONMENT": "test",
        "FWA_DATABASE_URL": f"postgresql://fwa@127.0.0.1:{silent_database}/fwa",
        "FWA_DB_CONNECT_TIMEOUT_S": "2",
        "FWA_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
    }
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "fwa_api.cli", "serve", "--port", str(port)],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("FWA_")}, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        health = None
        for _ in range(600):  # bounded wait for start-up (without a timeout it hung ~95 s)
            with contextlib.suppress(httpx.TransportError):
                health = httpx.get(f"{server.url}/api/health", timeout=10)
                break
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert health is not None, "fwa serve did not start"
        assert health.status_code == 503
        assert health.json()["components"]["database"]["status"] == "disconnected"
    finally:
        entries = [json.loads(line) for line in server.stop().splitlines() if line.strip()]
    warnings = [e for e in entries if e["message"].startswith("cannot reach the database")]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"
    assert "connection timeout expired" in warnings[0]["message"]
