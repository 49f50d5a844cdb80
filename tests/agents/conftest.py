"""Fixtures for the assistant: a scripted LLM server, two seeded workspaces on the real
PostgreSQL, and the API served by uvicorn on loopback (streaming needs a real server).

The data is ``tests.agents.harness``'s. Tokens: alice (investigator, acme), vera (viewer, acme),
root (admin, acme), gina (investigator, globex).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from fwa_api.auth import create_token
from fwa_pipeline.settings import AssistantSettings, Settings
from tests.agents.fake_llm import MODEL, FakeLLM, ServerThread
from tests.agents.harness import build_app, seed


@dataclass
class World:
    acme: int
    globex: int
    tokens: dict[str, str]


@pytest.fixture
def world(pg_engine: Engine, pg_settings: Settings) -> World:
    acme, globex = seed(pg_engine)
    tokens = {}
    for name, role, workspaces in (
        ("alice", "investigator", ["acme"]),
        ("vera", "viewer", ["acme"]),
        ("root", "admin", ["acme"]),
        ("gina", "investigator", ["globex"]),
    ):
        tokens[name], _ = create_token(
            pg_engine, pg_settings, name=name, role=role, workspaces=workspaces
        )
    return World(acme, globex, tokens)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def agent_settings(url: str, **overrides: Any) -> AssistantSettings:
    values: dict[str, Any] = {
        "llm_url": url,
        "llm_model": MODEL,
        "llm_connect_timeout_s": 1.0,
        "llm_read_timeout_s": 2.0,
        "llm_call_timeout_s": 5.0,
        "llm_probe_timeout_s": 1.0,
        "llm_unreachable_ttl_s": 0.0,
        **overrides,
    }
    return AssistantSettings(**values)


class Api:
    """The served app and a client that speaks for a named token."""

    def __init__(self, url: str, tokens: dict[str, str], app: Any) -> None:
        self.url = url
        self.tokens = tokens
        self.app = app
        self.http = httpx.Client(base_url=url, timeout=30)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def request(self, method: str, path: str, who: str = "alice", **kw: Any) -> httpx.Response:
        params = kw.pop("params", {"workspace": "acme"})
        return self.http.request(method, path, headers=self.headers(who), params=params, **kw)

    def chat(self, message: str, who: str = "alice", **body: Any) -> httpx.Response:
        return self.request("POST", "/api/agents/chat", who, json={"message": message, **body})

    def stream(self, message: str, who: str = "alice", **body: Any) -> list[dict[str, Any]]:
        events = []
        with self.http.stream(
            "POST",
            "/api/agents/chat/stream",
            headers=self.headers(who),
            params={"workspace": "acme"},
            json={"message": message, **body},
        ) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        return events

    def new_session(self, who: str = "alice", **body: Any) -> str:
        response = self.request("POST", "/api/agents/sessions", who, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])


@pytest.fixture
def api_for(pg_settings: Settings, world: World) -> Iterator[Any]:
    """``api_for(agent_settings)`` serves the app; the servers stop at the end of the test."""
    started: list[tuple[ServerThread, Api]] = []

    def start(agent: AssistantSettings) -> Api:
        app = build_app(pg_settings, agent)
        server = ServerThread(app, lifespan="on").start()
        client = Api(server.url, world.tokens, app)
        started.append((server, client))
        return client

    yield start
    for server, client in started:
        client.http.close()
        server.stop()


@pytest.fixture
def api(api_for: Any, llm: FakeLLM) -> Api:
    return api_for(agent_settings(llm.url))


@pytest.fixture
def prompt_llm() -> Iterator[FakeLLM]:
    """A server whose model has no tools, so the assistant uses the prompt format."""
    with FakeLLM(models={MODEL: ["completion"]}) as server:
        yield server


@pytest.fixture
def prompt_api(api_for: Any, prompt_llm: FakeLLM) -> Api:
    return api_for(agent_settings(prompt_llm.url))
