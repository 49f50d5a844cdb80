"""A scripted LLM server on a loopback port, speaking Ollama's wire format (and, for the second
backend, the OpenAI-compatible one), so the assistant is tested over real HTTP.

    with FakeLLM() as llm:
        llm.script(Say(["The ", "answer"]), Call([("query_cases", {"limit": 3})]))
        ... point the assistant at llm.url ...
        llm.chat_requests[0]["messages"]

Ollama's behaviour it reproduces: ``/api/chat`` streams NDJSON (``message.content`` pieces,
``message.tool_calls`` with arguments as an object, a last chunk with ``done: true``,
``done_reason`` and counts); ``/api/tags``, ``/api/ps`` (optionally slow), ``/api/show`` with
``capabilities``; ``{"error": ...}`` bodies: 404 for a model that is not installed, 400 "does
not support tools" when ``tools`` are sent to a model without that capability. Each chat request
takes the next scripted step; with none left it answers 500, so an unexpected call fails loudly.
``Runaway`` is a model that never emits its stop token: it generates up to the request's token
limit (Ollama's ``options.num_predict``, OpenAI's ``max_tokens``) and stops with ``length``, or,
sent no limit, until the client gives up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

MODEL = "llama3.1:8b"
Lifespan = Literal["auto", "on", "off"]


# --------------------------------------------------------------------------- script steps


@dataclass
class Say:
    """Stream these content pieces, then finish."""

    tokens: Iterable[str]
    delay_s: float = 0.0  # between chunks
    first_token_s: float = 0.0  # before the first chunk: the model's time to first token
    error_after: str | None = None  # an {"error": ...} line instead of the final chunk
    done_reason: str = "stop"


@dataclass
class Runaway:
    """Repeat ``word`` without end, one token a chunk, until the request's token limit."""

    word: str = "claim "
    delay_s: float = 0.002


@dataclass
class Call:
    """Ask for tool calls (one chunk), then finish; optional content pieces first."""

    calls: list[tuple[str, dict[str, Any]]]
    tokens: list[str] = field(default_factory=list)
    arguments_as_string: bool = False  # some templates emit the arguments as a JSON string


@dataclass
class Fail:
    """Answer with an error body and this status."""

    status: int
    error: str


@dataclass
class Hang:
    """Accept the request and say nothing until the client gives up."""


Step = Say | Call | Fail | Hang | Runaway
Chunks = Callable[[str, Say | Call], Iterator[bytes]]


# --------------------------------------------------------------------------- the server


@dataclass
class ChatRecord:
    path: str
    body: dict[str, Any]
    received: float  # perf_counter
    first_chunk: float | None = None
    last_chunk: float | None = None
    disconnected: bool = False
    finished: bool = False


class FakeLLM:
    def __init__(
        self,
        *,
        models: dict[str, list[str]] | None = None,
        loaded: list[str] | None = None,
        ps_delay_s: float = 0.0,
    ) -> None:
        # model name -> capabilities (what /api/show reports)
        self.models = models if models is not None else {MODEL: ["completion", "tools"]}
        self.loaded = loaded if loaded is not None else list(self.models)
        self.ps_delay_s = ps_delay_s
        self.steps: deque[Step] = deque()
        self.records: list[ChatRecord] = []
        self.probes: list[str] = []
        self.disconnected = threading.Event()
        self._server: ServerThread | None = None

    # -- test side

    def script(self, *steps: Step) -> None:
        self.steps.extend(steps)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [record.body for record in self.records]

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake LLM is not running"
        return self._server.url

    def __enter__(self) -> FakeLLM:
        self._server = ServerThread(self.app).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.stop()

    # -- server side

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path, method = scope["path"], scope["method"]
        if path.startswith("/v1/"):
            await self._openai(path, method, body, receive, send)
            return
        self.probes.append(path)
        if (method, path) == ("GET", "/api/tags"):
            await _json(send, 200, {"models": [_model_entry(m) for m in self.models]})
        elif (method, path) == ("GET", "/api/ps"):
            await asyncio.sleep(self.ps_delay_s)
            await _json(send, 200, {"models": [_model_entry(m) for m in self.loaded]})
        elif (method, path) == ("POST", "/api/show"):
            name = body.get("model") or body.get("name")
            if name not in self.models:
                await _json(send, 404, {"error": f"model '{name}' not found"})
            else:
                await _json(send, 200, _show(name, self.models[name]))
        elif (method, path) == ("POST", "/api/chat"):
            await self._chat(path, body, receive, send, _ollama_chunks)
        else:
            await _json(send, 404, {"error": "404 page not found"})

    async def _openai(
        self, path: str, method: str, body: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        self.probes.append(path)
        if (method, path) == ("GET", "/v1/models"):
            await _json(send, 200, {"object": "list", "data": [{"id": m} for m in self.models]})
        elif (method, path) == ("POST", "/v1/chat/completions"):
            await self._chat(path, body, receive, send, _openai_chunks)
        else:
            await _json(send, 404, {"error": {"message": "not found"}})

    async def _chat(
        self, path: str, body: dict[str, Any], receive: Receive, send: Send, chunks: Chunks
    ) -> None:
        record = ChatRecord(path, body, time.perf_counter())
        self.records.append(record)
        model = body.get("model")
        if model not in self.models:
            await _json(send, 404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        if body.get("tools") and "tools" not in self.models[model] and path == "/api/chat":
            await _json(
                send, 400, {"error": f"registry.ollama.ai/library/{model} does not support tools"}
            )
            return
        if not self.steps:
            await _json(send, 500, {"error": "fake LLM: nothing scripted for this request"})
            return
        step = self.steps.popleft()
        if isinstance(step, Fail):
            await _json(send, step.status, {"error": step.error})
            return
        if isinstance(step, Runaway):
            limit = (body.get("options") or {}).get("num_predict") or body.get("max_tokens")
            words: Iterable[str] = (
                itertools.repeat(step.word, limit) if limit else (itertools.repeat(step.word))
            )
            step = Say(words, delay_s=step.delay_s, done_reason="length")
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            if isinstance(step, Hang):
                await gone.wait()
            else:
                await self._stream(record, step, chunks(model, step), gone, send)
        finally:
            watcher.cancel()
            if gone.is_set():
                record.disconnected = True
                self.disconnected.set()

    async def _stream(
        self,
        record: ChatRecord,
        step: Say | Call,
        lines: Iterator[bytes],
        gone: asyncio.Event,
        send: Send,
    ) -> None:
        ndjson = record.path == "/api/chat"
        content_type = b"application/x-ndjson" if ndjson else b"text/event-stream"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        first = step.first_token_s if isinstance(step, Say) else 0.0
        delay = step.delay_s if isinstance(step, Say) else 0.0
        for index, line in enumerate(lines):
            wait = first if index == 0 else delay
            if wait:
                try:
                    await asyncio.wait_for(gone.wait(), wait)
                    return  # the client went away: stop generating, as Ollama does
                except TimeoutError:
                    pass
            if gone.is_set():
                return
            try:
                await send({"type": "http.response.body", "body": line, "more_body": True})
            except OSError:
                gone.set()
                return
            record.last_chunk = time.perf_counter()
            if record.first_chunk is None:
                record.first_chunk = record.last_chunk
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        record.finished = True


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _model_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": _now(),
        "size": 4_920_753_328,
        "digest": "sha256:" + "0" * 64,
        "details": {"format": "gguf", "family": "llama", "parameter_size": "8.0B"},
        "expires_at": _now(),
        "size_vram": 4_920_753_328,
    }


def _show(name: str, capabilities: list[str]) -> dict[str, Any]:
    return {
        "modelfile": f"FROM {name}",
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": {"format": "gguf", "family": "llama"},
        "model_info": {"general.architecture": "llama"},
        "capabilities": capabilities,
    }


def _ndjson(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode() + b"\n"


def _ollama_chunks(model: str, step: Say | Call) -> Iterator[bytes]:
    def chunk(message: dict[str, Any]) -> bytes:
        return _ndjson(
            {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", **message},
                "done": False,
            }
        )

    count = 0
    for token in step.tokens:
        count += 1
        yield chunk({"content": token})
    if isinstance(step, Call):
        yield chunk(
            {
                "content": "",
                "tool_calls": [
                    {
                        "id": f"call_{index}",
                        "function": {
                            "index": index,
                            "name": name,
                            "arguments": json.dumps(args) if step.arguments_as_string else args,
                        },
                    }
                    for index, (name, args) in enumerate(step.calls)
                ],
            }
        )
    if isinstance(step, Say) and step.error_after is not None:
        yield _ndjson({"error": step.error_after})
        return
    yield _ndjson(
        {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": step.done_reason if isinstance(step, Say) else "stop",
            "total_duration": 1_000_000,
            "load_duration": 10_000,
            "prompt_eval_count": 42,
            "prompt_eval_duration": 100_000,
            "eval_count": count + 1,
            "eval_duration": 500_000,
        }
    )


def _openai_chunks(model: str, step: Say | Call) -> Iterator[bytes]:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    for token in step.tokens:
        yield event({"content": token})
    if isinstance(step, Call):
        for index, (name, args) in enumerate(step.calls):
            text = json.dumps(args)
            # Name first, then the arguments in two fragments, as servers stream them.
            yield event(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": f"call_{index}",
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                yield event({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        yield event({}, "tool_calls")
    elif isinstance(step, Say) and step.error_after is not None:
        yield b"data: " + json.dumps({"error": {"message": step.error_after}}).encode() + b"\n\n"
        return
    else:
        yield event({}, step.done_reason if isinstance(step, Say) else "stop")
    yield b"data: [DONE]\n\n"


async def _read_body(receive: Receive) -> dict[str, Any]:
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    return json.loads(raw) if raw else {}


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- serving


class ServerThread:
    """Any ASGI app served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, app: ASGIApp, *, lifespan: Lifespan = "off") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            interface="asgi3",
            lifespan=lifespan,
            log_level="warning",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
