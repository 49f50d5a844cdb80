"""``fwa dev``: the whole local stack as child processes of one command, on whatever store the
settings name (the embedded default: SQLite under the data directory, Dagster home
``./dagster_home``).

* the Dagster webserver (the UI: assets, checks, runs, sensors);
* the Dagster daemon: sensors turn landed batches and enqueued jobs into runs, the run queue
  launches them;
* the API (``fwa serve``).

Each child leads a process group of its own, so stopping it also stops what it started (code
servers, run workers), and a Ctrl-C in the terminal reaches only this process, which then stops
every group: SIGTERM, then SIGKILL for whatever is left after a grace period. If one child dies,
the others are stopped too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# How long children get to exit after SIGTERM before they are killed.
GRACE_S = 15.0


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    url: str | None  # where it listens, if it does


@dataclass
class Child:
    service: Service
    process: subprocess.Popen[bytes]


def services(host: str, api_port: int, dagster_port: int, workspace_file: Path) -> list[Service]:
    scripts = Path(sys.executable).parent  # the Dagster commands of this environment
    workspace = ["-w", str(workspace_file)]
    return [
        Service(
            "dagster webserver",
            [str(scripts / "dagster-webserver"), "-h", host, "-p", str(dagster_port), *workspace],
            f"http://{host}:{dagster_port}",
        ),
        Service("dagster daemon", [str(scripts / "dagster-daemon"), "run", *workspace], None),
        Service(
            "api",
            [sys.executable, "-m", "fwa_api.cli", "serve", "--host", host, "--port", str(api_port)],
            f"http://{host}:{api_port}",
        ),
    ]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal still exists
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop(children: Sequence[Child], grace_s: float = GRACE_S) -> None:
    """SIGTERM every child's process group, wait for the groups to empty, SIGKILL the rest."""
    for child in children:
        _signal_group(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    # A leader may be gone while processes it started are still exiting.
    while time.monotonic() < deadline and any(_group_alive(c.process.pid) for c in children):
        time.sleep(0.1)
    for child in children:
        if _group_alive(child.process.pid):
            _signal_group(child.process.pid, signal.SIGKILL)
        child.process.wait()


def run(stack: Sequence[Service], echo: Callable[[str], None]) -> int:
    """Start ``stack``, wait for SIGINT or SIGTERM (0) or for a child to exit (1), stop all."""
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    try:
        for service in stack:
            children.append(
                Child(service, subprocess.Popen(service.command, start_new_session=True))
            )
            where = f" on {service.url}" if service.url else ""
            echo(f"started {service.name} (pid {children[-1].process.pid}){where}")
        echo("Ctrl-C stops everything")
        while not stopping.wait(0.5):
            ended = next((c for c in children if c.process.poll() is not None), None)
            if ended is not None:
                echo(f"{ended.service.name} exited with {ended.process.returncode}; stopping")
                return 1
        return 0
    finally:
        stop(children)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
