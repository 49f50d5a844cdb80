"""The assistant's own latency: what it adds on top of the LLM, and the fast path.

    .venv/bin/python benchmarks/assistant.py [--requests 200] [--database-url URL] [--check]

* **Overhead**: for ``POST /api/agents/chat/stream`` (with a session, so history is read), the
  time from sending the request to the first SSE token, minus the LLM's own time to the chunk that
  token waits for (measured at the LLM server, from request received to chunk sent): with native
  tool calling, a step that may still call tools is streamed once it ends, so that is the step's
  last chunk. Target: p50 < 50 ms.
* **Fast path**: ``POST /api/agents/chat`` for questions answered from the data (stats, top
  cases, a case by id). Target: p50 < 50 ms.

The API runs in a process of its own (uvicorn, one worker) on a migrated, seeded database
(a temporary SQLite file unless ``--database-url`` names another); the LLM is the tests'
scripted Ollama stand-in, answering at once, in this process. Not part of the test run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fwa_api.auth import create_token  # noqa: E402
from fwa_pipeline.settings import Settings  # noqa: E402
from fwa_pipeline.store import migrate  # noqa: E402
from fwa_pipeline.store.db import engine_for  # noqa: E402
from tests.agents.fake_llm import MODEL, FakeLLM, Say  # noqa: E402
from tests.agents.harness import build_app, seed  # noqa: E402

TARGET_MS = 50.0
FAST_QUESTIONS = ("pipeline stats", "top 5 critical cases", "CASE-000001")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(name: str, values: list[float]) -> dict[str, float]:
    row = {
        "min": min(values),
        "p50": statistics.median(values),
        "p95": _percentile(values, 0.95),
        "max": max(values),
    }
    print(
        f"{name:<42} min {row['min']:6.1f}   p50 {row['p50']:6.1f}   p95 {row['p95']:6.1f}   "
        f"max {row['max']:6.1f} ms   (n={len(values)})"
    )
    return row


def serve(port: int) -> None:
    """The API process: settings and the LLM's address come from the environment."""
    import uvicorn

    uvicorn.run(
        build_app(Settings()),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        log_level="warning",
    )


def _start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env={**os.environ, **env},
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return process
        except httpx.HTTPError:
            if process.poll() is not None:
                raise SystemExit("the API process exited at start-up") from None
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the API did not start within 30 s")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux): a figure the machine's load does not skew."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _first_token(client: httpx.Client, body: dict[str, object]) -> float:
    """Seconds from sending the request to the first token event; reads the stream to its end."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/api/agents/chat/stream", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data:") and '"type":"token"' in line:
                first = time.perf_counter() - started
    if first is None:
        raise SystemExit("a streamed answer had no token")
    return first


def measure_overhead(client: httpx.Client, llm: FakeLLM, requests: int) -> list[float]:
    session = client.post("/api/agents/sessions", json={}).json()["session_id"]
    body = {"message": "Why do these providers bill so many long visits?", "session_id": session}
    words = ["The ", "pattern ", "is ", "consistent ", "across ", "providers."]
    for _ in range(10):  # warm up: the capabilities probe, connection pools, lazy imports
        llm.script(Say(words))
        _first_token(client, body)
    overheads = []
    for _ in range(requests):
        llm.script(Say(words))
        client_ttft = _first_token(client, body)
        record = llm.records[-1]
        assert record.last_chunk is not None
        overheads.append((client_ttft - (record.last_chunk - record.received)) * 1000)
    return overheads


def measure_fast_path(client: httpx.Client, requests: int) -> list[float]:
    latencies = []
    for question in FAST_QUESTIONS * max(1, requests // len(FAST_QUESTIONS)):
        started = time.perf_counter()
        reply = client.post("/api/agents/chat", json={"message": question})
        latencies.append((time.perf_counter() - started) * 1000)
        if reply.json()["model_used"] != "fast-path":
            raise SystemExit(f"{question!r} did not take the fast path")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    with tempfile.TemporaryDirectory() as tmp, FakeLLM() as llm:
        url = args.database_url or f"sqlite:///{tmp}/fwa.db"
        key = f"bench:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"
        settings = Settings(
            database_url=url, data_dir=Path(tmp), encryption_key=key, _env_file=None
        )
        engine = engine_for(settings.sqlalchemy_url)
        migrate.upgrade(engine)
        seed(engine)
        token, _ = create_token(
            engine,
            settings,
            name=f"bench-{secrets.token_hex(3)}",
            role="investigator",
            workspaces=["acme"],
        )
        env = {
            "FWA_DATABASE_URL": url,
            "FWA_DATA_DIR": tmp,
            "FWA_ENCRYPTION_KEY": key,
            "FWA_LOG_LEVEL": "WARNING",
            "FWA_LLM_URL": llm.url,
            "FWA_LLM_MODEL": MODEL,
            "FWA_REDIS_URL": "",
        }
        port = _free_port()
        api = _start_api(env, port)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                params={"workspace": "acme"},
                timeout=30,
            ) as client:
                cpu_before = _cpu_seconds(api.pid)
                overheads = measure_overhead(client, llm, args.requests)
                cpu_after = _cpu_seconds(api.pid)
                fast = measure_fast_path(client, args.requests)
        finally:
            api.terminate()
            api.wait(10)
    print(f"assistant benchmark: {args.requests} requests each, database {url.split(':')[0]}")
    results = {
        "overhead": _summary("overhead (first SSE token - LLM's step)", overheads),
        "fast_path": _summary("fast path (chat, answered from data)", fast),
    }
    if cpu_before is not None and cpu_after is not None:
        per_request = (cpu_after - cpu_before) * 1000 / (args.requests + 10)
        print(f"{'API CPU per streamed request (whole answer)':<42} {per_request:6.1f} ms")
    missed = [name for name, row in results.items() if row["p50"] >= TARGET_MS]
    print(json.dumps({k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()}))
    print(
        f"target p50 < {TARGET_MS:.0f} ms: {'missed by ' + ', '.join(missed) if missed else 'met'}"
    )
    if args.check and missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
