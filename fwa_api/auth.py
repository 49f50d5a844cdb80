"""API tokens: ``fwa_<random>`` bearer tokens, stored as an HMAC-SHA256 under ``FWA_SECRET_KEY``
(a copy of the table is no use without the key) and a display prefix.

Every token expires (``FWA_TOKEN_LIFETIME_DAYS`` unless made with another lifetime). A token stored
before hashes were keyed (``hash_scheme`` ``sha256``) still verifies, and is re-hashed with the key
on its first use. Rotating ``FWA_SECRET_KEY`` therefore invalidates every token: re-issue them.

Verifying a token must not cost a database round trip per request, so verified tokens are kept
in process for ``TOKEN_TTL_S``; a cache miss also records the token's last use, at most once per
``LAST_USE_RESOLUTION``. Revocation reaches running servers two ways: ``fwa token revoke``
publishes the token's hash on Redis and every server evicts it at once; without Redis (or while
a server is disconnected from it) a revoked token stops working within ``TOKEN_TTL_S``. A server
that reconnects to Redis forgets every cached token, since it may have missed revocations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session
from starlette.types import Scope

from fwa_pipeline.kit.logging import LogThrottle
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ROLES, ApiToken, Workspace, utcnow

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "fwa_"
TOKEN_TTL_S = 30.0
DISPLAY_PREFIX_LEN = 12  # "fwa_" and 8 random characters: enough to tell tokens apart
MAX_NAME_LEN = 100  # the columns' sizes
MAX_WORKSPACE_LEN = 64
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
HASH_SCHEME = "hmac-sha256"
LEGACY_HASH_SCHEME = "sha256"  # unkeyed: tokens stored before hashes were keyed
LAST_USE_RESOLUTION = dt.timedelta(minutes=1)
DURATION = re.compile(r"(\d+)([mhdw])")
DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Namespaces every Redis key and channel of the API (rate-limit windows, revocations).
REDIS_PREFIX = "fwa:"

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: never the token itself."""

    token_id: int
    name: str
    role: str
    workspaces: frozenset[str]
    expires_at: dt.datetime

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at <= now


def token_key(settings: Settings) -> bytes:
    return settings.secret_key.get_secret_value().encode()


def hash_token(token: str, key: bytes) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def legacy_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``: a positive whole number and a unit."""
    match = DURATION.fullmatch(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"{text!r} is not a duration: a positive whole number and m, h, d or w (e.g. 30d)"
        )
    return dt.timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})


def token_lifetime(
    settings: Settings, expires_in: dt.timedelta | None = None, *, long_lived: bool = False
) -> dt.timedelta:
    """The lifetime a new token gets: the default, or ``expires_in``, which may exceed the default
    only when ``long_lived`` says so."""
    default = dt.timedelta(days=settings.token_lifetime_days)
    if expires_in is None:
        return default
    if expires_in <= dt.timedelta(0):
        raise ValueError("a token's lifetime must be positive")
    if expires_in > default and not long_lived:
        raise ValueError(
            f"a lifetime over the default {settings.token_lifetime_days} days needs --long-lived"
        )
    return expires_in


def revocation_channel(key_prefix: str) -> str:
    return f"{key_prefix}token-revocations"


# --------------------------------------------------------------------------- the store


def create_token(
    engine: Engine,
    settings: Settings,
    *,
    name: str,
    role: str,
    workspaces: Iterable[str],
    expires_in: dt.timedelta | None = None,
    long_lived: bool = False,
) -> tuple[str, ApiToken]:
    """A new token and its row; the token is returned once and never stored. It expires after
    :func:`token_lifetime`."""
    lifetime = token_lifetime(settings, expires_in, long_lived=long_lived)
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not 0 < len(name) <= MAX_NAME_LEN:
        raise ValueError(f"a token name has 1 to {MAX_NAME_LEN} characters")
    names = sorted(set(workspaces))
    if not names:
        raise ValueError("a token needs at least one workspace")
    if any(not 0 < len(n) <= MAX_WORKSPACE_LEN for n in names):
        raise ValueError(f"a workspace name has 1 to {MAX_WORKSPACE_LEN} characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with session_scope(engine) as session:
        # Names identify the actor in audit rows and case history: keep them unambiguous.
        clash = session.scalar(
            select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        )
        if clash is not None:
            raise ValueError(f"an active token named {name!r} exists (id {clash})")
        now = utcnow()
        row = ApiToken(
            name=name,
            token_hash=hash_token(token, token_key(settings)),
            hash_scheme=HASH_SCHEME,
            prefix=token[:DISPLAY_PREFIX_LEN],
            role=role,
            workspaces=names,
            created_at=now,
            expires_at=now + lifetime,
        )
        session.add(row)
    return token, row


def revoke_token(engine: Engine, prefix_or_id: str) -> ApiToken:
    """Revoke the token with this id or display prefix; LookupError when none or several match."""
    with session_scope(engine) as session:
        query = select(ApiToken)
        if prefix_or_id.isdigit():
            query = query.where(ApiToken.id == int(prefix_or_id))
        else:
            query = query.where(ApiToken.prefix.startswith(prefix_or_id, autoescape=True))
        rows = session.scalars(query).all()
        if len(rows) != 1:
            found = "no token" if not rows else f"{len(rows)} tokens"
            raise LookupError(f"{found} match {prefix_or_id!r}")
        row = rows[0]
        if row.revoked_at is None:
            row.revoked_at = dt.datetime.now(dt.UTC)
    return row


def list_tokens(engine: Engine) -> list[ApiToken]:
    with session_scope(engine) as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def load_principal(engine: Engine, token: str, key: bytes) -> Principal | None:
    """The unrevoked token's holder (expired or not: the caller says which), or None. Re-hashes a
    legacy token with the key, and records the use (:func:`_record_use`)."""
    keyed = hash_token(token, key)
    legacy = and_(
        ApiToken.token_hash == legacy_hash(token), ApiToken.hash_scheme == LEGACY_HASH_SCHEME
    )
    with session_scope(engine) as session:
        row = session.scalar(
            select(ApiToken).where(
                or_(ApiToken.token_hash == keyed, legacy), ApiToken.revoked_at.is_(None)
            )
        )
        if row is None:
            return None
        if row.token_hash != keyed or row.hash_scheme != HASH_SCHEME:
            row.token_hash, row.hash_scheme = keyed, HASH_SCHEME
        return _record_use(session, row)


def load_principal_by_hash(engine: Engine, token_hash: str) -> Principal | None:
    """As :func:`load_principal`, for a caller that holds the token's keyed hash, not the token
    (a browser session)."""
    with session_scope(engine) as session:
        row = session.scalar(
            select(ApiToken).where(
                ApiToken.token_hash == token_hash,
                ApiToken.hash_scheme == HASH_SCHEME,
                ApiToken.revoked_at.is_(None),
            )
        )
        return None if row is None else _record_use(session, row)


def _record_use(session: Session, row: ApiToken) -> Principal:
    """The row's holder; records the use when the last one is over ``LAST_USE_RESOLUTION`` old
    (so a busy token costs a write a minute, not one a request)."""
    now = utcnow()
    principal = Principal(
        row.id, row.name, row.role, frozenset(row.workspaces), in_utc(row.expires_at)
    )
    if not principal.expired(now):
        session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == row.id,
                or_(
                    ApiToken.last_used_at.is_(None),
                    ApiToken.last_used_at <= now - LAST_USE_RESOLUTION,
                ),
            )
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return principal


def in_utc(moment: dt.datetime) -> dt.datetime:
    """A stored timestamp in UTC: SQLite hands them back without their zone (written in UTC),
    PostgreSQL in the session's zone."""
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def bearer_token(scope: Scope) -> str | None:
    """The ``Authorization: Bearer fwa_...`` token of a request, if it carries one of ours."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token.startswith(TOKEN_PREFIX):
                return token
            return None
    return None


def verified_token_id(scope: Scope, cache: TtlCache[str, Principal], key: bytes) -> int | None:
    """The id of the request's token when this process verified it lately and it has not expired
    (a made-up or revoked token is never in the cache); never a database round trip."""
    token = bearer_token(scope)
    if token is None:
        return None
    principal = cache.get(hash_token(token, key))
    if principal is None or principal.expired(dt.datetime.now(dt.UTC)):
        return None
    return principal.token_id


def find_workspace_id(engine: Engine, name: str) -> int | None:
    with session_scope(engine) as session:
        return session.scalar(select(Workspace.id).where(Workspace.name == name))


def missing_workspaces(engine: Engine, names: Iterable[str]) -> list[str]:
    wanted = set(names)
    with session_scope(engine) as session:
        found = set(session.scalars(select(Workspace.name).where(Workspace.name.in_(wanted))))
    return sorted(wanted - found)


def announce_revocation(redis_url: str, key_prefix: str, token_hash: str) -> int:
    """Tell running servers to forget this token now; returns how many were listening."""
    client = SyncRedis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return int(client.publish(revocation_channel(key_prefix), token_hash))
    finally:
        client.close()


# --------------------------------------------------------------------------- in-process cache


class TtlCache(Generic[K, V]):
    """A small map whose entries expire ``ttl`` seconds after they were put. Used from the event
    loop only, so it needs no lock."""

    def __init__(
        self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self.max_entries:
            now = self._clock()
            for stale in [k for k, (_, expires) in self._entries.items() if expires <= now]:
                del self._entries[stale]
            if len(self._entries) >= self.max_entries:  # all live: drop the oldest
                del self._entries[next(iter(self._entries))]
        self._entries[key] = (value, self._clock() + self.ttl)

    def evict(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


async def watch_revocations(
    redis: Redis, channel: str, cache: TtlCache[str, Principal], *, retry_s: float = 2.0
) -> None:
    """Evict tokens as revocations are announced; runs until cancelled."""
    warn = LogThrottle(60.0)
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                # Revocations announced while we were not subscribed (before start-up finished,
                # or during an outage) are lost: forget every token verified until now.
                cache.clear()
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        cache.evict(message["data"].decode())
        except (RedisError, OSError) as exc:
            if warn.ready() is not None:
                logger.warning(
                    "token revocation feed unavailable (%s); revoked tokens expire within %ss",
                    type(exc).__name__,
                    TOKEN_TTL_S,
                )
            await asyncio.sleep(retry_s)
