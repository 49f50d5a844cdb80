"""API throughput and latency: the bare routes against the full middleware stack.

    .venv/bin/python benchmarks/api.py [--duration 10] [--rounds 3] [--connections 32]

Starts one uvicorn worker on loopback per variant and drives it with ``wrk`` (Debian:
``apt-get install -y wrk``); without wrk it falls back to an httpx load loop in this process,
which competes with the server for CPU, so its figures are lower and noisier.

Each run reports requests/s, p50/p99 latency and the server's CPU time per request (from
/proc): on a machine shared with other work the CPU figure is the steadier of the two.

Variants, interleaved round by round so that background load hits them alike, each round
starting with the next variant (medians reported):

* ``bare``: ``create_app(middleware=False)``: routes, auth and error handling, no middleware.
* ``full``: the whole stack, rate limiter on Redis (limit set out of reach so every request is
  checked and none refused), JSON access log to a file.
* ``full-no-limiter``: the whole stack without Redis, so the limiter is off: the difference to
  ``full`` is what the limiter costs.

``--scenario queue``: the investigators' case queue. 100,000 cases (two claims each, one or two
rules' hits on each claim) are loaded with COPY into bench-1, then the first page of
``/api/cases`` (with its total and counts by risk level) is timed through the whole stack, one
request at a time, for a few filter combinations. Target: p50 under 50 ms each.

Needs PostgreSQL (a throwaway database is created through ``--pg-admin-dsn`` and dropped, unless
``--database-url`` names a migrated one) and Redis (``--redis-url``; keys under a random prefix,
deleted afterwards). Targets: full keeps >= 80% of bare throughput on /api/health and >= 70% on
the authenticated routes (/api/workspaces, and /api/cases: the first page of 1,000 cases).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    authenticated: bool
    min_ratio: float  # full / bare throughput


BENCH_CASES = 1000  # in bench-0, for the cases list
TARGETS = [
    Target("health (cached)", "/api/health", authenticated=False, min_ratio=0.80),
    Target("workspaces (auth)", "/api/workspaces", authenticated=True, min_ratio=0.70),
    # The first page (50) of 1,000 cases, with its total: what the case queue loads.
    Target("cases (auth)", "/api/cases?workspace=bench-0", authenticated=True, min_ratio=0.70),
]
VARIANTS = ("bare", "full", "full-no-limiter")

QUEUE_CASES = 100_000  # in bench-1
QUEUE_RULE = "RULE-MED-003"  # cited by about a quarter of the cases
QUEUE_RARE_RULE = "RULE-MED-012"  # by about one in a hundred
QUEUE_TARGET_P50_MS = 50.0
# The first page of the queue as investigators load it.
QUEUE_TARGETS = [
    Target("queue", "/api/cases?workspace=bench-1", True, 0),
    Target(
        "queue open+high",
        "/api/cases?workspace=bench-1&status=open&risk_level=high",
        True,
        0,
    ),
    Target("queue rule", f"/api/cases?workspace=bench-1&rule_id={QUEUE_RULE}", True, 0),
    Target("queue rare rule", f"/api/cases?workspace=bench-1&rule_id={QUEUE_RARE_RULE}", True, 0),
    Target("queue by amount", "/api/cases?workspace=bench-1&sort=amount", True, 0),
]


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float = 0.0  # server CPU time per request: steadier than req/s on a shared machine

    HEADER = f"{'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}"

    def __str__(self) -> str:
        return f"{self.rps:8.0f} {self.p50_ms:8.2f} {self.p99_ms:8.2f} {self.cpu_us:11.0f}"


Load = Callable[[str, dict[str, str], float, int], tuple[Result, int]]


# --------------------------------------------------------------------------- the server side


def serve(variant: str, port: int, redis_prefix: str) -> None:
    """Run in a child process: one uvicorn worker serving the chosen variant."""
    import uvicorn

    from fwa_api.app import create_app

    app = create_app(middleware=variant != "bare", redis_prefix=redis_prefix)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


@dataclass(frozen=True)
class Running:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(variant: str, env: dict[str, str], prefix: str, log: Path) -> Iterator[Running]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    child_env = {**os.environ, **env}
    if variant == "full-no-limiter":
        child_env.pop("FWA_REDIS_URL", None)
    command = [sys.executable, __file__, "serve", variant, str(port), prefix]
    with log.open("ab") as stderr:
        process = subprocess.Popen(command, env=child_env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/api/health", timeout=5)
                break
            if process.poll() is not None:
                raise SystemExit(f"{variant} server exited; see {log}")
            time.sleep(0.1)
        yield Running(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


# --------------------------------------------------------------------------- load generators

_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_COUNT = re.compile(r"(\d+) requests in")
_WRK_PCT = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> tuple[Result, int]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise SystemExit(f"non-2xx answers from {url}:\n{output}")
    rps = float(_WRK_RPS.search(output).group(1))  # type: ignore[union-attr]
    count = int(_WRK_COUNT.search(output).group(1))  # type: ignore[union-attr]
    pct = {p: float(v) * _UNIT_MS[u] for p, v, u in _WRK_PCT.findall(output)}
    return Result(rps, pct["50"], pct["99"]), count


def run_httpx(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> tuple[Result, int]:
    async def drive() -> tuple[int, list[float]]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(headers=headers, limits=limits) as client:

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    response = await client.get(url)
                    latencies.append((time.perf_counter() - start) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{response.status_code} from {url}")

            await asyncio.gather(*(worker() for _ in range(connections)))
        return len(latencies), latencies

    count, latencies = asyncio.run(drive())
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    return Result(count / seconds, p50, p99), count


def measure(
    load: Load,
    running: Running,
    target: Target,
    headers: dict[str, str],
    args: argparse.Namespace,
) -> Result:
    load(running.url + target.path, headers, 2, args.connections)  # warm up
    before = running.cpu_seconds()
    result, count = load(running.url + target.path, headers, args.duration, args.connections)
    result.cpu_us = (running.cpu_seconds() - before) / count * 1e6
    return result


# --------------------------------------------------------------------------- data


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.database_url:
        yield args.database_url
        return
    from tests.conftest import migrated_database

    with migrated_database("fwa_bench", args.pg_admin_dsn) as url:
        yield url


def case_proposals(count: int) -> Any:
    """``count`` case proposals as the pipeline makes them, explanations of a realistic size."""
    import random

    import pandas as pd

    rng = random.Random(7)
    bands = ((90, "critical"), (70, "high"), (40, "medium"), (0, "low"))
    rows = []
    for n in range(count):
        score = round(rng.uniform(70, 100), 2)
        rules = [f"RULE-MED-{rng.randint(1, 14):03d}" for _ in range(3)]
        rows.append(
            {
                "subject_type": "provider",
                "subject_id": f"{1_000_000_000 + n}",
                "risk_score": score,
                "risk_level": next(level for floor, level in bands if score >= floor),
                "override": None,
                "explanation": {
                    "summary": f"provider {1_000_000_000 + n} flagged by {len(rules)} rules",
                    "rules": [
                        {
                            "rule_id": rule,
                            "hits": rng.randint(1, 40),
                            "thresholds": {"z": 3.0, "min_peers": 10},
                            "samples": [{"claim_id": f"C{n}-{i}", "z": 4.2} for i in range(3)],
                        }
                        for rule in rules
                    ],
                },
                "flagged_billed": rng.uniform(1_000, 90_000),
                "flagged_paid": rng.uniform(500, 70_000),
                "claims": [],
                "evidence_hash": f"bench-{n}",
                "qualifies": True,
            }
        )
    return pd.DataFrame(rows)


def seed(url: str) -> str:
    """Five workspaces, ``BENCH_CASES`` cases in bench-0 (opened by the store's upsert, as a
    run does), a viewer token for three of them; returns the token."""
    from fwa_api.auth import create_token
    from fwa_pipeline.settings import Settings
    from fwa_pipeline.store.cases import upsert_cases
    from fwa_pipeline.store.db import engine_for, session_scope
    from fwa_pipeline.store.models import Workspace

    engine = engine_for(url)
    with session_scope(engine) as session:
        workspaces = [Workspace(name=f"bench-{i}") for i in range(5)]
        session.add_all(workspaces)
        session.flush()
        upsert_cases(session, workspaces[0].id, "bench-run", case_proposals(BENCH_CASES))
    token, _ = create_token(
        engine,
        Settings(environment="test", database_url=url, _env_file=None),  # the server's secret key
        name=f"bench-{secrets.token_hex(3)}",
        role="viewer",
        workspaces=["bench-0", "bench-1", "bench-2"],
    )
    engine.dispose()
    return token


def seed_queue(url: str, count: int = QUEUE_CASES) -> None:
    """``count`` cases in bench-1 with their claims and rule hits, loaded with COPY as the
    pipeline bulk-loads (ids given here; the case id sequence is moved past them)."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import select, text

    from fwa_pipeline.store.bulk import copy_frames, vacuum_after_load, wire_table
    from fwa_pipeline.store.db import engine_for
    from fwa_pipeline.store.models import (
        CaseClaim,
        InvestigationCase,
        RuleHit,
        Workspace,
    )

    rng = np.random.default_rng(11)
    engine = engine_for(url)
    with engine.begin() as connection:
        workspace = connection.execute(
            select(Workspace.id).where(Workspace.name == "bench-1")
        ).scalar_one()
        first = connection.execute(
            text("SELECT coalesce(max(id), 0) + 1 FROM investigation_cases")
        ).scalar_one()
        ids = np.arange(first, first + count)
        score = rng.uniform(0, 100, count).round(2)
        level = np.select(
            [score >= 90, score >= 70, score >= 40], ["critical", "high", "medium"], "low"
        )
        opened = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
            rng.integers(0, 300 * 86_400, count), unit="s"
        )
        cases = pd.DataFrame(
            {
                "id": ids,
                "case_number": [f"CASE-{n:07d}" for n in ids],
                "workspace_id": workspace,
                "subject_type": "provider",
                "subject_id": (2_000_000_000 + ids).astype(str),
                "risk_score": score,
                "risk_level": level,
                "explanation": '{"summary": "flagged by the benchmark"}',
                "flagged_billed": rng.uniform(1_000, 90_000, count).round(2),
                "flagged_paid": rng.uniform(500, 70_000, count).round(2),
                "status": rng.choice(
                    ["open", "under_review", "escalated", "closed"], count, p=[0.6, 0.2, 0.05, 0.15]
                ),
                "assignee": rng.choice(np.array(["ana", "ben", None], dtype=object), count),
                "run_id": "bench-run",
                "evidence_hash": ids.astype(str),
                "created_at": opened,
                "updated_at": opened,
            }
        )
        # Two claims per case, and on each claim a hit of one rule, sometimes two.
        claim_pk = np.arange(1, 2 * count + 1)
        claims = pd.DataFrame(
            {
                "case_id": np.repeat(ids, 2),
                "claim_type": "medical",
                "claim_pk": claim_pk,
                "claim_id": [f"BCLM-{n}" for n in claim_pk],
            }
        )
        # Eleven rules alike, each cited by about a quarter of the cases; QUEUE_RARE_RULE by
        # about one in a hundred.
        rules = np.arange(1, 13)
        odds = np.where(rules == int(QUEUE_RARE_RULE[-3:]), 0.05, 1.0)
        odds /= odds.sum()
        hit_claims = np.concatenate([claim_pk, claim_pk[rng.random(len(claim_pk)) < 0.5]])
        hits = pd.DataFrame(
            {
                "workspace_id": workspace,
                "run_id": "bench-run",
                "rule_id": [
                    f"RULE-MED-{n:03d}" for n in rng.choice(rules, len(hit_claims), p=odds)
                ],
                "rule_version": "1.0",
                "claim_type": "medical",
                "claim_pk": hit_claims,
                "claim_id": [f"BCLM-{n}" for n in hit_claims],
                "subject_type": "provider",
                "subject_id": (2_000_000_000 + ids[(hit_claims - 1) // 2]).astype(str),
                "severity": rng.uniform(0.5, 1, len(hit_claims)).round(3),
                "weight": 5.0,
                "evidence": "{}",
            }
        )
        copy_frames(connection, wire_table(InvestigationCase.__table__, ["explanation"]), [cases])
        copy_frames(connection, CaseClaim.__table__, [claims])
        copy_frames(connection, wire_table(RuleHit.__table__, ["evidence"], ["id"]), [hits])
        connection.execute(
            text("SELECT setval(pg_get_serial_sequence('investigation_cases', 'id'), :n)"),
            {"n": int(ids[-1])},
        )
    # As the pipeline settles its loads (statistics, visibility map for index-only scans).
    vacuum_after_load(
        engine,
        {
            InvestigationCase.__table__: len(cases),
            CaseClaim.__table__: len(claims),
            RuleHit.__table__: len(hits),
        },
    )
    engine.dispose()


def drop_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    with contextlib.closing(client):
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default=None, help="a migrated database to use")
    parser.add_argument("--pg-admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--scenario", choices=("middleware", "queue"), default="middleware")
    args = parser.parse_args()
    if args.scenario == "queue":
        sys.exit(0 if queue(args) else 1)

    load: Load = run_wrk if shutil.which("wrk") else run_httpx
    generator = "wrk" if load is run_wrk else "httpx (wrk not found)"
    print(
        f"load generator: {generator}; {args.rounds} rounds x {args.duration:.0f} s per run, "
        f"{args.connections} connections"
    )
    prefix = f"fwa-bench-{secrets.token_hex(4)}:"
    results: dict[tuple[str, str], list[Result]] = {}
    with database(args) as url, tempfile.TemporaryDirectory() as scratch:
        auth = {"Authorization": f"Bearer {seed(url)}"}
        env = {
            "FWA_ENVIRONMENT": "test",
            "FWA_DATABASE_URL": url,
            "FWA_REDIS_URL": args.redis_url,
            "FWA_RATE_LIMIT_PER_MINUTE": str(10**9),  # every request checked, none refused
            "FWA_OLLAMA_URL": "http://127.0.0.1:9",  # nothing there; health caches the verdict
            "FWA_LOG_LEVEL": "INFO",
        }
        try:
            for round_ in range(1, args.rounds + 1):
                # Each round starts with a different variant, so that drift in the machine's
                # speed over a round does not always favour the same one.
                shift = (round_ - 1) % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    log = Path(scratch) / f"{variant}.log"
                    with server(variant, env, prefix, log) as running:
                        for target in TARGETS:
                            headers = auth if target.authenticated else {}
                            result = measure(load, running, target, headers, args)
                            results.setdefault((variant, target.name), []).append(result)
                            print(
                                f"  round {round_} {variant:<16} {target.name:<18} {result}",
                                flush=True,
                            )
        finally:
            drop_keys(args.redis_url, prefix)
    sys.exit(0 if report(results) else 1)


def queue(args: argparse.Namespace) -> bool:
    """The queue scenario: p50/p99 of each first page, one request at a time on the full stack
    (latency, not throughput); True when every p50 is under the target."""
    print(f"queue: {QUEUE_CASES:,} cases; {args.rounds} rounds x {args.duration:.0f} s per page")
    prefix = f"fwa-bench-{secrets.token_hex(4)}:"
    serial = argparse.Namespace(**{**vars(args), "connections": 1})
    results: dict[str, list[Result]] = {}
    with database(args) as url, tempfile.TemporaryDirectory() as scratch:
        auth = {"Authorization": f"Bearer {seed(url)}"}
        started = time.perf_counter()
        seed_queue(url)
        print(f"seeded with COPY in {time.perf_counter() - started:.1f} s", flush=True)
        env = {
            "FWA_ENVIRONMENT": "test",
            "FWA_DATABASE_URL": url,
            "FWA_REDIS_URL": args.redis_url,
            "FWA_RATE_LIMIT_PER_MINUTE": str(10**9),
            "FWA_OLLAMA_URL": "http://127.0.0.1:9",
            "FWA_LOG_LEVEL": "INFO",
        }
        try:
            with server("full", env, prefix, Path(scratch) / "queue.log") as running:
                for round_ in range(1, args.rounds + 1):
                    for target in QUEUE_TARGETS:
                        result = measure(run_httpx, running, target, auth, serial)
                        results.setdefault(target.name, []).append(result)
                        print(f"  round {round_} {target.name:<16} {result}", flush=True)
        finally:
            drop_keys(args.redis_url, prefix)
    print(f"\nmedians\n{'page':<16} {Result.HEADER}  target p50 < {QUEUE_TARGET_P50_MS:.0f} ms")
    met = True
    for name, runs in results.items():
        fields = ("rps", "p50_ms", "p99_ms", "cpu_us")
        median = Result(*(statistics.median(getattr(r, f) for r in runs) for f in fields))
        ok = median.p50_ms < QUEUE_TARGET_P50_MS
        met &= ok
        print(f"{name:<16} {median}  {'ok' if ok else 'MISSED'}")
    return met


def report(results: dict[tuple[str, str], list[Result]]) -> bool:
    """Print the medians and the ratios; True when every target is met."""

    def median(variant: str, target: str) -> Result:
        runs = results[(variant, target)]
        fields = ("rps", "p50_ms", "p99_ms", "cpu_us")
        return Result(*(statistics.median(getattr(r, f) for r in runs) for f in fields))

    print(f"\nmedians\n{'route':<18} {'variant':<16} {Result.HEADER}")
    met = True
    for target in TARGETS:
        for variant in VARIANTS:
            print(f"{target.name:<18} {variant:<16} {median(variant, target.name)}")
        bare, full = median("bare", target.name), median("full", target.name)
        ratio = full.rps / bare.rps
        met &= ratio >= target.min_ratio
        print(
            f"{target.name:<18} full/bare: throughput {ratio:.1%} (target >= "
            f"{target.min_ratio:.0%}: {'ok' if ratio >= target.min_ratio else 'MISSED'}), "
            f"by server CPU per request {bare.cpu_us / full.cpu_us:.1%}"
        )
    for target in TARGETS:
        if target.authenticated:  # health and metrics are exempt from the limiter
            full, off = median("full", target.name), median("full-no-limiter", target.name)
            print(
                f"rate limiter on {target.name}: p50 {full.p50_ms - off.p50_ms:+.2f} ms, "
                f"p99 {full.p99_ms - off.p99_ms:+.2f} ms, "
                f"CPU {full.cpu_us - off.cpu_us:+.0f} us/request, "
                f"throughput {full.rps / off.rps - 1:+.1%}"
            )
    return met


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
