"""LLM backends: Ollama's native API (the default) and any OpenAI-compatible server.

Both stream (``chat`` is an async iterator of ``TextDelta``, ``ToolCalls`` and one ``Finished``)
and both bound every call: a connect timeout, a read timeout between two chunks, and a deadline
for the whole call. Closing the iterator early (a client that went away) closes the HTTP stream,
which makes Ollama stop generating. Every failure surfaces as an ``LLMError`` whose ``reason`` is
a short code, safe for users, logs and metrics; httpx errors never leak past this module.

Ollama speaks NDJSON on ``/api/chat`` (``message.content``, ``message.tool_calls`` with arguments
as an object, a last chunk with ``done: true``), lists models on ``/api/tags`` and ``/api/ps``,
and describes one on ``/api/show`` (``capabilities``: does it call tools?). Errors are
``{"error": ...}`` with 400 (e.g. "does not support tools"), 404 (no such model) or 503 (queue
full), and may also arrive as a line in the middle of a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from fwa_api.agents.prompt_tools import parse_json_object
from fwa_pipeline.settings import AssistantSettings

logger = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 4096


# --------------------------------------------------------------------------- messages and events


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    # On a tool result: which tool produced it (Ollama) and which call it answers (OpenAI).
    tool_name: str | None = None
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCalls:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


LLMEvent = TextDelta | ToolCalls | Finished


def system_as_user(messages: list[Message]) -> list[Message]:
    """The system prompt moved into the first user message, for chat templates without a system
    role: joined to the conversation's opening user message (roles keep alternating), or a user
    message of its own when the conversation does not open with one."""
    prompt = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not prompt:
        return rest
    if rest and rest[0].role == "user":
        return [Message("user", f"{prompt}\n\n{rest[0].content}"), *rest[1:]]
    return [Message("user", prompt), *rest]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    def as_function(self) -> dict[str, Any]:
        # The same shape for Ollama and OpenAI-compatible servers.
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """What the server says of the configured model; None where it cannot tell."""

    reachable: bool
    installed: bool | None = None
    loaded: bool | None = None
    capabilities: frozenset[str] = frozenset()
    reason: str | None = None


# --------------------------------------------------------------------------- errors


class LLMError(Exception):
    reason = "error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


class LLMUnavailable(LLMError):
    reason = "unavailable"


class LLMTimeout(LLMError):
    reason = "timeout"


class LLMBusy(LLMError):
    reason = "busy"


class ModelNotFound(LLMError):
    reason = "model_not_found"


class ToolsUnsupported(LLMError):
    reason = "tools_unsupported"


class LLMServerError(LLMError):
    reason = "server_error"


class LLMBadResponse(LLMError):
    reason = "bad_response"


def error_for_status(status: int, message: str) -> LLMError:
    if status == 400 and "does not support tools" in message.lower():
        return ToolsUnsupported(message)
    if status == 404:
        return ModelNotFound(message)
    if status in (429, 503):
        return LLMBusy(message)
    if status >= 500:
        return LLMServerError(message)
    return LLMBadResponse(f"HTTP {status}: {message}")


def _error_message(body: bytes) -> str:
    """The ``error`` of an Ollama (string) or OpenAI-style (object) error body."""
    text = body[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip()
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return str(error) if error is not None else text.strip()


# --------------------------------------------------------------------------- the protocol


class LLMBackend(Protocol):
    kind: str

    @property
    def model(self) -> str: ...

    async def capabilities(self) -> frozenset[str]:
        """What the model can do (``tools`` among them); raises ``LLMError``."""
        ...

    async def status(self) -> ModelStatus: ...

    def forget_tools(self) -> None:
        """The server refused ``tools`` for this model after all: stop offering them."""
        ...

    def chat(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[LLMEvent]: ...


@dataclass
class _Cached:
    value: frozenset[str] | None = None
    error: LLMError | None = None
    expires: float = float("-inf")


@dataclass
class _HttpBackend:
    """What both backends share: the HTTP client, timeouts, the streaming loop, caching."""

    settings: AssistantSettings
    http: httpx.AsyncClient
    clock: Callable[[], float] = time.monotonic
    _cache: _Cached = field(default_factory=_Cached)

    @property
    def model(self) -> str:
        return self.settings.model

    def _timeout(self, read: float) -> httpx.Timeout:
        s = self.settings
        return httpx.Timeout(connect=s.llm_connect_timeout_s, read=read, write=read, pool=read)

    def _wire_messages(self, messages: list[Message]) -> list[Message]:
        return system_as_user(messages) if self.settings.llm_system_as_user else messages

    def _headers(self) -> dict[str, str]:
        key = self.settings.llm_api_key.get_secret_value()
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _probe(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One short request; returns its JSON body or raises ``LLMError``."""
        timeout = self.settings.llm_probe_timeout_s
        try:
            async with asyncio.timeout(timeout):
                response = await self.http.request(
                    method,
                    self.settings.base_url + path,
                    json=body,
                    headers=self._headers(),
                    timeout=self._timeout(timeout),
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMTimeout(f"{path} took longer than {timeout}s") from exc
        except httpx.HTTPError as exc:
            raise LLMUnavailable(type(exc).__name__) from exc
        if response.status_code >= 400:
            raise error_for_status(response.status_code, _error_message(response.content))
        try:
            return response.json()
        except ValueError as exc:
            raise LLMBadResponse(f"{path} did not answer JSON") from exc

    async def capabilities(self) -> frozenset[str]:
        cached = self._cache
        if self.clock() < cached.expires:
            if cached.error is not None:
                raise cached.error
            assert cached.value is not None
            return cached.value
        try:
            value = await self._fetch_capabilities()
        except (LLMUnavailable, LLMTimeout) as exc:
            # Remembered briefly so that a down server costs one probe, not one per request.
            self._cache = _Cached(error=exc, expires=self.clock() + self._unreachable_ttl())
            raise
        self._cache = _Cached(
            value=value, expires=self.clock() + self.settings.llm_capabilities_ttl_s
        )
        return value

    def _unreachable_ttl(self) -> float:
        return self.settings.llm_unreachable_ttl_s

    def forget_tools(self) -> None:
        """The server refused ``tools`` for this model: use the prompt format from now on."""
        if self._cache.value is not None:
            self._cache.value = self._cache.value - {"tools"}

    def forget(self) -> None:
        """Drop what is cached: the next call asks the server again."""
        self._cache = _Cached()

    async def _fetch_capabilities(self) -> frozenset[str]:
        raise NotImplementedError

    async def _stream_lines(self, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
        """The response's lines, each read under the read timeout and the call's deadline."""
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.llm_call_timeout_s

        def remaining() -> float:
            left = deadline - loop.time()
            if left <= 0:
                raise LLMTimeout(f"no complete answer within {s.llm_call_timeout_s}s")
            return left

        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(remaining()):
                    response = await stack.enter_async_context(
                        self.http.stream(
                            "POST",
                            s.base_url + path,
                            json=body,
                            headers=self._headers(),
                            timeout=self._timeout(s.llm_read_timeout_s),
                        )
                    )
                    if response.status_code >= 400:
                        message = _error_message(await response.aread())
                        raise error_for_status(response.status_code, message)
                lines = response.aiter_lines()
                while True:
                    try:
                        async with asyncio.timeout(remaining()):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        return
                    if line.strip():
                        yield line
        except TimeoutError as exc:
            raise LLMTimeout(f"no complete answer within {s.llm_call_timeout_s}s") from exc
        except httpx.TimeoutException as exc:
            raise LLMTimeout(type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise LLMUnavailable(type(exc).__name__) from exc


# --------------------------------------------------------------------------- Ollama


def _model_key(name: str) -> str:
    # Ollama reads a name without a tag as ":latest".
    return name if ":" in name else f"{name}:latest"


def _lists(payload: Any, model: str) -> bool:
    wanted = _model_key(model)
    models = payload.get("models", []) if isinstance(payload, dict) else []
    return any(
        _model_key(str(entry.get(key, ""))) == wanted
        for entry in models
        if isinstance(entry, dict)
        for key in ("name", "model")
    )


def _ollama_tool_call(raw: Any) -> ToolCall | None:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return None
    arguments = function.get("arguments")
    if isinstance(arguments, str):  # some templates emit the arguments as a JSON string
        arguments = parse_json_object(arguments)
    return ToolCall(
        name=function["name"],
        arguments=arguments if isinstance(arguments, dict) else {},
        id=raw.get("id") if isinstance(raw.get("id"), str) else None,
    )


@dataclass
class OllamaClient(_HttpBackend):
    kind: str = "ollama"

    async def _fetch_capabilities(self) -> frozenset[str]:
        shown = await self._probe("POST", "/api/show", {"model": self.model})
        if not isinstance(shown, dict):
            raise LLMBadResponse("/api/show did not answer an object")
        capabilities = shown.get("capabilities")
        if isinstance(capabilities, list):
            return frozenset(str(c) for c in capabilities)
        # Servers older than the ``capabilities`` field: a template that renders tools.
        template = str(shown.get("template", ""))
        return frozenset({"completion", "tools"} if ".Tools" in template else {"completion"})

    async def status(self) -> ModelStatus:
        try:
            tags = await self._probe("GET", "/api/tags")
        except LLMError as exc:
            return ModelStatus(reachable=False, reason=exc.reason)
        if not _lists(tags, self.model):
            return ModelStatus(reachable=True, installed=False, reason="model_not_found")
        try:
            loaded: bool | None = _lists(await self._probe("GET", "/api/ps"), self.model)
        except LLMError:
            loaded = None  # /api/ps blocks while a model loads: treat as loading
        self.forget()  # a status check is the moment to notice a newly pulled model
        try:
            capabilities = await self.capabilities()
        except LLMError as exc:
            return ModelStatus(True, True, loaded, reason=exc.reason)
        return ModelStatus(True, True, loaded, capabilities)

    @staticmethod
    def _message(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            out["tool_calls"] = [
                {"function": {"name": call.name, "arguments": call.arguments}}
                for call in message.tool_calls
            ]
        if message.tool_name:
            out["tool_name"] = message.tool_name
        return out

    async def chat(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[LLMEvent]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [self._message(m) for m in self._wire_messages(messages)],
            "stream": True,
            "options": {
                "temperature": self.settings.llm_temperature,
                "num_predict": self.settings.llm_max_tokens,
                # Ollama's default context (2,048-4,096 tokens) would cut the prompt the
                # assistant budgets for, silently: ask for room for it and the answer.
                "num_ctx": self.settings.agent_prompt_tokens + self.settings.llm_max_tokens,
            },
        }
        if tools:
            body["tools"] = [tool.as_function() for tool in tools]
        if schema is not None:
            body["format"] = schema
        finished = False
        async for line in self._stream_lines("/api/chat", body):
            if finished:
                continue
            try:
                chunk = json.loads(line)
            except ValueError as exc:
                raise LLMBadResponse("a streamed line was not JSON") from exc
            if not isinstance(chunk, dict):
                raise LLMBadResponse("a streamed line was not an object")
            if "error" in chunk:
                raise LLMServerError(str(chunk["error"]))
            message = chunk.get("message") or {}
            content = message.get("content")
            if isinstance(content, str) and content:
                yield TextDelta(content)
            raw_calls = message.get("tool_calls")
            if isinstance(raw_calls, list) and raw_calls:
                calls = tuple(c for c in map(_ollama_tool_call, raw_calls) if c is not None)
                if calls:
                    yield ToolCalls(calls)
            if chunk.get("done") and not finished:
                finished = True
                yield Finished(
                    chunk.get("done_reason"),
                    chunk.get("prompt_eval_count"),
                    chunk.get("eval_count"),
                )
        # Read to the end rather than stop at "done": a response read whole returns its
        # connection to the pool; one closed early costs a new connection per call.
        if not finished:
            raise LLMUnavailable("the stream ended before the model finished")


# --------------------------------------------------------------------------- OpenAI-compatible


@dataclass
class OpenAICompatClient(_HttpBackend):
    """``/chat/completions`` with SSE streaming; ``FWA_LLM_URL`` is the root ending in ``/v1``."""

    kind: str = "openai"

    async def _fetch_capabilities(self) -> frozenset[str]:
        # Nothing in the API says whether a model calls tools: the operator does.
        await self._probe("GET", "/models")
        tools = {"tools"} if self.settings.llm_native_tools else set()
        return frozenset({"completion", *tools})

    async def status(self) -> ModelStatus:
        self.forget()
        try:
            listed = await self._probe("GET", "/models")
            capabilities = await self.capabilities()
        except LLMError as exc:
            return ModelStatus(reachable=False, reason=exc.reason)
        ids = {str(m.get("id")) for m in listed.get("data", []) if isinstance(m, dict)}
        # Single-model servers (llama.cpp) answer to any name: a list without ours is no proof.
        installed = True if self.model in ids else None
        return ModelStatus(True, installed, None, capabilities)

    @staticmethod
    def _message(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id or f"call_{index}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for index, call in enumerate(message.tool_calls)
            ]
        if message.role == "tool":
            out["tool_call_id"] = message.tool_call_id or "call_0"
        return out

    def _response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.settings.llm_json_mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}

    async def chat(
        self,
        messages: list[Message],
        *,
        tools: list[ToolSpec] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> AsyncIterator[LLMEvent]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [self._message(m) for m in self._wire_messages(messages)],
            "stream": True,
            "temperature": self.settings.llm_temperature,
            "max_tokens": self.settings.llm_max_tokens,
        }
        if tools:
            body["tools"] = [tool.as_function() for tool in tools]
        if schema is not None:
            body["response_format"] = self._response_format(schema)
        # Tool calls arrive in pieces (name first, arguments as string fragments) keyed by index.
        pending: dict[int, dict[str, str]] = {}
        finish: str | None = None
        usage: dict[str, Any] = {}
        ended = False
        seen = False  # any data event at all
        async for line in self._stream_lines("/chat/completions", body):
            if ended or not line.startswith("data:"):
                continue  # comments, event names, keep-alives; nothing counts after [DONE]
            seen = True
            data = line[5:].strip()
            if data == "[DONE]":
                ended = True  # and read on to the end, which keeps the connection reusable
                continue
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                raise LLMBadResponse("a streamed event was not JSON") from exc
            if not isinstance(chunk, dict):
                raise LLMBadResponse("a streamed event was not an object")
            if "error" in chunk:
                raise LLMServerError(_error_message(data.encode()))
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str) and delta["content"]:
                    yield TextDelta(delta["content"])
                for piece in delta.get("tool_calls") or []:
                    slot = pending.setdefault(
                        int(piece.get("index", 0)), {"id": "", "name": "", "arguments": ""}
                    )
                    slot["id"] = piece.get("id") or slot["id"]
                    function = piece.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
        if not seen:
            # llama-cpp-python answers 200 and closes the stream without one event when the
            # request fails in the model, e.g. a prompt longer than its context window (--n_ctx).
            # The server answered, so this is its error, not "unreachable".
            raise LLMServerError(
                "the server closed the stream without an event (a prompt longer than its "
                "context window?)"
            )
        if not ended and finish is None:
            raise LLMUnavailable("the stream ended before the model finished")
        if pending:
            yield ToolCalls(
                tuple(
                    ToolCall(
                        name=slot["name"],
                        arguments=parse_json_object(slot["arguments"]) or {},
                        id=slot["id"] or None,
                    )
                    for _, slot in sorted(pending.items())
                )
            )
        yield Finished(finish, usage.get("prompt_tokens"), usage.get("completion_tokens"))


def make_backend(
    settings: AssistantSettings, http: httpx.AsyncClient
) -> OllamaClient | OpenAICompatClient:
    if settings.llm_backend == "openai":
        return OpenAICompatClient(settings, http)
    return OllamaClient(settings, http)
