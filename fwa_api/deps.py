"""Dependencies for routes: who is calling, what role they hold, which workspace they may see,
and the PHI audit trail.

    @router.get("/api/cases")
    async def list_cases(workspace_id: WorkspaceId, principal: CurrentPrincipal): ...

    @router.post("/api/pipeline/enqueue")
    async def enqueue(
        principal: Annotated[Principal, Depends(require_role("investigator"))],
    ): ...

(``workspace`` is then a query parameter, or a path parameter where the path has
``{workspace}``.) Handlers are best ``async`` with their store work in one
``run_in_threadpool`` call, as in ``routes/workspaces.py``.

A request without an ``Authorization`` header may carry the browser's session cookie instead
(``fwa_api.signin``); it then authenticates as the token it was made from.

401 (with ``WWW-Authenticate: Bearer``) for a missing, unknown, revoked or expired token; 403
when the role is too low; 404 for a workspace the caller may not see, worded exactly like one
that does not exist, so a token never learns which other workspaces there are.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import (
    ROLE_RANK,
    TOKEN_PREFIX,
    Principal,
    find_workspace_id,
    hash_token,
    load_principal,
    load_principal_by_hash,
    token_key,
)
from fwa_api.services import services
from fwa_api.signin.store import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from fwa_pipeline.kit.logging import request_id_var
from fwa_pipeline.store.models import PhiAuditEvent

bearer = HTTPBearer(auto_error=False, description="A token from `fwa token create`.")

AUDIT_ACTIONS = frozenset({"read", "write", "rotate"})
AUDIT_OUTCOMES = frozenset({"allowed", "denied", "error"})


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id is None:
            raise _unauthorized("missing bearer token")
        return await session_principal(request, session_id)
    token = credentials.credentials
    if not token.startswith(TOKEN_PREFIX):
        raise _unauthorized("invalid or revoked token", "invalid_token")
    app = services(request)
    key = token_key(app.settings)
    digest = hash_token(token, key)
    principal = app.tokens.get(digest)
    if principal is None:
        # Only a cache miss (first use, or after TOKEN_TTL_S) reaches the database.
        principal = await run_in_threadpool(load_principal, app.engine, token, key)
        if principal is None:
            raise _unauthorized("invalid or revoked token", "invalid_token")
        app.tokens.put(digest, principal)
    if principal.expired(dt.datetime.now(dt.UTC)):
        expired = principal.expires_at.isoformat(timespec="seconds")
        raise _unauthorized(f"token expired at {expired}; ask for a new one", "invalid_token")
    # Read by the access log: lines name the token, never carry it.
    request.state.actor = principal.name
    return principal


async def session_principal(request: Request, session_id: str) -> Principal:
    """The holder of the token behind a session cookie, checked as a bearer request checks its
    token (a revoked or expired token ends the session). A write must echo the session's CSRF
    token in ``X-CSRF-Token``: a cross-site form can make the browser send the cookie, never
    that header."""
    app = services(request)
    store = app.web_sessions
    record = await store.use(session_id)
    if record is None:
        raise _unauthorized("session expired or signed out; sign in again")
    principal = app.tokens.get(record.token_hash)
    if principal is None:
        principal = await run_in_threadpool(load_principal_by_hash, app.engine, record.token_hash)
        if principal is None:
            await store.end(session_id)
            raise _unauthorized("the token behind this session was revoked; sign in again")
        app.tokens.put(record.token_hash, principal)
    if principal.expired(dt.datetime.now(dt.UTC)):
        await store.end(session_id)
        raise _unauthorized("the token behind this session expired; sign in with a new one")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), record.csrf_token.encode()):
            raise HTTPException(
                403, f"missing or wrong {CSRF_HEADER} header: send the session's CSRF token"
            )
    request.state.actor = principal.name
    request.state.web_session = record
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(minimum: str) -> Callable[[Principal], Awaitable[Principal]]:
    if minimum not in ROLE_RANK:
        raise ValueError(f"unknown role {minimum!r}")

    async def check_role(principal: CurrentPrincipal) -> Principal:
        if not principal.has_role(minimum):
            raise HTTPException(403, f"requires the {minimum} role")
        return principal

    return check_role


async def workspace_scope(request: Request, principal: CurrentPrincipal, workspace: str) -> int:
    """The id of ``workspace`` (a path or query parameter) when the caller may see it."""
    not_found = HTTPException(404, "workspace not found")
    if workspace not in principal.workspaces:
        raise not_found
    app = services(request)
    ident = app.workspace_ids.get(workspace)
    if ident is None:
        ident = await run_in_threadpool(find_workspace_id, app.engine, workspace)
        if ident is None:
            raise not_found
        app.workspace_ids.put(workspace, ident)
    return ident


WorkspaceId = Annotated[int, Depends(workspace_scope)]


def audit_phi(
    session: Session,
    principal: Principal,
    *,
    action: str,
    resource_type: str,
    resource_id: str | None,
    workspace_id: int | None,
    outcome: str = "allowed",
) -> PhiAuditEvent:
    """Add a PHI audit row to ``session`` (committed with the caller's transaction; for a denial
    whose transaction rolls back, pass a session of its own). Who, what, which record, the
    request id and the outcome: never the PHI itself."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in AUDIT_OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    event = PhiAuditEvent(
        actor=principal.name,
        action=action,
        workspace_id=workspace_id,
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=request_id_var.get(),
        outcome=outcome,
    )
    session.add(event)
    return event
