"""The chat page: served by the API under a strict CSP, and driven in Debian's headless Chromium
over the DevTools protocol (a small client on ``websockets``): sign in with a token (exchanged for
a session cookie the page cannot read; the token is kept nowhere), create a session, send a
message, watch the answer stream in, check the confidence dot, follow a case link, switch and
delete sessions, reload still signed in, sign out."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.agents.conftest import Api, agent_settings
from tests.agents.fake_llm import MODEL, FakeLLM, Say
from tests.processes import stop_process

pytestmark = pytest.mark.postgres

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_page_is_served_under_a_strict_csp(api: Api) -> None:
    page = api.http.get("/chat")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    assert api.http.get("/chat/app.js").headers["content-type"].startswith("text/javascript")
    assert api.http.get("/chat/app.css").headers["content-type"].startswith("text/css")
    assert api.http.get("/chat/secrets.txt").status_code == 404
    assert api.http.get("/chat/..%2Fpyproject.toml").status_code == 404
    script = api.http.get("/chat/app.js").text
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|eval\(", script)


# --------------------------------------------------------------------------- a tiny CDP client


class Browser:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def eval(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a user would."""
        box = self.eval(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def type(self, selector: str, text: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def console_problems(self) -> list[str]:
        texts = [
            json.dumps(e.get("params", {}))
            for e in self.events
            if e.get("method") in ("Log.entryAdded", "Runtime.exceptionThrown")
        ]
        return [t for t in texts if "Content Security Policy" in t or "exception" in t.lower()]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    profile = tmp_path / "profile"
    process = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # runs as root in CI containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            browser = Browser(ws)
            browser.call("Runtime.enable")
            browser.call("Log.enable")
            browser.call("Page.enable")
            yield browser
    finally:
        stop_process(process)


TRACK_STREAMING = """
window.snapshots = [];
new MutationObserver(() => {
  const bodies = document.querySelectorAll('.message.assistant .body');
  const last = bodies[bodies.length - 1];
  if (last) window.snapshots.push(last.textContent);
}).observe(
  document.getElementById('messages'), {subtree: true, childList: true, characterData: true}
);
"""


def reload(browser: Browser) -> None:
    """Reload the page and wait for the new one (a mark on the old window tells them apart)."""
    browser.eval("window.beforeReload = true")
    browser.call("Page.reload")
    browser.wait_for(
        "!window.beforeReload && document.readyState === 'complete' && "
        "!!document.getElementById('connect')"
    )


# The page disables its buttons while a request runs.
IDLE = "!document.getElementById('new-session').disabled"


@pytest.fixture
def json_llm() -> Iterator[FakeLLM]:
    """A model without native tool calling: its steps come in the JSON step format, whose
    answers stream as they come (a native step streams once it is known not to call a tool)."""
    with FakeLLM(models={MODEL: ["completion"]}) as server:
        yield server


@pytest.mark.slow
def test_chat_in_headless_chromium(api_for: Any, json_llm: FakeLLM, browser: Browser) -> None:
    llm = json_llm
    api: Api = api_for(agent_settings(llm.url))
    browser.call("Page.navigate", url=f"{api.url}/chat")
    browser.wait_for("document.readyState === 'complete' && !!document.getElementById('token')")

    # Sign in with a token: the workspace list and the (empty) session list load.
    token = api.tokens["alice"]
    browser.type("#token", token)
    browser.click("#connect-button")
    browser.wait_for(IDLE)
    assert browser.eval("document.getElementById('workspace').value") == "acme"
    assert browser.eval("document.getElementById('who').textContent") == (
        "Signed in as alice (investigator)"
    )
    # The token is gone from the page and from storage; the session cookie is HttpOnly.
    assert browser.eval("document.getElementById('token').value") == ""
    stored = browser.eval("JSON.stringify({...sessionStorage, ...localStorage})")
    assert token not in stored and token[4:] not in stored
    assert browser.eval("document.cookie") == ""

    # Create a session.
    browser.click("#new-session")
    browser.wait_for("document.querySelectorAll('#sessions li').length === 1")

    # Send a message; the answer streams in token by token.
    # Longer than the opening the assistant holds back until it can tell an answer from junk.
    pieces = ["The ", "riskiest ", "case ", "in this workspace ", "is ", "CASE-000001", " right "]
    pieces += ["now", ", on ", "its ", "score ", "and ", "on ", "the ", "amount ", "paid."]
    llm.script(
        Say(['{"action": "tool", "tool": "query_cases", "arguments": {"limit": 1}}']),
        Say(['{"action": "answer", "answer": "', *pieces, '"}'], delay_s=0.15),
    )
    browser.eval(TRACK_STREAMING)
    browser.type("#message", "Which case is the riskiest right now, and why?")
    browser.click("#send")
    browser.wait_for("!!document.querySelector('.message.assistant .dot')")

    streamed = "".join(pieces)
    partial = [s for s in browser.eval("window.snapshots") if s and s != streamed]
    growing = [s for s in partial if streamed.startswith(s)]
    assert len(set(growing)) >= 3, partial  # several growing states before the last token
    assert browser.eval("document.querySelector('.message.assistant .tools li').textContent") == (
        'query_cases({"limit":1})'
    )

    # The final answer: a yellow dot (medium: the model answered with data) and a case link.
    assert (
        browser.eval("document.querySelector('.message.assistant .dot').className") == "dot medium"
    )
    assert (
        browser.eval(
            "getComputedStyle(document.querySelector('.message.assistant .dot')).backgroundColor"
        )
        == "rgb(230, 184, 0)"
    )
    link = "a.entity[data-entity='CASE-000001']"
    assert browser.eval(f"document.querySelector(\"{link}\").getAttribute('href')") == (
        "/cases/CASE-000001"
    )

    # The link works: the case's data opens beside the chat.
    browser.click(link)
    browser.wait_for("!document.getElementById('detail').hidden")
    detail = browser.wait_for(
        "(t => t.includes('Flagged') && t)(document.getElementById('detail-body').textContent)"
    )
    assert "CASE-000001" in detail and "$12,345.00 paid" in detail

    # A fast-path question gets a green dot.
    browser.wait_for(IDLE)
    browser.type("#message", "pipeline stats")
    browser.click("#send")
    browser.wait_for("document.querySelectorAll('.message.assistant .dot').length === 2")
    assert (
        browser.eval("[...document.querySelectorAll('.message.assistant .dot')].pop().className")
        == "dot high"
    )

    # The session took its title from the first message; switching sessions reloads messages.
    title = browser.eval("document.querySelector('#sessions li .open').textContent")
    assert title == "Which case is the riskiest right now, and why?"
    browser.wait_for(IDLE)
    browser.click("#new-session")
    browser.wait_for("document.querySelectorAll('#sessions li').length === 2")
    assert browser.eval("document.querySelectorAll('.message').length") == 0
    first = browser.eval(
        "[...document.querySelectorAll('#sessions li')].findIndex("
        f"li => li.textContent.includes({json.dumps(title)})) + 1"
    )
    browser.wait_for(IDLE)
    browser.click(f"#sessions li:nth-child({first}) .open")
    browser.wait_for("document.querySelectorAll('.message').length === 4")
    assert browser.eval("document.querySelectorAll('.message.assistant a.entity').length") >= 1

    # Delete it.
    browser.wait_for(IDLE)
    browser.click(f"#sessions li:nth-child({first}) .delete")
    browser.wait_for("document.querySelectorAll('#sessions li').length === 1")

    # A reload keeps the sign-in (the cookie), and writes still pass the CSRF check.
    reload(browser)
    browser.wait_for("document.getElementById('connect').hidden && " + IDLE)
    browser.wait_for("document.querySelectorAll('#sessions li').length === 1")
    browser.click("#new-session")
    browser.wait_for("document.querySelectorAll('#sessions li').length === 2")

    # Sign out: the form is back, and a reload does not sign in again.
    browser.wait_for(IDLE)
    browser.click("#sign-out")
    browser.wait_for("!document.getElementById('connect').hidden")
    assert browser.eval("document.querySelectorAll('#sessions li').length") == 0
    reload(browser)
    browser.wait_for("!document.getElementById('connect-button').disabled")
    assert browser.eval("document.getElementById('account').hidden") is True
    assert browser.console_problems() == []
