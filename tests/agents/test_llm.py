"""The LLM clients against the scripted server over real HTTP: Ollama's NDJSON stream, tool
calls, capabilities, model status, error bodies, timeouts; the OpenAI-compatible backend."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import pytest

from fwa_api.agents.llm import (
    Finished,
    LLMBadResponse,
    LLMBusy,
    LLMError,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
    Message,
    ModelNotFound,
    OllamaClient,
    OpenAICompatClient,
    TextDelta,
    ToolCall,
    ToolCalls,
    ToolSpec,
    ToolsUnsupported,
)
from tests.agents.conftest import agent_settings
from tests.agents.fake_llm import MODEL, Call, Fail, FakeLLM, Hang, Say, ServerThread

pytestmark = pytest.mark.anyio

SPEC = ToolSpec("query_cases", "Cases.", {"type": "object", "properties": {}})
HELLO = [Message("user", "hello")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def ollama(llm: FakeLLM, http: httpx.AsyncClient, **overrides: Any) -> OllamaClient:
    return OllamaClient(agent_settings(llm.url, **overrides), http)


async def collect(client: Any, **kw: Any) -> list[Any]:
    return [event async for event in client.chat(kw.pop("messages", HELLO), **kw)]


async def test_streams_tokens_in_order_then_finishes(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    llm.script(Say(["The ", "sky ", "is blue."]))
    events = await collect(ollama(llm, http))
    assert events[:3] == [TextDelta("The "), TextDelta("sky "), TextDelta("is blue.")]
    assert events[3] == Finished("stop", 42, 4)
    body = llm.chat_requests[0]
    assert body["stream"] is True and body["model"] == MODEL
    assert body["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("as_string", [False, True])
async def test_reads_tool_calls(llm: FakeLLM, http: httpx.AsyncClient, as_string: bool) -> None:
    llm.script(Call([("query_cases", {"limit": 3})], arguments_as_string=as_string))
    events = await collect(ollama(llm, http), tools=[SPEC])
    assert events[0] == ToolCalls((ToolCall("query_cases", {"limit": 3}, "call_0"),))
    assert llm.chat_requests[0]["tools"] == [SPEC.as_function()]


async def test_sends_tool_turns_in_ollamas_shape(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    llm.script(Say(["ok"]))
    messages = [
        Message("assistant", "", tool_calls=(ToolCall("query_cases", {"limit": 3}),)),
        Message("tool", '{"count": 0}', tool_name="query_cases"),
    ]
    await collect(ollama(llm, http), messages=messages, schema={"type": "object"})
    body = llm.chat_requests[0]
    assert body["messages"] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "query_cases", "arguments": {"limit": 3}}}],
        },
        {"role": "tool", "content": '{"count": 0}', "tool_name": "query_cases"},
    ]
    assert body["format"] == {"type": "object"}


async def test_capabilities_come_from_api_show_and_are_cached(
    llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    client = ollama(llm, http)
    assert "tools" in await client.capabilities()
    assert "tools" in await client.capabilities()
    assert llm.probes.count("/api/show") == 1
    client.forget_tools()
    assert "tools" not in await client.capabilities()


async def test_status_reports_installed_loaded_and_tools(http: httpx.AsyncClient) -> None:
    with FakeLLM(models={MODEL: ["completion"]}, loaded=[]) as llm:
        status = await ollama(llm, http).status()
    assert (status.reachable, status.installed, status.loaded) == (True, True, False)
    assert "tools" not in status.capabilities


async def test_a_slow_api_ps_means_loading(http: httpx.AsyncClient) -> None:
    with FakeLLM(ps_delay_s=0.8) as llm:
        status = await ollama(llm, http, llm_probe_timeout_s=0.2).status()
    assert (status.reachable, status.installed, status.loaded) == (True, True, None)


async def test_status_of_a_model_that_is_not_installed(
    llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    status = await ollama(llm, http, llm_model="mistral:7b").status()
    assert (status.reachable, status.installed, status.reason) == (True, False, "model_not_found")


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (Fail(400, "registry.ollama.ai/library/x does not support tools"), ToolsUnsupported),
        (Fail(404, 'model "x" not found, try pulling it first'), ModelNotFound),
        (Fail(503, "server busy, please try again.  maximum pending requests exceeded"), LLMBusy),
        (Fail(500, "llama runner process has terminated"), LLMServerError),
        (Fail(400, "invalid message format"), LLMBadResponse),
        (
            Say(["partial "], error_after="an error was encountered while running the model"),
            LLMServerError,
        ),
    ],
)
async def test_error_bodies_become_typed_errors(
    llm: FakeLLM, http: httpx.AsyncClient, step: Any, error: type[LLMError]
) -> None:
    llm.script(step)
    with pytest.raises(error) as caught:
        await collect(ollama(llm, http))
    assert caught.value.detail  # the server's own words, for the log


async def test_real_tool_refusal_for_a_model_without_tools(http: httpx.AsyncClient) -> None:
    with FakeLLM(models={MODEL: ["completion"]}) as llm, pytest.raises(ToolsUnsupported):
        await collect(ollama(llm, http), tools=[SPEC])


async def test_an_unknown_model_is_404(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    with pytest.raises(ModelNotFound):
        await collect(ollama(llm, http, llm_model="nope:1b"))
    with pytest.raises(ModelNotFound):
        await ollama(llm, http, llm_model="nope:1b").capabilities()


async def test_silence_hits_the_read_timeout(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    llm.script(Hang())
    with pytest.raises(LLMTimeout):
        await collect(ollama(llm, http, llm_read_timeout_s=0.3))


async def test_a_slow_stream_hits_the_call_deadline(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    # Each chunk comes within the read timeout; the whole answer does not come within the call's.
    llm.script(Say(["tok "] * 50, delay_s=0.05))
    with pytest.raises(LLMTimeout):
        await collect(ollama(llm, http, llm_read_timeout_s=2, llm_call_timeout_s=0.5))
    assert llm.disconnected.wait(5)  # and the server was told to stop


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nothing_listening_is_unavailable(http: httpx.AsyncClient) -> None:
    client = OllamaClient(agent_settings(f"http://127.0.0.1:{_closed_port()}"), http)
    with pytest.raises(LLMUnavailable):
        await collect(client)
    with pytest.raises(LLMUnavailable):
        await client.capabilities()
    assert (await client.status()).reachable is False


async def test_an_unreachable_server_is_remembered_briefly(http: httpx.AsyncClient) -> None:
    port = _closed_port()
    client = OllamaClient(
        agent_settings(f"http://127.0.0.1:{port}", llm_unreachable_ttl_s=60), http
    )
    with pytest.raises(LLMUnavailable):
        await client.capabilities()
    with FakeLLM() as llm:
        client.settings = agent_settings(llm.url, llm_unreachable_ttl_s=60)
        with pytest.raises(LLMUnavailable):  # still remembered, no new probe
            await client.capabilities()
        assert llm.probes == []
        client.forget()
        assert "tools" in await client.capabilities()


async def test_closing_the_stream_early_stops_the_server(
    llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    llm.script(Say(["tok "] * 200, delay_s=0.02))
    stream = ollama(llm, http).chat(HELLO)
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == TextDelta("tok ")
    await stream.aclose()
    assert await asyncio.to_thread(llm.disconnected.wait, 5)
    assert not llm.records[0].finished


# --------------------------------------------------------------------------- OpenAI-compatible


def openai(llm: FakeLLM, http: httpx.AsyncClient, **overrides: Any) -> OpenAICompatClient:
    settings = agent_settings(f"{llm.url}/v1", llm_backend="openai", **overrides)
    return OpenAICompatClient(settings, http)


async def test_openai_streams_tokens_and_assembles_tool_calls(
    llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    llm.script(Say(["Hel", "lo"]), Call([("query_case_detail", {"case_id": "CASE-000001"})]))
    client = openai(llm, http)
    assert await collect(client) == [TextDelta("Hel"), TextDelta("lo"), Finished("stop")]
    events = await collect(client, tools=[SPEC])
    assert events == [
        ToolCalls((ToolCall("query_case_detail", {"case_id": "CASE-000001"}, "call_0"),)),
        Finished("tool_calls"),
    ]


async def test_openai_request_shape(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    llm.script(Say(["ok"]), Say(["ok"]))
    messages = [
        Message("assistant", "", tool_calls=(ToolCall("query_cases", {"limit": 3}, "c1"),)),
        Message("tool", "{}", tool_name="query_cases", tool_call_id="c1"),
    ]
    await collect(openai(llm, http), messages=messages, schema={"type": "object"})
    await collect(openai(llm, http, llm_json_mode="json_object"), schema={"type": "object"})
    first, second = llm.chat_requests
    assert first["messages"][0]["tool_calls"] == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "query_cases", "arguments": '{"limit": 3}'},
        }
    ]
    assert first["messages"][1] == {"role": "tool", "content": "{}", "tool_call_id": "c1"}
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": {"type": "object"}},
    }
    assert second["response_format"] == {"type": "json_object", "schema": {"type": "object"}}


async def test_openai_capabilities_follow_the_setting(
    llm: FakeLLM, http: httpx.AsyncClient
) -> None:
    assert "tools" not in await openai(llm, http).capabilities()
    assert "tools" in await openai(llm, http, llm_native_tools=True).capabilities()
    status = await openai(llm, http).status()
    assert (status.reachable, status.installed) == (True, True)


async def test_openai_errors(llm: FakeLLM, http: httpx.AsyncClient) -> None:
    llm.script(Fail(503, "busy"), Say(["x"], error_after="context length exceeded"))
    with pytest.raises(LLMBusy):
        await collect(openai(llm, http))
    with pytest.raises(LLMServerError, match="context length exceeded"):
        await collect(openai(llm, http))


async def test_openai_an_empty_event_stream_is_a_server_error(http: httpx.AsyncClient) -> None:
    """What llama-cpp-python does with a prompt longer than its context window: 200, an event
    stream, and no event at all. The server answered: not "unavailable"."""

    async def empty_stream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    server = ServerThread(empty_stream).start()
    try:
        settings = agent_settings(f"{server.url}/v1", llm_backend="openai")
        with pytest.raises(LLMServerError, match="without an event"):
            await collect(OpenAICompatClient(settings, http))
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["ollama", "openai"])
async def test_system_prompt_as_the_first_user_message(
    llm: FakeLLM, http: httpx.AsyncClient, backend: str
) -> None:
    """For chat templates without a system role (llama-cpp-python's ``gemma`` drops it)."""
    llm.script(Say(["ok"]), Say(["ok"]), Say(["ok"]))
    conversation = [
        Message("system", "You are the FWA assistant."),
        Message("user", "Which providers?"),
        Message("assistant", "PRV-1."),
        Message("user", "Why?"),
    ]
    make = ollama if backend == "ollama" else openai
    await collect(make(llm, http), messages=conversation)
    await collect(make(llm, http, llm_system_as_user=True), messages=conversation)
    await collect(make(llm, http, llm_system_as_user=True), messages=conversation[:1])
    default, folded, alone = (body["messages"] for body in llm.chat_requests)
    assert default[0] == {"role": "system", "content": "You are the FWA assistant."}
    assert [m["role"] for m in folded] == ["user", "assistant", "user"]
    assert folded[0]["content"] == "You are the FWA assistant.\n\nWhich providers?"
    assert folded[1:] == default[2:]
    assert alone == [{"role": "user", "content": "You are the FWA assistant."}]
