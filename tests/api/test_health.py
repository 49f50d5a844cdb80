"""``/api/health``: component states, the overall verdict and its reasons, the 10 s cache, and no
hang when the database is unreachable or hangs.

The LLM server is ``tests.agents.fake_llm``'s, speaking Ollama's and the OpenAI-compatible wire
format over real HTTP; the Dagster daemon's state is read from heartbeat records written to a
real instance configured as the repository's embedded default."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import dagster as dg
import pytest
from dagster._daemon.types import DaemonHeartbeat
from pydantic import SecretStr
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_api.health import checker as health_module
from fwa_api.health.checker import REASONS, HealthChecker
from fwa_pipeline.settings import AssistantSettings, Settings
from tests.agents.conftest import agent_settings
from tests.agents.fake_llm import MODEL, FakeLLM
from tests.api.conftest import RedisServer, free_port, serve

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]
# No test should come near this; it turns a hang into a failure instead of a stuck run.
HANG_GUARD_S = 20
TOOLS = ["completion", "tools"]


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance as the repository's embedded default configures it (queued runs,
    sensors, schedules: it needs a daemon), with no daemon heartbeat yet."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def heartbeat(instance: dg.DagsterInstance, age_s: float = 0.0, *kinds: str) -> None:
    """Write the heartbeat a daemon writes, ``age_s`` old, for ``kinds`` (default: all)."""
    for kind in kinds or instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - age_s, kind, "daemon-1"))


@pytest.fixture
def daemon(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """The instance with every daemon it needs just heard from."""
    heartbeat(instance)
    return instance


def with_ollama(
    settings: Settings, llm: FakeLLM, assistant: dict[str, Any] | None = None, **update: Any
) -> Settings:
    """``settings`` (with ``update``) whose assistant asks ``llm`` (with ``assistant``)."""
    ollama = {"ollama_url": llm.url, "ollama_model": MODEL, **(assistant or {})}
    return settings.model_copy(
        update={"assistant": settings.assistant.model_copy(update=ollama), **update}
    )


@pytest.fixture
def ollama_settings(api_settings: Settings, pg_engine: Engine, llm: FakeLLM) -> Settings:
    """The app's settings on the migrated test database, its assistant asking ``llm``."""
    return with_ollama(api_settings, llm)


async def get_health(
    settings: Settings,
    redis_prefix: str,
    instance: dg.DagsterInstance,
    assistant: AssistantSettings | None = None,
) -> tuple[int, dict[str, Any]]:
    if assistant is not None:
        settings = settings.model_copy(update={"assistant": assistant})
    app = create_app(settings, redis_prefix=redis_prefix)
    app.state.services.dagster = instance
    with anyio.fail_after(HANG_GUARD_S):
        async with serve(app) as http:
            response = await http.get("/api/health")
    return response.status_code, response.json()


async def test_all_up_and_the_model_loaded_is_healthy(
    ollama_settings: Settings, redis_prefix: str, daemon: dg.DagsterInstance
) -> None:
    status, body = await get_health(ollama_settings, redis_prefix, daemon)
    assert status == 200
    assert (body["status"], body["reasons"]) == ("healthy", [])
    components = body["components"]
    assert components["database"]["status"] == "connected"
    assert components["redis"]["status"] == "connected"
    assert components["redis"]["rate_limiter"] == "enforcing"
    assert components["llm"] == {
        "status": "ready",
        "installed": True,
        "backend": "ollama",
        "model": MODEL,
        "latency_ms": components["llm"]["latency_ms"],
        "checked_at": components["llm"]["checked_at"],
    }
    assert components["dagster_daemon"]["status"] == "running"
    assert "late" not in components["dagster_daemon"]


@pytest.mark.parametrize(
    ("installed", "loaded", "ps_delay", "llm_status", "overall"),
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
    llm: FakeLLM,
    daemon: dg.DagsterInstance,
    installed: list[str],
    loaded: list[str],
    ps_delay: float,
    llm_status: str,
    overall: str,
) -> None:
    llm.models, llm.loaded, llm.ps_delay_s = dict.fromkeys(installed, TOOLS), loaded, ps_delay
    agent = agent_settings(llm.url)  # a probe timeout of 1 s
    status, body = await get_health(api_settings, redis_prefix, daemon, agent)
    assert (status, body["status"]) == (200, overall)
    assert body["components"]["llm"]["status"] == llm_status
    if overall == "degraded":
        assert body["reasons"] == [REASONS["llm", "unavailable"]]


@pytest.mark.parametrize(
    ("served", "assistant", "model"),
    [
        pytest.param("phi3:latest", {"ollama_model": "phi3"}, "phi3", id="no-tag-means-latest"),
        # FWA_LLM_MODEL set, FWA_OLLAMA_MODEL left at another model.
        pytest.param(
            "qwen2.5:7b", {"llm_model": "qwen2.5:7b"}, "qwen2.5:7b", id="not-the-ollama-default"
        ),
    ],
)
async def test_the_assistants_model_is_the_one_probed(
    api_settings: Settings,
    pg_engine: Engine,
    redis_prefix: str,
    llm: FakeLLM,
    daemon: dg.DagsterInstance,
    served: str,
    assistant: dict[str, str],
    model: str,
) -> None:
    llm.models, llm.loaded = {served: TOOLS}, [served]
    settings = with_ollama(api_settings, llm, assistant)
    status, body = await get_health(settings, redis_prefix, daemon)
    assert (status, body["status"]) == (200, "healthy")
    assert body["components"]["llm"]["model"] == model
    assert body["components"]["llm"]["status"] == "ready"


@pytest.mark.parametrize(
    ("listed", "llm_status", "overall"),
    [([MODEL], "ready", "healthy"), (["some-other-model"], "unavailable", "degraded")],
)
async def test_the_openai_compatible_backend_is_asked_for_its_models(
    api_settings: Settings,
    pg_engine: Engine,
    redis_prefix: str,
    llm: FakeLLM,
    daemon: dg.DagsterInstance,
    listed: list[str],
    llm_status: str,
    overall: str,
) -> None:
    llm.models = dict.fromkeys(listed, TOOLS)
    # FWA_OLLAMA_URL points at the same server: health must not ask its Ollama API.
    agent = agent_settings(f"{llm.url}/v1", llm_backend="openai", ollama_url=llm.url)
    status, body = await get_health(api_settings, redis_prefix, daemon, agent)
    assert (status, body["status"]) == (200, overall)
    component = body["components"]["llm"]
    assert (component["backend"], component["model"]) == ("openai", MODEL)
    assert component["status"] == llm_status
    assert "/v1/models" in llm.probes
    assert not [path for path in llm.probes if path.startswith("/api/")]


async def test_llm_server_unreachable_is_degraded(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str, daemon: dg.DagsterInstance
) -> None:
    status, body = await get_health(api_settings, redis_prefix, daemon)  # nothing listens there
    assert (status, body["status"]) == (200, "degraded")
    assert body["components"]["llm"]["status"] == "unavailable"


@pytest.mark.parametrize(
    ("age_s", "tolerance_s", "daemon_status"),
    [(200, 300, "running"), (200, 120, "stale"), (3600, 300, "stale")],
)
async def test_a_late_daemon_heartbeat_is_stale_and_degraded(
    api_settings: Settings,
    pg_engine: Engine,
    redis_prefix: str,
    llm: FakeLLM,
    instance: dg.DagsterInstance,
    age_s: float,
    tolerance_s: int,
    daemon_status: str,
) -> None:
    heartbeat(instance)
    heartbeat(instance, age_s, "QUEUED_RUN_COORDINATOR")  # the run queue stopped beating
    settings = with_ollama(api_settings, llm, daemon_heartbeat_tolerance_s=tolerance_s)
    status, body = await get_health(settings, redis_prefix, instance)
    component = body["components"]["dagster_daemon"]
    assert component["status"] == daemon_status
    assert component["last_heartbeat"]  # the freshest one, from the other daemons
    if daemon_status == "stale":
        assert component["late"] == ["QUEUED_RUN_COORDINATOR"]
        assert (status, body["status"]) == (200, "degraded")
        assert body["reasons"] == [REASONS["dagster_daemon", "stale"]]
    else:
        assert (status, body["status"]) == (200, "healthy")


async def test_no_daemon_heartbeat_at_all_is_not_running(
    ollama_settings: Settings, redis_prefix: str, instance: dg.DagsterInstance
) -> None:
    status, body = await get_health(ollama_settings, redis_prefix, instance)
    assert (status, body["status"]) == (200, "degraded")
    assert body["components"]["dagster_daemon"]["status"] == "not_running"
    assert body["reasons"] == [REASONS["dagster_daemon", "not_running"]]


async def test_an_instance_that_needs_no_daemon_is_not_degraded_by_it(
    ollama_settings: Settings, redis_prefix: str
) -> None:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        status, body = await get_health(ollama_settings, redis_prefix, ephemeral)
    assert (status, body["status"]) == (200, "healthy")
    assert body["components"]["dagster_daemon"]["status"] == "not_required"


async def test_a_dagster_storage_that_hangs_is_unavailable_not_a_hang(
    ollama_settings: Settings,
    redis_prefix: str,
    silent_database: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_module, "DAEMON_TIMEOUT_S", 1.0)
    home = tmp_path / "hung_dagster_home"  # the app opens it itself, as in production
    home.mkdir()
    url = f"postgresql://postgres@127.0.0.1:{silent_database}/dagster"
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {url}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    now = [100.0]
    app = create_app(ollama_settings, redis_prefix=redis_prefix)
    app.state.services.health = HealthChecker(ttl=10.0, clock=lambda: now[0])
    with anyio.fail_after(HANG_GUARD_S):
        async with serve(app) as http:
            for _ in range(2):  # the second check waits on the first read, still hung
                body = (await http.get("/api/health")).json()
                assert body["components"]["dagster_daemon"]["status"] == "unavailable"
                assert body["components"]["database"]["status"] == "connected"
                assert (body["status"], body["reasons"]) == (
                    "degraded",
                    [REASONS["dagster_daemon", "unavailable"]],
                )
                now[0] += 10.0


async def test_redis_not_configured_is_reported_and_not_degraded(
    api_settings: Settings, pg_engine: Engine, llm: FakeLLM, daemon: dg.DagsterInstance
) -> None:
    settings = with_ollama(api_settings, llm, redis_url=None)
    status, body = await get_health(settings, "unused:", daemon)
    assert (status, body["status"]) == (200, "healthy")
    assert body["components"]["redis"]["status"] == "not_configured"
    assert body["components"]["redis"]["rate_limiter"] == "off"


async def test_redis_unreachable_is_degraded(
    api_settings: Settings, pg_engine: Engine, llm: FakeLLM, daemon: dg.DagsterInstance
) -> None:
    dead = SecretStr(f"redis://127.0.0.1:{free_port()}/0")
    settings = with_ollama(api_settings, llm, redis_url=dead)
    status, body = await get_health(settings, "x:", daemon)
    assert (status, body["status"]) == (200, "degraded")
    assert body["components"]["redis"]["status"] == "disconnected"
    assert body["components"]["redis"]["rate_limiter"] == "failing_open"
    assert body["reasons"] == [REASONS["redis", "disconnected"]]


async def test_the_limiter_state_follows_redis_before_any_limited_request(
    api_settings: Settings,
    pg_engine: Engine,
    llm: FakeLLM,
    daemon: dg.DagsterInstance,
    own_redis: RedisServer,
) -> None:
    now = [100.0]
    settings = with_ollama(api_settings, llm, redis_url=SecretStr(own_redis.url))
    app = create_app(settings, redis_prefix="x:")
    app.state.services.dagster = daemon
    app.state.services.health = HealthChecker(ttl=10.0, clock=lambda: now[0])
    with anyio.fail_after(HANG_GUARD_S):
        async with serve(app) as http:
            own_redis.kill()  # no limited request has seen it go
            body = (await http.get("/api/health")).json()
            assert body["components"]["redis"]["rate_limiter"] == "failing_open"
            assert body["status"] == "degraded"

            own_redis.start()
            now[0] += 10.0  # the next check asks again
            body = (await http.get("/api/health")).json()
            assert body["components"]["redis"]["rate_limiter"] == "enforcing"
            assert (body["status"], body["reasons"]) == ("healthy", [])


async def test_database_on_a_closed_port_is_503_unhealthy(
    api_settings: Settings, redis_prefix: str, daemon: dg.DagsterInstance
) -> None:
    url = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    settings = api_settings.model_copy(update={"database_url": url})
    status, body = await get_health(settings, "x:", daemon)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["reasons"][0] == health_module.DATABASE_DOWN
    assert body["components"]["database"]["status"] == "disconnected"
    assert body["components"]["redis"]["status"] == "connected"
    assert "nowhere" not in str(body)  # no connection details to an unauthenticated caller


@pytest.mark.parametrize("check_timeout", [1.0, 10.0], ids=["check-timeout", "connect-timeout"])
async def test_a_database_that_hangs_gives_503_instead_of_hanging(
    api_settings: Settings,
    silent_database: int,
    daemon: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    check_timeout: float,
) -> None:
    # Either bound ends it: the check's own timeout, or the connect timeout the app sets.
    monkeypatch.setattr(health_module, "DB_TIMEOUT_S", check_timeout)
    url = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{silent_database}/hung")
    settings = api_settings.model_copy(update={"database_url": url})
    status, body = await get_health(settings, "x:", daemon)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["components"]["database"]["status"] == "disconnected"


async def test_component_checks_are_cached_for_the_ttl(
    ollama_settings: Settings, redis_prefix: str, llm: FakeLLM, daemon: dg.DagsterInstance
) -> None:
    now = [100.0]
    app = create_app(ollama_settings, redis_prefix=redis_prefix)
    app.state.services.dagster = daemon
    app.state.services.health = HealthChecker(ttl=10.0, clock=lambda: now[0])
    async with serve(app) as http:
        first = (await http.get("/api/health")).json()
        now[0] = 109.9
        assert (await http.get("/api/health")).json() == first
        assert llm.probes.count("/api/tags") == 1
        now[0] = 110.0
        await http.get("/api/health")
        assert llm.probes.count("/api/tags") == 2
