"""``POST /api/session``: exchange a bearer token once for a session cookie; ``GET`` it back
(the identity and CSRF token, for a page that was reloaded); ``DELETE`` it to sign out.

The cookie (``fwa_session``) is HttpOnly (no script reads it), SameSite=Strict (no other site's
page sends it), Path=/, and Secure when the request came over HTTPS (directly, or through a proxy
in ``FWA_TRUSTED_PROXIES`` that says so in ``X-Forwarded-Proto``). Writes made with it carry
``X-CSRF-Token`` (``fwa_api.deps``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from fwa_api.auth import Principal, bearer_token, hash_token, token_key
from fwa_api.deps import CurrentPrincipal, current_principal
from fwa_api.services import services
from fwa_api.signin.store import SESSION_COOKIE, SessionStore, SignedIn

router = APIRouter(prefix="/api/session", tags=["session"])


class SessionOut(BaseModel):
    name: str
    role: str
    workspaces: list[str]
    # Send it back in X-CSRF-Token on every POST, PUT, PATCH and DELETE made with the cookie.
    csrf_token: str
    # The session ends then however busy, or sooner once unused for idle_minutes.
    expires_at: dt.datetime
    idle_minutes: int


def _out(store: SessionStore, record: SignedIn) -> SessionOut:
    return SessionOut(
        name=record.name,
        role=record.role,
        workspaces=list(record.workspaces),
        csrf_token=record.csrf_token,
        expires_at=record.created_at + store.max_age,
        idle_minutes=int(store.idle.total_seconds() // 60),
    )


def _signed_in(request: Request) -> SignedIn:
    record: SignedIn | None = getattr(request.state, "web_session", None)
    if record is None:
        raise HTTPException(401, "no session: sign in with POST /api/session")
    return record


@router.post("", status_code=201)
async def sign_in(
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(current_principal)],
) -> SessionOut:
    token = bearer_token(request.scope)
    if token is None:
        raise HTTPException(401, "sign in with a bearer token", {"WWW-Authenticate": "Bearer"})
    app = services(request)
    store = app.web_sessions
    previous = request.cookies.get(SESSION_COOKIE)
    if previous is not None:  # a browser signing in again leaves no session behind
        await store.end(previous)
    token_hash = hash_token(token, token_key(app.settings))
    session_id, record = await store.create(principal, token_hash)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(store.max_age.total_seconds()),
        path="/",
        secure=app.client_address.over_https(request.scope),
        httponly=True,
        samesite="strict",
    )
    return _out(store, record)


@router.get("")
async def current_session(request: Request, principal: CurrentPrincipal) -> SessionOut:
    return _out(services(request).web_sessions, _signed_in(request))


@router.delete("", status_code=204)
async def sign_out(request: Request, response: Response, principal: CurrentPrincipal) -> None:
    _signed_in(request)
    await services(request).web_sessions.end(request.cookies[SESSION_COOKIE])
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
