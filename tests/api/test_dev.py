"""``fwa dev`` end to end: the whole local stack on the embedded default (a fresh SQLite store and a
copy of the repository's Dagster home), a batch uploaded over HTTP, a job enqueued and run by the
daemon, its run listed; then SIGTERM, and no process of the stack may survive."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fwa_pipeline.synth import generate
from tests.api.conftest import bearer, free_port
from tests.api.test_cli import run
from tests.conftest import make_key

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = "acme"
# Generous: two cores shared with other work, Dagster code servers and run workers to start.
START_S = 300
JOB_S = 900


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid == frontier[-1]]
        frontier.pop()
        found.update(children)
        frontier.extend(children)
    return found


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            result = check()
            if result:
                return result
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    api: str
    ui: str
    env: dict[str, str]
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        "FWA_ENVIRONMENT": "test",
        "FWA_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'fwa.db'}",
        "FWA_DATA_DIR": str(tmp_path / "data"),
        "FWA_ENCRYPTION_KEY": make_key(),
        "FWA_REDIS_URL": "",
        "FWA_RATE_LIMIT_PER_MINUTE": "100000",
        "FWA_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
        "DAGSTER_HOME": str(home),
    }
    api_port, ui_port = free_port(), free_port()
    output = tmp_path / "fwa-dev.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "fwa_api.cli", "dev"),
                *("--api-port", str(api_port), "--dagster-port", str(ui_port)),
                *("--workspace-file", str(ROOT / "workspace.yaml")),
            ],
            env={**os.environ, **env},
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(
        process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}", env, output
    )
    try:
        yield stack
    finally:
        if process.poll() is None:  # the test failed before stopping it
            process.send_signal(signal.SIGTERM)
            process.wait(60)


def test_fwa_dev_runs_the_stack_and_stops_all_of_it(stack: Stack, tmp_path: Path) -> None:
    def up(url: str) -> bool:
        assert stack.process.poll() is None, stack.log()
        return httpx.get(url, timeout=5).status_code == 200

    wait_for("the API", lambda: up(f"{stack.api}/api/health"), START_S)
    wait_for("the Dagster UI", lambda: up(f"{stack.ui}/server_info"), START_S)
    printed = stack.log()
    assert "api (pid" in printed and f"on {stack.api}" in printed, printed[-5000:]
    assert f"on {stack.ui}" in printed and "dagster daemon (pid" in printed

    code, token, err = run(
        stack.env, "token", "create", "--name", "dev", "--role", "investigator",
        "--workspace", WORKSPACE,
    )  # fmt: skip
    assert code == 0, err
    headers = bearer(token.strip())
    batch = generate(tmp_path / "batch", n_claims=100, seed=11)
    assert batch
    files = [
        ("files", (path.name, path.read_bytes(), "text/csv"))
        for path in sorted((tmp_path / "batch").iterdir())
    ]
    params = {"workspace": WORKSPACE}
    with httpx.Client(base_url=stack.api, headers=headers, timeout=60) as http:
        landed = http.post("/api/uploads", params=params, files=files)
        assert landed.status_code == 201, landed.text

        # Reprocessing: the batch sensor may run the upload's batch first (runs of a workspace
        # queue one at a time), and the job's own run must have claims to report either way.
        enqueued = http.post("/api/pipeline/enqueue", params=params, json={"force_reprocess": True})
        assert enqueued.status_code == 202, enqueued.text
        job_id = enqueued.json()["job_id"]

        def finished() -> dict[str, Any] | None:
            job = http.get(f"/api/pipeline/jobs/{job_id}", params=params).json()
            return job if job["status"] in ("success", "failure", "canceled", "failed") else None

        job = wait_for("the job to end", finished, JOB_S, every_s=2)
        assert job["status"] == "success", (job, stack.log()[-5000:])
        assert job["phase"] == "done" and job["claims_processed"] > 0

        def recorded() -> dict[str, Any] | None:
            runs = http.get("/api/pipeline/runs", params=params).json()["runs"]
            mine = [r for r in runs if r["run_id"] == job["dagster_run_id"]]
            return mine[0] if mine and mine[0]["status"] == "success" else None

        run_row = wait_for("the run's PipelineRun row", recorded, START_S, every_s=2)
        assert run_row["stats"]["claims_scored"] > 0
        detail = http.get(f"/api/pipeline/runs/{run_row['run_id']}", params=params).json()
        assert detail["config_snapshot"]["quality"]["mode"] == "skip_invalid"

    processes = descendants(stack.process.pid)
    assert len(processes) > 3, "the three services and what they started"
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(120) == 0, stack.log()
    wait_for(
        "every process of the stack to end",
        lambda: not any(alive(pid) for pid in processes),
        60,
        every_s=0.5,
    )
