"""Bearer tokens, roles, workspace scoping, the token cache and revocation, the PHI audit helper,
against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine, event, select

from fwa_api.app import create_app
from fwa_api.auth import (
    Principal,
    TtlCache,
    announce_revocation,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
)
from fwa_api.deps import CurrentPrincipal, WorkspaceId, audit_phi, require_role
from fwa_api.services import services
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ApiToken, PhiAuditEvent
from tests.api.conftest import SHARED_REDIS, bearer, make_token, make_workspace, serve

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
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
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
    assert len(token_queries) == 1


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
    token, row = create_token(pg_engine, name="alice", role="viewer", workspaces=["b", "a", "a"])
    assert token.startswith("fwa_") and len(token) > 40
    assert row.prefix == token[:12]
    assert row.token_hash == hash_token(token) != token
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
        create_token(pg_engine, **kwargs)


def test_active_token_names_are_unique(pg_engine: Engine) -> None:
    _, first = create_token(pg_engine, name="bot", role="viewer", workspaces=["a"])
    with pytest.raises(ValueError, match="active token named 'bot'"):
        create_token(pg_engine, name="bot", role="viewer", workspaces=["a"])
    revoke_token(pg_engine, str(first.id))
    create_token(pg_engine, name="bot", role="viewer", workspaces=["a"])  # name free again


def test_revoke_needs_exactly_one_match(pg_engine: Engine) -> None:
    create_token(pg_engine, name="one", role="viewer", workspaces=["a"])
    create_token(pg_engine, name="two", role="viewer", workspaces=["a"])
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
    principal = Principal(1, "carol", "investigator", frozenset({"north"}))
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
