"""The browser's sign-in: a bearer token exchanged for a session cookie (its attributes), the
cookie authenticating as the token everywhere, CSRF on writes, idle and absolute expiry, sign-out,
revocation, and workspace scoping, on the real PostgreSQL and Redis (and the database store when
Redis is not configured)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis
from fastapi import APIRouter
from sqlalchemy import Engine, select

from fwa_api.app import create_app
from fwa_api.auth import announce_revocation, hash_token, revoke_token, token_key
from fwa_api.deps import CurrentPrincipal
from fwa_api.signin.store import SESSION_COOKIE, id_hash
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ApiToken, WebSession
from tests.api.conftest import (
    SHARED_REDIS,
    TOKEN_SETTINGS,
    bearer,
    make_token,
    make_workspace,
    serve,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

WRITE = "/api/test-signin/write"


def with_write_route(settings: Settings, prefix: str | None = None) -> Any:
    """The app with a plain POST route: what any write behind a token looks like."""
    router = APIRouter()

    @router.post(WRITE)
    async def write(principal: CurrentPrincipal) -> dict[str, str]:
        return {"name": principal.name}

    app = create_app(settings, **({} if prefix is None else {"redis_prefix": prefix}))
    app.include_router(router)
    return app


@pytest.fixture
def app(api_settings: Settings, pg_engine: Engine, redis_prefix: str) -> Any:
    return with_write_route(api_settings, redis_prefix)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as client:
        yield client


@pytest.fixture
def token(pg_engine: Engine) -> str:
    make_workspace(pg_engine, "north")
    make_workspace(pg_engine, "south")
    return make_token(pg_engine, "investigator", "north", name="ines")


async def sign_in(http: httpx.AsyncClient, token: str) -> tuple[str, str]:
    """The session id (the cookie, kept in the client's jar) and the CSRF token."""
    response = await http.post("/api/session", headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.cookies[SESSION_COOKIE], response.json()["csrf_token"]


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    header = response.headers["set-cookie"]
    name_value, *attributes = (part.strip() for part in header.split(";"))
    assert name_value.startswith(f"{SESSION_COOKIE}=")
    return {
        key.lower(): value
        for key, _, value in (attribute.partition("=") for attribute in attributes)
    }


def redis_record(prefix: str, session_id: str) -> tuple[redis.Redis, str]:
    return redis.Redis.from_url(SHARED_REDIS), f"{prefix}session:{id_hash(session_id)}"


def edit_redis_record(prefix: str, session_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    client, key = redis_record(prefix, session_id)
    with contextlib.closing(client):
        record = json.loads(client.get(key))
        edit(record)
        client.set(key, json.dumps(record), keepttl=True)


def hours_ago(hours: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).isoformat()


# --------------------------------------------------------------------------- signing in


async def test_sign_in_sets_a_strict_http_only_cookie_and_stores_no_token(
    http: httpx.AsyncClient, token: str, redis_prefix: str
) -> None:
    response = await http.post("/api/session", headers=bearer(token))
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "ines" and body["role"] == "investigator"
    assert body["workspaces"] == ["north"] and body["idle_minutes"] == 30
    assert len(body["csrf_token"]) >= 40
    attributes = cookie_attributes(response)
    assert {"httponly", "path", "samesite"} <= set(attributes)
    assert attributes["path"] == "/" and attributes["samesite"].lower() == "strict"
    assert "secure" not in attributes  # plain HTTP here
    assert int(attributes["max-age"]) == 12 * 3600
    session_id = response.cookies[SESSION_COOKIE]
    assert len(session_id) >= 40

    # The server keeps a hash of the id and the identity, never the token nor the id itself.
    client, key = redis_record(redis_prefix, session_id)
    with contextlib.closing(client):
        stored = client.get(key).decode()
        ttl_s = client.ttl(key)
        keys = [k.decode() for k in client.scan_iter(match=f"{redis_prefix}session:*")]
    assert token not in stored and session_id not in stored and token[4:] not in stored
    assert json.loads(stored)["name"] == "ines"
    assert keys == [key] and 0 < ttl_s <= 30 * 60


async def test_the_cookie_is_secure_when_https_reached_a_trusted_proxy(
    api_settings: Settings, token: str, redis_prefix: str
) -> None:
    settings = api_settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    forwarded = {**bearer(token), "X-Forwarded-Proto": "https"}
    async with serve(create_app(settings, redis_prefix=redis_prefix)) as http:
        response = await http.post("/api/session", headers=forwarded)
        assert "secure" in cookie_attributes(response)
        plain = await http.post("/api/session", headers=bearer(token))
        assert "secure" not in cookie_attributes(plain)
    # From a peer that is not a trusted proxy the header is the client's own claim.
    async with serve(create_app(api_settings, redis_prefix=redis_prefix)) as http:
        response = await http.post("/api/session", headers=forwarded)
        assert "secure" not in cookie_attributes(response)


async def test_signing_in_needs_a_bearer_token(http: httpx.AsyncClient, token: str) -> None:
    assert (await http.post("/api/session")).status_code == 401
    _, csrf = await sign_in(http, token)
    # A session cannot mint another session.
    again = await http.post("/api/session", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 401
    assert again.json()["detail"] == "sign in with a bearer token"


# --------------------------------------------------------------------------- using the cookie


async def test_the_cookie_authenticates_reads_as_the_token(
    http: httpx.AsyncClient, token: str
) -> None:
    _, csrf = await sign_in(http, token)
    workspaces = await http.get("/api/workspaces")
    assert workspaces.status_code == 200
    assert [w["name"] for w in workspaces.json()["workspaces"]] == ["north"]
    # A reloaded page gets the identity and CSRF token back from the cookie alone.
    current = await http.get("/api/session")
    assert current.status_code == 200
    assert current.json()["csrf_token"] == csrf and current.json()["name"] == "ines"


async def test_get_session_without_a_cookie_is_401(http: httpx.AsyncClient, token: str) -> None:
    assert (await http.get("/api/session")).status_code == 401
    # A bearer caller is authenticated but has no session.
    response = await http.get("/api/session", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"].startswith("no session")


async def test_cookie_writes_need_the_csrf_token(http: httpx.AsyncClient, token: str) -> None:
    _, csrf = await sign_in(http, token)
    missing = await http.post(WRITE)
    assert missing.status_code == 403
    assert missing.json()["detail"] == (
        "missing or wrong X-CSRF-Token header: send the session's CSRF token"
    )
    wrong = await http.post(WRITE, headers={"X-CSRF-Token": csrf[:-1] + "x"})
    assert wrong.status_code == 403
    right = await http.post(WRITE, headers={"X-CSRF-Token": csrf})
    assert right.status_code == 200 and right.json() == {"name": "ines"}
    # Every unsafe method is checked, sign-out included.
    assert (await http.delete("/api/session")).status_code == 403
    assert (await http.get("/api/workspaces")).status_code == 200


async def test_bearer_writes_need_no_csrf_token(http: httpx.AsyncClient, token: str) -> None:
    response = await http.post(WRITE, headers=bearer(token))
    assert response.status_code == 200
    # Even with a session cookie in the jar, the bearer token decides.
    await sign_in(http, token)
    assert (await http.post(WRITE, headers=bearer(token))).status_code == 200


async def test_a_session_never_grants_another_workspace(
    http: httpx.AsyncClient, token: str, redis_prefix: str
) -> None:
    session_id, _ = await sign_in(http, token)
    assert (await http.get("/api/workspaces/north")).status_code == 200
    assert (await http.get("/api/workspaces/south")).status_code == 404
    # Whatever the stored record says, the token's own workspaces decide.
    edit_redis_record(redis_prefix, session_id, lambda r: r.update(workspaces=["north", "south"]))
    assert (await http.get("/api/workspaces/south")).status_code == 404


# --------------------------------------------------------------------------- ending


async def test_an_idle_session_ends(http: httpx.AsyncClient, token: str, redis_prefix: str) -> None:
    session_id, _ = await sign_in(http, token)
    edit_redis_record(redis_prefix, session_id, lambda r: r.update(last_seen_at=hours_ago(0.49)))
    # Used within the idle limit: it lives on, and the use pushes the deadline back.
    assert (await http.get("/api/workspaces")).status_code == 200
    client, key = redis_record(redis_prefix, session_id)
    with contextlib.closing(client):
        seen = dt.datetime.fromisoformat(json.loads(client.get(key))["last_seen_at"])
    assert dt.datetime.now(dt.UTC) - seen < dt.timedelta(minutes=5)

    edit_redis_record(redis_prefix, session_id, lambda r: r.update(last_seen_at=hours_ago(0.51)))
    response = await http.get("/api/workspaces")
    assert response.status_code == 401
    assert response.json()["detail"] == "session expired or signed out; sign in again"
    with contextlib.closing(client):
        assert client.get(key) is None


async def test_a_busy_session_ends_at_the_cap(
    http: httpx.AsyncClient, token: str, redis_prefix: str
) -> None:
    session_id, _ = await sign_in(http, token)
    edit_redis_record(redis_prefix, session_id, lambda r: r.update(created_at=hours_ago(12.01)))
    assert (await http.get("/api/workspaces")).status_code == 401


async def test_sign_out_ends_the_session_server_side(
    http: httpx.AsyncClient, token: str, redis_prefix: str
) -> None:
    session_id, csrf = await sign_in(http, token)
    response = await http.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    cleared = response.headers["set-cookie"]
    assert cleared.startswith(f'{SESSION_COOKIE}=""') and "Max-Age=0" in cleared
    client, key = redis_record(redis_prefix, session_id)
    with contextlib.closing(client):
        assert client.get(key) is None
    # The old cookie, replayed, no longer works.
    http.cookies.set(SESSION_COOKIE, session_id)
    assert (await http.get("/api/workspaces")).status_code == 401


async def test_a_revoked_token_ends_its_sessions(
    http: httpx.AsyncClient, token: str, pg_engine: Engine, redis_prefix: str
) -> None:
    session_id, _ = await sign_in(http, token)
    assert (await http.get("/api/workspaces")).status_code == 200
    row = revoke_token(pg_engine, token[:12])
    assert announce_revocation(SHARED_REDIS, redis_prefix, row.token_hash) == 1
    for _ in range(200):  # pub/sub delivery is asynchronous; bounded wait, not a timing check
        response = await http.get("/api/workspaces")
        if response.status_code != 200:
            break
        await asyncio.sleep(0.01)
    assert response.status_code == 401
    assert response.json()["detail"] == "the token behind this session was revoked; sign in again"
    client, key = redis_record(redis_prefix, session_id)
    with contextlib.closing(client):
        assert client.get(key) is None


async def test_an_expired_token_ends_its_sessions(
    app: Any, http: httpx.AsyncClient, token: str, pg_engine: Engine
) -> None:
    await sign_in(http, token)
    digest = hash_token(token, token_key(TOKEN_SETTINGS))
    with session_scope(pg_engine) as session:
        row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one()
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    app.state.services.tokens.clear()  # as when the cached verification lapses
    response = await http.get("/api/workspaces")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


# --------------------------------------------------------------------------- without Redis


async def test_without_redis_sessions_live_in_the_database(
    api_settings: Settings, token: str, pg_engine: Engine
) -> None:
    app = with_write_route(api_settings.model_copy(update={"redis_url": None}))
    async with serve(app) as http:
        session_id, csrf = await sign_in(http, token)
        with session_scope(pg_engine) as session:
            row = session.get_one(WebSession, id_hash(session_id))
            assert token not in json.dumps(row.data) and row.data["name"] == "ines"
        assert (await http.post(WRITE)).status_code == 403
        assert (await http.post(WRITE, headers={"X-CSRF-Token": csrf})).status_code == 200

        with session_scope(pg_engine) as session:
            row = session.get_one(WebSession, id_hash(session_id))
            row.data = {**row.data, "last_seen_at": hours_ago(1)}
        assert (await http.get("/api/workspaces")).status_code == 401
        with session_scope(pg_engine) as session:
            assert session.get(WebSession, id_hash(session_id)) is None

        session_id, csrf = await sign_in(http, token)
        assert (
            await http.delete("/api/session", headers={"X-CSRF-Token": csrf})
        ).status_code == 204
        with session_scope(pg_engine) as session:
            assert session.get(WebSession, id_hash(session_id)) is None
