"""The Redis sliding-window limiter: exact under concurrency across workers, Retry-After from the
oldest entry, exemptions, client addresses behind trusted proxies, a window per verified token,
turning it off, and failing open when Redis dies mid-test (a redis-server of the test's own; the
shared one is never touched)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_api.middleware.metrics import ApiMetrics
from fwa_api.middleware.rate_limit import ClientAddress, RateLimiter
from fwa_pipeline.settings import Settings
from tests.api.conftest import (
    SHARED_REDIS,
    RedisServer,
    app_log,
    bearer,
    free_port,
    json_lines,
    make_token,
    serve,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

LIMITED = "/api/workspaces"  # 401 without a token: anything but 429 got past the limiter


def limited(settings: Settings, limit: int, **update: object) -> Settings:
    return settings.model_copy(update={"rate_limit_per_minute": limit, **update})


async def test_exactly_the_limit_passes_when_three_times_as_many_arrive_at_once(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    limit = 20
    settings = limited(api_settings, limit)
    # Two app instances sharing Redis stand for two workers.
    apps = [create_app(settings, redis_prefix=redis_prefix) for _ in range(2)]
    async with serve(apps[0]) as one, serve(apps[1]) as two:
        responses = await asyncio.gather(
            *(
                (one if i % 2 else two).get(LIMITED, headers={"X-Request-ID": f"burst-{i}"})
                for i in range(3 * limit)
            )
        )
    for app in apps:
        assert (
            app.state.services.metrics.registry.get_sample_value("rate_limit_backend_errors_total")
            == 0
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {401: limit, 429: 2 * limit}
    for response in responses:
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            assert response.json() == {
                "detail": "rate limit exceeded",
                "request_id": response.headers["X-Request-ID"],
            }


def _redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_retry_after_counts_from_the_oldest_entry_and_old_entries_expire(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    key = f"{redis_prefix}rl:127.0.0.1"
    shared = redis.Redis.from_url(SHARED_REDIS)
    with contextlib.closing(shared):
        now = _redis_now_ms(shared)
        # Two requests seen 30 s and 1 s ago, and one from 61 s ago that no longer counts.
        shared.zadd(key, {"a": now - 30_000, "b": now - 1_000, "stale": now - 61_000})
        async with serve(create_app(limited(api_settings, 3), redis_prefix=redis_prefix)) as http:
            assert (await http.get(LIMITED)).status_code == 401  # the stale one was dropped
            refused = await http.get(LIMITED)
        assert refused.status_code == 429
        # The oldest entry leaves the window 30 s from now (29 if a second passed meanwhile).
        assert int(refused.headers["Retry-After"]) in (29, 30)
        assert shared.zcard(key) == 3  # a refused request is not recorded
        assert 0 < shared.pttl(key) <= 60_000


async def test_health_and_metrics_are_exempt_and_clients_are_counted_apart(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    app = create_app(limited(api_settings, 1), redis_prefix=redis_prefix)
    async with serve(app, client=("192.0.2.1", 1000)) as first:
        for _ in range(3):
            assert (await first.get("/api/health")).status_code == 200
            assert (await first.get("/metrics")).status_code == 200
        assert (await first.get(LIMITED)).status_code == 401
        assert (await first.get(LIMITED)).status_code == 429
        transport = httpx.ASGITransport(app=app, client=("192.0.2.2", 1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as second:
            assert (await second.get(LIMITED)).status_code == 401


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    settings = limited(api_settings, 1, trusted_proxies=["127.0.0.0/8"])
    app = create_app(settings, redis_prefix=redis_prefix)
    async with serve(app, client=("127.0.0.1", 1000)) as via_proxy:
        for client in ("203.0.113.5", "203.0.113.6"):
            headers = {"X-Forwarded-For": client}
            assert (await via_proxy.get(LIMITED, headers=headers)).status_code == 401
        again = await via_proxy.get(LIMITED, headers={"X-Forwarded-For": "203.0.113.5"})
        assert again.status_code == 429
        transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as direct:
            # Not a trusted peer: its X-Forwarded-For is ignored, so both count as one client.
            first = await direct.get(LIMITED, headers={"X-Forwarded-For": "203.0.113.50"})
            second = await direct.get(LIMITED, headers={"X-Forwarded-For": "203.0.113.51"})
    assert (first.status_code, second.status_code) == (401, 429)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.2", [], "10.0.0.2"),  # no header: the proxy itself
        ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        # The client may send its own X-Forwarded-For: only the hop the proxy added counts.
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("10.0.0.2", ["6.6.6.6", "203.0.113.9, 10.0.0.3"], "203.0.113.9"),  # two proxies
        ("10.0.0.2", ["not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["2001:db8:0:0::1"], "2001:db8::1"),
        ("192.0.2.7", ["203.0.113.9"], "192.0.2.7"),  # untrusted peer
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope = {"client": (peer, 1234), "headers": headers}
    assert ClientAddress(["10.0.0.0/24"])(scope) == expected


def test_client_address_without_trusted_proxies_ignores_the_header() -> None:
    scope = {"client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for", b"203.0.113.9")]}
    assert ClientAddress([])(scope) == "10.0.0.2"


def _backend_errors(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "rate_limit_backend_errors":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("rate_limit_backend_errors_total missing")


async def test_redis_dying_mid_test_fails_open_and_health_says_degraded(
    api_settings: Settings,
    pg_engine: Engine,
    own_redis: RedisServer,
) -> None:
    settings = limited(api_settings, 3, redis_url=SecretStr(own_redis.url))
    async with serve(create_app(settings)) as http:
        with app_log() as log:
            assert [(await http.get(LIMITED)).status_code for _ in range(4)] == [401, 401, 401, 429]
            own_redis.kill()
            # Still served, unlimited, while the limiter cannot ask Redis.
            assert [(await http.get(LIMITED)).status_code for _ in range(10)] == [401] * 10
            health = await http.get("/api/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "degraded"
            assert body["components"]["redis"]["status"] == "disconnected"
            assert body["components"]["redis"]["rate_limiter"] == "failing_open"
            assert body["components"]["database"]["status"] == "connected"
            assert _backend_errors((await http.get("/metrics")).text) >= 1

            own_redis.start()  # same port: the limiter picks it up after its cool-down
            for _ in range(100):  # bounded wait for the cool-down; not a timing assertion
                statuses = [(await http.get(LIMITED)).status_code for _ in range(4)]
                if 429 in statuses:
                    break
                await asyncio.sleep(0.1)
            assert 429 in statuses
            assert (await http.get("/api/health")).json()["components"]["redis"][
                "rate_limiter"
            ] == "enforcing"
    warnings = [
        line
        for line in json_lines(log.getvalue())
        if line["message"].startswith("rate limiter failing open")
    ]
    assert len(warnings) == 1  # one a minute, however many requests failed open
    assert warnings[0]["level"] == "WARNING"


async def test_while_redis_is_down_one_request_per_cool_down_probes_it() -> None:
    now = [0.0]
    metrics = ApiMetrics()
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", retry=Retry(NoBackoff(), 0))
    limiter = RateLimiter(
        dead, limit=5, key_prefix="unused:", metrics=metrics, cooldown_s=1.0, clock=lambda: now[0]
    )
    try:
        assert await limiter.check("192.0.2.1") is None  # fails open
        assert limiter.failing_open
        for _ in range(5):  # within the cool-down: Redis is not asked again
            assert await limiter.check("192.0.2.1") is None
        assert metrics.registry.get_sample_value("rate_limit_backend_errors_total") == 1
        now[0] = 1.0
        assert await limiter.check("192.0.2.1") is None  # the probe, failing again
        assert metrics.registry.get_sample_value("rate_limit_backend_errors_total") == 2
    finally:
        await dead.aclose()


async def test_authenticated_requests_count_per_token_and_made_up_tokens_per_address(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    """One address (a team behind a NAT): each real token has a window of its own once this
    process has verified it; an unknown or made-up token counts against the address."""
    alice, bob = (make_token(pg_engine, "viewer", "north") for _ in range(2))
    app = create_app(limited(api_settings, 3), redis_prefix=redis_prefix)
    async with serve(app, client=("192.0.2.10", 1000)) as http:
        # alice's first request is verified (and counted against the address); the next three
        # fill her own window.
        alice_statuses = [
            (await http.get(LIMITED, headers=bearer(alice))).status_code for _ in range(5)
        ]
        assert alice_statuses == [200, 200, 200, 200, 429]
        # bob, from the same address, is not held back by alice.
        assert [(await http.get(LIMITED, headers=bearer(bob))).status_code for _ in range(2)] == [
            200,
            200,
        ]
        # The address has spent two of its three (alice's and bob's first requests): invented
        # tokens share what is left instead of getting a fresh window each.
        invented = [
            (await http.get(LIMITED, headers=bearer(f"fwa_{secrets.token_urlsafe(32)}")))
            for _ in range(3)
        ]
        assert [r.status_code for r in invented] == [401, 429, 429]
        assert (await http.get(LIMITED)).status_code == 429
        # A verified token keeps its own window all the same.
        assert (await http.get(LIMITED, headers=bearer(bob))).status_code == 200


async def test_rate_limiting_turned_off_limits_nothing_even_with_redis(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    settings = limited(api_settings, 1, rate_limit_enabled=False)
    async with serve(create_app(settings, redis_prefix=redis_prefix)) as http:
        assert [(await http.get(LIMITED)).status_code for _ in range(3)] == [401] * 3
        health = (await http.get("/api/health")).json()
    assert health["components"]["redis"]["rate_limiter"] == "off"
