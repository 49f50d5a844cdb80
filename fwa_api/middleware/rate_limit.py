"""Per-caller sliding-window rate limit in Redis.

A caller is its API token when the request carries a real one (so a team behind one NAT address
is not one client), else its client address. The middleware runs before authentication and must
stay fast, so it asks only the in-process cache of verified tokens: a made-up or revoked bearer
token is never there and counts against its address, so inventing tokens buys no fresh window. A
token's first request (and one per cache lifetime) counts against the address too.

One Lua script per request does the whole check-and-record atomically, so concurrent requests
from one client, on any number of workers, let through exactly ``limit`` per window: it drops the
entries older than the window, counts the rest, records this request only when under the limit,
and otherwise answers how long until the oldest entry leaves the window (``Retry-After``). Time is
Redis's own clock, so workers on different hosts agree.

When Redis fails the limiter fails open (an outage of the limiter must not become an outage of the
API), counts ``rate_limit_backend_errors_total``, logs at most one warning a minute, reports
``failing_open`` to the health check, and from then on lets one request every ``cooldown_s``
probe Redis while the others pass unchecked, so that a hanging Redis does not add its timeout to
every request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address, ip_network

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from fwa_api.errors import error_body
from fwa_api.middleware.metrics import ApiMetrics
from fwa_api.middleware.route_templates import PROBE_PATHS, route_path
from fwa_pipeline.kit.logging import LogThrottle

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000

# KEYS[1]: the client's window (a sorted set of request ids scored by time in ms).
# ARGV: window ms, limit, a unique id for this request. Returns 0 when allowed, else the ms
# until the oldest entry leaves the window.
SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return window - (now - tonumber(oldest[2]))
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        limit: int,
        key_prefix: str,
        metrics: ApiMetrics,
        window_ms: int = WINDOW_MS,
        cooldown_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.key_prefix = f"{key_prefix}rl:"
        self.cooldown_s = cooldown_s
        self.failing_open = False
        self._redis = redis
        self._script = redis.register_script(SLIDING_WINDOW_LUA)
        self._errors = metrics.rate_limit_backend_errors
        self._clock = clock
        self._skip_until = float("-inf")
        self._warn = LogThrottle(60.0, clock)
        # Unique sorted-set members without a uuid per request: a per-process id and a counter.
        self._member_prefix = uuid.uuid4().hex[:12]
        self._counter = itertools.count()

    async def check(self, client: str) -> Decision | None:
        """Record one request from ``client``; None when Redis could not be asked (fail open)."""
        if self.failing_open:
            now = self._clock()
            if now < self._skip_until:
                return None
            # One request probes Redis; the others keep failing open until it has answered.
            self._skip_until = now + self.cooldown_s
        member = f"{self._member_prefix}:{next(self._counter)}"
        try:
            retry_ms = await self._script(
                keys=[self.key_prefix + client], args=[self.window_ms, self.limit, member]
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self.failing_open = False
        if retry_ms == 0:
            return Decision(allowed=True)
        return Decision(allowed=False, retry_after_s=max(1, math.ceil(int(retry_ms) / 1000)))

    async def probe(self) -> None:
        """Ping Redis now (the health check) and take the answer as a limited request would:
        failing open when Redis does not answer (the error is re-raised), enforcing when it does.
        Without this, an idle API would report the state of its last limited request."""
        try:
            await self._redis.ping()
        except (RedisError, OSError, asyncio.CancelledError) as exc:  # cancelled: a timeout
            self._failed(exc)
            raise
        self.failing_open = False

    def _failed(self, exc: BaseException) -> None:
        self.failing_open = True
        self._skip_until = self._clock() + self.cooldown_s
        self._errors.inc()
        self._warn.warning(
            logger, "rate limiter failing open: Redis did not answer (%s)", type(exc).__name__
        )


class ClientAddress:
    """The client's IP: the direct peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` hop that is not itself a trusted proxy (the left part is the client's
    own claim and can be forged)."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        networks = tuple(ip_network(entry, strict=False) for entry in trusted_proxies)
        self._networks = networks

        @lru_cache(maxsize=1024)
        def trusted(address: str) -> bool:
            try:
                ip = ip_address(address)
            except ValueError:
                return False
            return any(ip in network for network in networks)

        self._trusted = trusted

    def over_https(self, scope: Scope) -> bool:
        """Whether the request reached us over TLS, or reached a trusted proxy over TLS as its
        ``X-Forwarded-Proto`` says (a header from anyone else is the client's own claim)."""
        if scope.get("scheme") == "https":
            return True
        peer = scope.get("client")
        if not peer or not self._trusted(peer[0]):
            return False
        protos = [value for name, value in scope["headers"] if name == b"x-forwarded-proto"]
        return bool(protos) and protos[-1].strip().lower() == b"https"

    def __call__(self, scope: Scope) -> str:
        peer = scope.get("client")
        address: str = peer[0] if peer else "unknown"
        if not self._networks or not self._trusted(address):
            return address
        hops = [
            hop.strip()
            for name, value in scope["headers"]
            if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")
        ]
        for hop in reversed(hops):
            try:
                address = ip_address(hop).compressed
            except ValueError:
                break
            if not self._trusted(address):
                break
        return address


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Callable[[], RateLimiter | None],
        client_address: ClientAddress,
        verified_token: Callable[[Scope], int | None],
        exempt: frozenset[str] = PROBE_PATHS,
    ) -> None:
        self.app = app
        # A callable: the limiter needs the Redis client, which exists only once the app started.
        self.limiter = limiter
        self.client_address = client_address
        # The id of the request's token if it is one this process verified; never a lookup.
        self.verified_token = verified_token
        self.exempt = exempt

    def caller(self, scope: Scope) -> str:
        token_id = self.verified_token(scope)
        # "token:" cannot begin an address, so the two kinds of window never share a key.
        return self.client_address(scope) if token_id is None else f"token:{token_id}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter()
        if scope["type"] != "http" or limiter is None or route_path(scope) in self.exempt:
            await self.app(scope, receive, send)
            return
        decision = await limiter.check(self.caller(scope))
        if decision is None or decision.allowed:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            error_body("rate limit exceeded"),
            status_code=429,
            headers={"Retry-After": str(decision.retry_after_s)},
        )
        await response(scope, receive, send)
