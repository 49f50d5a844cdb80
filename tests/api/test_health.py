"""``/api/health``: component states, the overall verdict, the 10 s cache, and no hang when the
database is unreachable or hangs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_api.routes import health as health_module
from fwa_api.routes.health import HealthChecker
from fwa_pipeline.settings import Settings
from tests.api.conftest import FakeOllama, free_port, serve

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

MODEL = "llama3.1:8b"
# No test should come near this; it turns a hang into a failure instead of a stuck run.
HANG_GUARD_S = 20


def with_ollama(settings: Settings, ollama: FakeOllama, **update: Any) -> Settings:
    return settings.model_copy(update={"ollama_url": ollama.url, "ollama_model": MODEL, **update})


async def get_health(settings: Settings, redis_prefix: str) -> tuple[int, dict[str, Any]]:
    with anyio.fail_after(HANG_GUARD_S):
        async with serve(create_app(settings, redis_prefix=redis_prefix)) as http:
            response = await http.get("/api/health")
    return response.status_code, response.json()


async def test_all_up_and_the_model_loaded_is_healthy(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str, fake_ollama: FakeOllama
) -> None:
    fake_ollama.installed = fake_ollama.loaded = [MODEL]
    status, body = await get_health(with_ollama(api_settings, fake_ollama), redis_prefix)
    assert status == 200
    assert body["status"] == "healthy"
    components = body["components"]
    assert components["database"]["status"] == "connected"
    assert components["redis"]["status"] == "connected"
    assert components["redis"]["rate_limiter"] == "enforcing"
    assert components["ollama"] == {
        "status": "ready",
        "installed": True,
        "model": MODEL,
        "latency_ms": components["ollama"]["latency_ms"],
        "checked_at": components["ollama"]["checked_at"],
    }


@pytest.mark.parametrize(
    ("installed", "loaded", "ps_delay", "ollama_status", "overall"),
    [
        ([MODEL], [], 0.0, "loading", "healthy"),  # installed, not in memory yet
        ([MODEL], [MODEL], 5.0, "loading", "healthy"),  # /api/ps blocks while loading
        (["llama3.1"], ["llama3.1:latest"], 0.0, "unavailable", "degraded"),  # other tag
        (["other:7b"], [], 0.0, "unavailable", "degraded"),
    ],
)
async def test_ollama_states(
    api_settings: Settings,
    pg_engine: Engine,
    redis_prefix: str,
    fake_ollama: FakeOllama,
    installed: list[str],
    loaded: list[str],
    ps_delay: float,
    ollama_status: str,
    overall: str,
) -> None:
    fake_ollama.installed, fake_ollama.loaded, fake_ollama.ps_delay = installed, loaded, ps_delay
    status, body = await get_health(with_ollama(api_settings, fake_ollama), redis_prefix)
    assert (status, body["status"]) == (200, overall)
    assert body["components"]["ollama"]["status"] == ollama_status


async def test_a_model_named_without_a_tag_means_latest(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str, fake_ollama: FakeOllama
) -> None:
    fake_ollama.installed = fake_ollama.loaded = ["phi3:latest"]
    settings = with_ollama(api_settings, fake_ollama, ollama_model="phi3")
    _, body = await get_health(settings, redis_prefix)
    assert body["components"]["ollama"]["status"] == "ready"


async def test_ollama_unreachable_is_degraded(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    status, body = await get_health(api_settings, redis_prefix)  # nothing listens there
    assert (status, body["status"]) == (200, "degraded")
    assert body["components"]["ollama"]["status"] == "unavailable"


async def test_redis_not_configured_is_reported_and_not_degraded(
    api_settings: Settings, pg_engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.installed = fake_ollama.loaded = [MODEL]
    settings = with_ollama(api_settings, fake_ollama, redis_url=None)
    status, body = await get_health(settings, "unused:")
    assert (status, body["status"]) == (200, "healthy")
    assert body["components"]["redis"]["status"] == "not_configured"
    assert body["components"]["redis"]["rate_limiter"] == "off"


async def test_redis_unreachable_is_degraded(
    api_settings: Settings, pg_engine: Engine, fake_ollama: FakeOllama
) -> None:
    fake_ollama.installed = fake_ollama.loaded = [MODEL]
    dead = SecretStr(f"redis://127.0.0.1:{free_port()}/0")
    status, body = await get_health(with_ollama(api_settings, fake_ollama, redis_url=dead), "x:")
    assert (status, body["status"]) == (200, "degraded")
    assert body["components"]["redis"]["status"] == "disconnected"


async def test_database_on_a_closed_port_is_503_unhealthy(
    api_settings: Settings, redis_prefix: str
) -> None:
    url = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    status, body = await get_health(api_settings.model_copy(update={"database_url": url}), "x:")
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["components"]["database"]["status"] == "disconnected"
    assert body["components"]["redis"]["status"] == "connected"
    assert "nowhere" not in str(body)  # no connection details to an unauthenticated caller


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a hung database server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])
    # Closing the listener resets the pending connections, so the abandoned ping thread ends.


@pytest.mark.parametrize("check_timeout", [1.0, 10.0], ids=["check-timeout", "connect-timeout"])
async def test_a_database_that_hangs_gives_503_instead_of_hanging(
    api_settings: Settings,
    silent_database: int,
    monkeypatch: pytest.MonkeyPatch,
    check_timeout: float,
) -> None:
    # Either bound ends it: the check's own timeout, or the connect timeout the app sets.
    monkeypatch.setattr(health_module, "DB_TIMEOUT_S", check_timeout)
    url = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{silent_database}/hung")
    status, body = await get_health(api_settings.model_copy(update={"database_url": url}), "x:")
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["components"]["database"]["status"] == "disconnected"


async def test_component_checks_are_cached_for_the_ttl(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str, fake_ollama: FakeOllama
) -> None:
    fake_ollama.installed = fake_ollama.loaded = [MODEL]
    now = [100.0]
    app = create_app(with_ollama(api_settings, fake_ollama), redis_prefix=redis_prefix)
    app.state.services.health = HealthChecker(ttl=10.0, clock=lambda: now[0])
    async with serve(app) as http:
        first = (await http.get("/api/health")).json()
        now[0] = 109.9
        assert (await http.get("/api/health")).json() == first
        assert fake_ollama.hits["/api/tags"] == 1
        now[0] = 110.0
        await http.get("/api/health")
        assert fake_ollama.hits["/api/tags"] == 2
