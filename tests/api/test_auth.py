"""Bearer tokens, roles, workspace scoping, the token cache and revocation, keyed hashes (legacy
unkeyed ones re-hashed on first use), expiry and last use, the PHI audit helper, against the real
PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr
from sqlalchemy import Engine, event, select

from fwa_api.app import create_app
from fwa_api.auth import (
    Principal,
    TtlCache,
    announce_revocation,
    create_token,
    hash_token,
    legacy_hash,
    list_tokens,
    load_principal,
    parse_duration,
    revoke_token,
    token_key,
)
from fwa_api.deps import CurrentPrincipal, WorkspaceId, audit_phi, require_role
from fwa_api.services import services
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ApiToken, PhiAuditEvent
from tests.api.conftest import (
    SHARED_REDIS,
    TOKEN_SETTINGS,
    bearer,
    make_token,
    make_workspace,
    serve,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]


def assert_unauthorized(response: httpx.Response, error: str | None = None) -> None:
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == (f'Bearer error="{error}"' if error else "Bearer")
    assert set(response.json()) == {"detail", "request_id"}


# --------------------------------------------------------------------------- 401


async def test_no_token_is_401_with_a_bearer_challenge(api: httpx.AsyncClient) -> None:
    assert_unauthorized(await api.get("/api/workspaces"))


async def test_another_scheme_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/workspaces", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert_unauthorized(response)


@pytest.mark.parametrize("token", ["fwa_" + "x" * 43, "not-even-ours", "fwa_"])
async def test_an_unknown_token_is_401(api: httpx.AsyncClient, token: str) -> None:
    assert_unauthorized(await api.get("/api/workspaces", headers=bearer(token)), "invalid_token")


async def test_a_revoked_token_is_401(api: httpx.AsyncClient, pg_engine: Engine) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    revoke_token(pg_engine, str(_token_row(pg_engine, token).id))
    assert_unauthorized(await api.get("/api/workspaces", headers=bearer(token)), "invalid_token")


async def test_every_api_route_but_health_needs_a_token(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    app = create_app(api_settings, redis_prefix=redis_prefix)
    async with serve(app) as http:
        checked = 0
        for route in iter_route_contexts(app.routes):
            path = route.path_format
            if not path or not path.startswith("/api/") or path == "/api/health":
                continue
            concrete = path.replace("{", "").replace("}", "")  # any value will do
            for method in sorted(route.methods or ()):
                assert_unauthorized(await http.request(method, concrete))
                checked += 1
        assert checked >= 2  # /api/workspaces and /api/workspaces/{workspace} at least


# --------------------------------------------------------------------------- 403 and 404


def _with_test_routes(settings: Settings, prefix: str) -> Any:
    router = APIRouter(prefix="/api/test-roles")

    @router.post("/investigate")
    async def investigate(
        principal: Annotated[Principal, Depends(require_role("investigator"))],
    ) -> dict[str, str]:
        return {"role": principal.role}

    @router.post("/audited")
    def audited(
        request: Request, principal: CurrentPrincipal, workspace_id: WorkspaceId
    ) -> dict[str, int]:
        with session_scope(services(request).engine) as session:
            event = audit_phi(
                session,
                principal,
                action="read",
                resource_type="member",
                resource_id="M-001",
                workspace_id=workspace_id,
            )
            session.flush()
            return {"event": event.id}

    app = create_app(settings, redis_prefix=prefix)
    app.include_router(router)
    return app


async def test_a_role_too_low_is_403_and_higher_roles_pass(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    make_workspace(pg_engine, "north")
    tokens = {role: make_token(pg_engine, role, "north") for role in ("viewer", "investigator")}
    tokens["admin"] = make_token(pg_engine, "admin", "north")
    async with serve(_with_test_routes(api_settings, redis_prefix)) as http:
        denied = await http.post("/api/test-roles/investigate", headers=bearer(tokens["viewer"]))
        assert denied.status_code == 403
        assert denied.json()["detail"] == "requires the investigator role"
        for role in ("investigator", "admin"):
            allowed = await http.post("/api/test-roles/investigate", headers=bearer(tokens[role]))
            assert allowed.status_code == 200
            assert allowed.json() == {"role": role}


def test_require_role_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        require_role("superuser")


async def test_another_workspace_is_404_exactly_like_a_missing_one(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    make_workspace(pg_engine, "south")
    token = make_token(pg_engine, "admin", "north", "ghost")  # ghost: named, never created
    mine = await api.get("/api/workspaces/north", headers=bearer(token))
    assert mine.status_code == 200
    assert mine.json()["name"] == "north"
    bodies = []
    for other in ("south", "nowhere", "ghost"):
        response = await api.get(f"/api/workspaces/{other}", headers=bearer(token))
        assert response.status_code == 404
        bodies.append({k: v for k, v in response.json().items() if k != "request_id"})
    assert bodies == [{"detail": "workspace not found"}] * 3


async def test_workspace_list_shows_only_the_callers_workspaces(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    ran_at = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    make_workspace(pg_engine, "north", last_pipeline_run_at=ran_at, last_pipeline_run_id="r1")
    make_workspace(pg_engine, "east")
    make_workspace(pg_engine, "south")
    token = make_token(pg_engine, "viewer", "north", "east", "ghost")
    response = await api.get("/api/workspaces", headers=bearer(token))
    assert response.status_code == 200
    listed = response.json()["workspaces"]
    assert [w["name"] for w in listed] == ["east", "north"]
    north = listed[1]
    assert dt.datetime.fromisoformat(north["last_pipeline_run_at"]) == ran_at
    assert north["last_pipeline_run_id"] == "r1"
    assert listed[0]["last_pipeline_run_at"] is None


# --------------------------------------------------------------------------- cache, revocation


def _token_row(engine: Engine, token: str) -> ApiToken:
    with session_scope(engine) as session:
        digest = hash_token(token, token_key(TOKEN_SETTINGS))
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
        assert row is not None
        return row


async def test_a_verified_token_costs_no_further_database_round_trip(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    token_queries = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "api_tokens" in statement:
            token_queries.append(statement)

    event.listen(pg_engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert (await api.get("/api/workspaces", headers=bearer(token))).status_code == 200
    finally:
        event.remove(pg_engine, "before_cursor_execute", count)
    # The first request reads the token and records its first use; the next four, nothing.
    assert [q.split()[0] for q in token_queries] == ["SELECT", "UPDATE"]


async def test_revocation_reaches_a_running_server_through_redis(
    api: httpx.AsyncClient, pg_engine: Engine, redis_prefix: str
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    assert (await api.get("/api/workspaces", headers=bearer(token))).status_code == 200
    row = revoke_token(pg_engine, _token_row(pg_engine, token).prefix)
    # Revoked in the database only: the server still holds the verified token.
    assert (await api.get("/api/workspaces", headers=bearer(token))).status_code == 200
    assert announce_revocation(SHARED_REDIS, redis_prefix, row.token_hash) == 1
    for _ in range(200):  # pub/sub delivery is asynchronous; bounded wait, not a timing check
        response = await api.get("/api/workspaces", headers=bearer(token))
        if response.status_code != 200:
            break
        await asyncio.sleep(0.01)
    assert_unauthorized(response, "invalid_token")


async def test_without_redis_a_revoked_token_expires_with_the_cache(
    api_settings: Settings, pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    now = [0.0]
    app = create_app(api_settings.model_copy(update={"redis_url": None}))
    services_ = app.state.services
    services_.tokens = TtlCache(30.0, clock=lambda: now[0])
    async with serve(app) as http:
        assert (await http.get("/api/workspaces", headers=bearer(token))).status_code == 200
        revoke_token(pg_engine, _token_row(pg_engine, token).prefix)
        now[0] = 29.9
        assert (await http.get("/api/workspaces", headers=bearer(token))).status_code == 200
        now[0] = 30.0
        response = await http.get("/api/workspaces", headers=bearer(token))
        assert_unauthorized(response, "invalid_token")


def test_ttl_cache_expires_evicts_and_stays_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10.0, max_entries=3, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] = 5.0
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") == 1
    cache.put("d", 4)  # full of live entries: the oldest goes
    assert cache.get("a") is None
    assert [cache.get(k) for k in "bcd"] == [2, 3, 4]
    now[0] = 15.0  # b, c, d were put at 5: expire at 15
    assert cache.get("b") is None
    cache.put("e", 5)
    cache.evict("e")
    assert cache.get("e") is None
    cache.put("f", 6)
    cache.clear()
    assert cache.get("f") is None


# --------------------------------------------------------------------------- the token store


def test_tokens_are_stored_as_hashes_with_a_display_prefix(pg_engine: Engine) -> None:
    token, row = create_token(
        pg_engine, TOKEN_SETTINGS, name="alice", role="viewer", workspaces=["b", "a", "a"]
    )
    assert token.startswith("fwa_") and len(token) > 40
    assert row.prefix == token[:12]
    assert row.token_hash == hash_token(token, token_key(TOKEN_SETTINGS)) != token
    assert row.hash_scheme == "hmac-sha256"
    assert row.workspaces == ["a", "b"]
    stored = list_tokens(pg_engine)
    assert [(t.name, t.role) for t in stored] == [("alice", "viewer")]
    assert all(token not in str(vars(t)) for t in stored)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "role": "root", "workspaces": ["a"]}, "unknown role"),
        ({"name": "x", "role": "viewer", "workspaces": []}, "at least one workspace"),
        ({"name": "", "role": "viewer", "workspaces": ["a"]}, "1 to 100 characters"),
        ({"name": "x" * 101, "role": "viewer", "workspaces": ["a"]}, "1 to 100 characters"),
        ({"name": "x", "role": "viewer", "workspaces": ["w" * 65]}, "1 to 64 characters"),
    ],
)
def test_create_token_refuses_bad_input(
    pg_engine: Engine, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_token(pg_engine, TOKEN_SETTINGS, **kwargs)


def test_active_token_names_are_unique(pg_engine: Engine) -> None:
    _, first = create_token(pg_engine, TOKEN_SETTINGS, name="bot", role="viewer", workspaces=["a"])
    with pytest.raises(ValueError, match="active token named 'bot'"):
        create_token(pg_engine, TOKEN_SETTINGS, name="bot", role="viewer", workspaces=["a"])
    revoke_token(pg_engine, str(first.id))
    create_token(
        pg_engine, TOKEN_SETTINGS, name="bot", role="viewer", workspaces=["a"]
    )  # name free again


def test_revoke_needs_exactly_one_match(pg_engine: Engine) -> None:
    create_token(pg_engine, TOKEN_SETTINGS, name="one", role="viewer", workspaces=["a"])
    create_token(pg_engine, TOKEN_SETTINGS, name="two", role="viewer", workspaces=["a"])
    with pytest.raises(LookupError, match="2 tokens match"):
        revoke_token(pg_engine, "fwa_")
    with pytest.raises(LookupError, match="no token match"):
        revoke_token(pg_engine, "999")
    with pytest.raises(LookupError, match="no token match"):
        revoke_token(pg_engine, "fwa_%")  # LIKE wildcards are literal


# --------------------------------------------------------------------------- PHI audit


async def test_audit_phi_records_who_what_which_and_the_request_id(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    north = make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "investigator", "north", name="carol")
    async with serve(_with_test_routes(api_settings, redis_prefix)) as http:
        response = await http.post(
            "/api/test-roles/audited",
            params={"workspace": "north"},
            headers={**bearer(token), "X-Request-ID": "audit-req-1"},
        )
    assert response.status_code == 200
    with session_scope(pg_engine) as session:
        stored = session.get_one(PhiAuditEvent, response.json()["event"])
        assert (stored.actor, stored.action, stored.outcome) == ("carol", "read", "allowed")
        assert (stored.resource_type, stored.resource_id) == ("member", "M-001")
        assert stored.workspace_id == north
        assert stored.request_id == "audit-req-1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"action": "peek"}, "unknown audit action"), ({"outcome": "maybe"}, "unknown audit outcome")],
)
def test_audit_phi_refuses_free_text(
    pg_engine: Engine, kwargs: dict[str, str], message: str
) -> None:
    principal = Principal(1, "carol", "investigator", frozenset({"north"}), dt.datetime.max)
    arguments = {"action": "read", "outcome": "allowed", **kwargs}
    with session_scope(pg_engine) as session, pytest.raises(ValueError, match=message):
        audit_phi(
            session,
            principal,
            resource_type="member",
            resource_id=None,
            workspace_id=None,
            **arguments,
        )


# --------------------------------------------------------------------------- keyed hashes, expiry


def _set_row(engine: Engine, token: str, **values: Any) -> None:
    with session_scope(engine) as session:
        row = session.get_one(ApiToken, _token_row(engine, token).id)
        for name, value in values.items():
            setattr(row, name, value)


async def test_an_expired_token_is_401_saying_so(api: httpx.AsyncClient, pg_engine: Engine) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    _set_row(pg_engine, token, expires_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    response = await api.get("/api/workspaces", headers=bearer(token))
    assert_unauthorized(response, "invalid_token")
    assert response.json()["detail"] == (
        "token expired at 2026-01-02T03:04:05+00:00; ask for a new one"
    )


def test_a_cached_token_expires_on_time() -> None:
    expires = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    principal = Principal(1, "carol", "viewer", frozenset({"north"}), expires)
    assert not principal.expired(expires - dt.timedelta(microseconds=1))
    assert principal.expired(expires)


async def test_token_hashes_are_keyed_with_the_secret_key(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    assert _token_row(pg_engine, token).token_hash != legacy_hash(token)
    # Another FWA_SECRET_KEY: every token made under the old one stops working.
    rotated = api_settings.model_copy(update={"secret_key": SecretStr("another-" * 6)})
    async with serve(create_app(rotated, redis_prefix=redis_prefix)) as http:
        response = await http.get("/api/workspaces", headers=bearer(token))
    assert_unauthorized(response, "invalid_token")


async def test_a_legacy_unkeyed_token_still_works_and_is_rehashed_on_first_use(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    keyed = _token_row(pg_engine, token).token_hash
    _set_row(pg_engine, token, token_hash=legacy_hash(token), hash_scheme="sha256")
    assert (await api.get("/api/workspaces", headers=bearer(token))).status_code == 200
    row = _token_row(pg_engine, token)  # found by its keyed hash again
    assert (row.token_hash, row.hash_scheme) == (keyed, "hmac-sha256")


async def test_an_unkeyed_hash_is_not_accepted_for_a_keyed_row(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    # A row that says it is keyed is only ever matched by the keyed hash.
    _set_row(pg_engine, token, token_hash=legacy_hash(token))
    assert_unauthorized(await api.get("/api/workspaces", headers=bearer(token)), "invalid_token")


def test_last_use_is_recorded_at_most_once_a_minute(pg_engine: Engine) -> None:
    token, row = create_token(
        pg_engine, TOKEN_SETTINGS, name="eve", role="viewer", workspaces=["a"]
    )
    key = token_key(TOKEN_SETTINGS)
    assert row.last_used_at is None
    assert load_principal(pg_engine, token, key) is not None
    first = _token_row(pg_engine, token).last_used_at
    assert first is not None
    assert load_principal(pg_engine, token, key) is not None
    assert _token_row(pg_engine, token).last_used_at == first  # within the minute: no write
    _set_row(pg_engine, token, last_used_at=first - dt.timedelta(minutes=2))
    assert load_principal(pg_engine, token, key) is not None
    assert _token_row(pg_engine, token).last_used_at > first - dt.timedelta(minutes=2)


def test_an_expired_tokens_use_is_not_recorded(pg_engine: Engine) -> None:
    token = make_token(pg_engine, "viewer", "a")
    _set_row(pg_engine, token, expires_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    principal = load_principal(pg_engine, token, token_key(TOKEN_SETTINGS))
    assert principal is not None and principal.expired(dt.datetime.now(dt.UTC))
    assert _token_row(pg_engine, token).last_used_at is None


def test_tokens_get_the_default_lifetime_or_a_shorter_one(pg_engine: Engine) -> None:
    viewer = functools.partial(
        create_token, pg_engine, TOKEN_SETTINGS, role="viewer", workspaces=["a"]
    )
    _, default = viewer(name="a")
    assert default.expires_at - default.created_at == dt.timedelta(days=90)
    _, short = viewer(name="b", expires_in=dt.timedelta(days=30))
    assert short.expires_at - short.created_at == dt.timedelta(days=30)
    year = dt.timedelta(days=365)
    with pytest.raises(ValueError, match="over the default 90 days needs --long-lived"):
        viewer(name="c", expires_in=year)
    _, long = viewer(name="c", expires_in=year, long_lived=True)
    assert long.expires_at - long.created_at == year


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", dt.timedelta(days=30)),
        ("12h", dt.timedelta(hours=12)),
        ("2W", dt.timedelta(weeks=2)),
        ("90m", dt.timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "0d", "-1d", "1.5d", "30 days", "1y"])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
