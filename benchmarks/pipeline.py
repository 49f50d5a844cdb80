"""Pipeline timings on PostgreSQL: a full run, its I/O floor, and a 1% batch on top.

    python benchmarks/pipeline.py [--claims 1000000] [--batch-share 0.01] [--seed 42]
                                  [--dagster {postgres,memory}] [--admin-dsn postgresql://...]
                                  [--compute {local,dask,both}] [--workers 2]

Synthesises ``claims x (1 + batch-share)`` claims (sorted by date) and splits them: the first
``claims`` land as one batch, the latest ``claims x batch-share`` later as a second batch. Prints:

* full run: the pipeline, in-process, over the first batch (every claim new);
* I/O floor: the same run's unavoidable I/O alone: reading every claim with the columns the
  run reads, and writing its hits, scores, held claims and cases (one transaction, rolled
  back);
* 1% batch: the second batch landed on the processed claims, run incrementally;
* empty run: the same job once more with nothing landed: what a run of this asset graph costs
  however little it processes (Dagster's per-step and per-run work, and each step's fixed
  reads), the floor under any batch's time; and what the batch and the full run cost above it;
* Dagster's floor: the same asset graph (keys, dependencies, checks, partition) with steps
  that do nothing, on the same instance: the part of any run that is Dagster's alone;

with the targets (full < 60 s, full <= 3x the floor, 1% <= 5% of full) and each run's step
times. ``--dagster postgres`` (default) keeps Dagster's runs and events in PostgreSQL with the
production dagster.yaml, as deployed; ``memory`` leaves Dagster's storage out of the figures.
Databases are created for the run and dropped after.

``--compute`` says where the runs compute: ``local`` (default) in process, ``dask`` on a
``LocalCluster`` of ``--workers`` processes (one thread each) that each run starts and stops
(``FWA_COMPUTE=dask``, ``FWA_DASK_WORKERS``), ``both`` each of them in a process of its own,
then the one against the other with the scale-out targets (Dask's full run at least 1.5x
faster; Dask's largest process at most 40% of local's peak). Each run also prints the peak
resident memory of its process (the driver) and of the largest process it started (a Dask
worker or its nanny), sampled while it runs: ``ru_maxrss`` cannot be reset between runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import psutil
import psycopg
from sqlalchemy.orm import Session

from fwa_pipeline.definitions import build_defs
from fwa_pipeline.defs.assets import ASSETS
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.domain.cases import case_proposals
from fwa_pipeline.domain.config import default_config
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.runs.launch import run_pipeline
from fwa_pipeline.settings import Settings
from fwa_pipeline.steps.claims import flagged_claims, run_claims
from fwa_pipeline.steps.frame_files import load
from fwa_pipeline.store import migrate
from fwa_pipeline.store.cases import upsert_cases
from fwa_pipeline.store.claims import read_new_claims, run_batches, workspace_id
from fwa_pipeline.store.crypto import generate_key
from fwa_pipeline.store.db import get_engine
from fwa_pipeline.store.models import Workspace
from fwa_pipeline.store.results import write_run_results
from fwa_pipeline.synth import generate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_DSN = os.environ.get(
    "FWA_BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CLAIM_FILES = ("medical_claims.csv", "pharmacy_claims.csv")
WORKSPACE = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--batch-share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dagster", choices=["postgres", "memory"], default="postgres")
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    parser.add_argument("--compute", choices=["local", "dask", "both"], default="local")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    # Where a mode run by ``both`` leaves its figures for the comparison.
    parser.add_argument("--summary", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compute == "both":
        compare_modes(args)
    else:
        benchmark(args)


def compare_modes(args: argparse.Namespace) -> None:
    """Each mode in a fresh process (a clean peak memory), then the one against the other."""
    forwarded = [
        *("--claims", str(args.claims), "--batch-share", str(args.batch_share)),
        *("--seed", str(args.seed), "--dagster", args.dagster, "--admin-dsn", args.admin_dsn),
        *("--workers", str(args.workers)),
    ]
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fwa-bench-modes-") as tmp:
        for mode in ("local", "dask"):
            print(f"=== {mode} ===", flush=True)
            summary = Path(tmp) / f"{mode}.json"
            command = [sys.executable, __file__, *forwarded, "--compute", mode]
            subprocess.run([*command, "--summary", str(summary)], check=True)
            figures[mode] = json.loads(summary.read_text())
            print(flush=True)
    local, dask = figures["local"], figures["dask"]
    print(f"=== local against Dask ({args.workers} workers, 1 thread each) ===")
    for label, key in (("full run", "full"), ("batch run", "batch")):
        print(
            f"{label}: local {local[key]['seconds']:.1f} s, Dask {dask[key]['seconds']:.1f} s "
            f"({local[key]['seconds'] / dask[key]['seconds']:.2f}x as fast on Dask); "
            f"largest process: local {mib(largest(local[key]))}, Dask {mib(largest(dask[key]))} "
            f"(driver {mib(dask[key]['driver'])}, largest worker {mib(dask[key]['workers'])})"
        )
    speedup = local["full"]["seconds"] / dask["full"]["seconds"]
    memory = largest(dask["full"]) / largest(local["full"])
    print("\ntargets")
    verdict("Dask full run >= 1.5x faster than local", speedup >= 1.5, f"{speedup:.2f}x")
    verdict("Dask's largest process <= 40% of local's peak", memory <= 0.4, f"{memory:.1%}")


def benchmark(args: argparse.Namespace) -> None:
    # Every run reads where it computes from the environment, as a deployed run does.
    os.environ["FWA_COMPUTE"] = args.compute
    os.environ["FWA_DASK_WORKERS"] = str(args.workers)
    os.environ.pop("FWA_DASK_SCHEDULER_ADDRESS", None)
    extra = round(args.claims * args.batch_share)

    with (
        tempfile.TemporaryDirectory(prefix="fwa-bench-") as tmp,
        databases(args.admin_dsn, 2) as (store_url, dagster_db),
    ):
        tmp_path = Path(tmp)
        settings = Settings(
            environment="test",
            database_url=store_url,
            data_dir=tmp_path / "data",
            encryption_key=generate_key("bench"),
            max_upload_mb=4096,
            max_upload_rows=10 * args.claims,
            _env_file=None,
        )
        # Synthesised and loaded in a process of its own: this one's memory stays the run's.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            prepared = child.submit(prepare, settings, tmp_path, args.claims, extra, args.seed)
            second = prepared.result()
        engine = get_engine(settings)
        store = StoreResource.from_settings(settings)
        with instance(args.dagster, args.admin_dsn, dagster_db, tmp_path) as dagster:
            full_s, full, full_rss = timed_run(dagster, store)
            report("full run", full_s, args.claims, dagster, full.run_id, full_rss)
            claims_s, cases_s = io_floor(settings, full.run_id)
            floor_s = claims_s + cases_s
            print(
                f"I/O floor: {floor_s:.1f} s (read the claims and write hits, scores and held "
                f"claims {claims_s:.1f} s; write the cases {cases_s:.1f} s)"
            )

            started = time.perf_counter()
            load_directory(engine, settings, WORKSPACE, second)
            print(f"\nload {extra:,} claims: {time.perf_counter() - started:.1f} s")
            batch_s, batch, batch_rss = timed_run(dagster, store)
            report(
                f"{args.batch_share:.0%} batch run",
                batch_s,
                extra,
                dagster,
                batch.run_id,
                batch_rss,
            )
            empty_s, empty, empty_rss = timed_run(dagster, store)
            report("\nempty run (nothing landed)", empty_s, 0, dagster, empty.run_id, empty_rss)
            print(f"  {empty_s / full_s:.1%} of the full run")
            # What the batch's claims cost beyond it, against the same for the million.
            print(
                f"  above it: the batch {batch_s - empty_s:.1f} s, the full run "
                f"{full_s - empty_s:.1f} s ({(batch_s - empty_s) / (full_s - empty_s):.1%})"
            )

            dagster_s = dagster_floor(dagster)
            print(
                f"\nDagster's floor (the same {len(ASSETS)} assets, each doing nothing): "
                f"{dagster_s:.2f} s, {dagster_s / full_s:.1%} of the full run"
            )

            print("\ntargets")
            verdict("full run < 60 s", full_s < 60, f"{full_s:.1f} s")
            verdict("full run <= 3x I/O floor", full_s <= 3 * floor_s, f"{full_s / floor_s:.2f}x")
            verdict(
                f"{args.batch_share:.0%} batch <= 5% of full run",
                batch_s <= 0.05 * full_s,
                f"{batch_s / full_s:.1%}",
            )
            if args.summary:
                args.summary.write_text(
                    json.dumps(
                        {
                            "full": {"seconds": full_s, **full_rss},
                            "batch": {"seconds": batch_s, **batch_rss},
                        }
                    )
                )


def prepare(settings: Settings, tmp: Path, claims: int, extra: int, seed: int) -> Path:
    """Synthesise ``claims + extra`` claims, load the first ``claims`` into the migrated store
    and return the directory of the ``extra`` later ones."""
    started = time.perf_counter()
    generate(tmp / "all", n_claims=claims + extra, seed=seed)
    first, second = split(tmp / "all", tmp, extra)
    print(f"synth {claims + extra:,} claims: {time.perf_counter() - started:.1f} s")
    engine = get_engine(settings)
    migrate.upgrade(engine)
    started = time.perf_counter()
    load_directory(engine, settings, WORKSPACE, first)
    print(f"load {claims:,} claims: {time.perf_counter() - started:.1f} s\n", flush=True)
    return second


@contextmanager
def databases(admin_dsn: str, count: int) -> Iterator[list[str]]:
    """``count`` fresh databases (SQLAlchemy URLs for the first, names after), dropped after."""
    names = [f"fwa_bench_{secrets.token_hex(4)}" for _ in range(count)]
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield [f"{admin_dsn.rsplit('/', 1)[0]}/{names[0]}", *names[1:]]
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def instance(kind: str, admin_dsn: str, database: str, tmp: Path) -> Iterator[dg.DagsterInstance]:
    if kind == "memory":
        with dg.DagsterInstance.ephemeral() as ephemeral:
            yield ephemeral
        return
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    os.environ.update(
        DAGSTER_PG_HOST=str(info.get("host", "127.0.0.1")),
        DAGSTER_PG_PORT=str(info.get("port", "5432")),
        DAGSTER_PG_USERNAME=str(info.get("user", "postgres")),
        DAGSTER_PG_PASSWORD=str(info.get("password", "")),
        DAGSTER_PG_DB=database,
    )
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "production" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as production:
        yield production


def dagster_floor(dagster: dg.DagsterInstance, runs: int = 3) -> float:
    """The median time of the pipeline's asset graph run with steps that do nothing: the same
    keys, dependencies, checks and partitions, on the same instance and workspace partition."""
    graph = build_defs().resolve_asset_graph()

    def no_op(key: dg.AssetKey) -> dg.AssetsDefinition:
        node = graph.get(key)
        checks = [dg.AssetCheckSpec(c.name, asset=key) for c in node.check_keys]

        @dg.asset(
            key=key,
            deps=list(node.parent_keys),
            partitions_def=WORKSPACES,
            check_specs=checks,
        )
        def _step() -> Iterator[dg.MaterializeResult]:
            yield dg.MaterializeResult(
                check_results=[dg.AssetCheckResult(check_name=c.name, passed=True) for c in checks]
            )

        return _step

    job = dg.Definitions(
        assets=[no_op(key) for key in graph.materializable_asset_keys],
        jobs=[dg.define_asset_job("dagster_floor", executor_def=dg.in_process_executor)],
    ).resolve_job_def("dagster_floor")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        job.execute_in_process(
            instance=dagster,
            partition_key=WORKSPACE,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def split(source: Path, tmp: Path, extra: int) -> tuple[Path, Path]:
    """The generated batch as two: everything but the latest ``extra`` claims (split across
    the claim files in proportion), then those claims alone with their labels. The claim files
    are one claim a line, sorted by date."""
    first, second = tmp / "first", tmp / "second"
    shutil.copytree(source, first)
    second.mkdir()
    files = {name: (source / name).read_text().splitlines(keepends=True) for name in CLAIM_FILES}
    total = sum(len(lines) - 1 for lines in files.values())
    moved: set[str] = set()
    remaining = extra
    for index, (name, lines) in enumerate(files.items()):
        header, rows = lines[0], lines[1:]
        take = remaining if index == len(files) - 1 else round(extra * len(rows) / total)
        remaining -= take
        keep = len(rows) - take
        (first / name).write_text(header + "".join(rows[:keep]))
        (second / name).write_text(header + "".join(rows[keep:]))
        moved.update(row.split(",", 1)[0] for row in rows[keep:])
    labels = pd.read_csv(source / "labels.csv", dtype=str)
    later = labels["claim_id"].isin(moved)
    labels[~later].to_csv(first / "labels.csv", index=False)
    if later.any():
        labels[later].to_csv(second / "labels.csv", index=False)
    return first, second


def timed_run(
    dagster: dg.DagsterInstance, store: StoreResource
) -> tuple[float, object, dict[str, Any]]:
    with peak_rss() as rss:
        started = time.perf_counter()
        result = run_pipeline(WORKSPACE, dagster, store=store, trigger="benchmark")
        elapsed = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"run {result.run_id} failed")
    return elapsed, result, rss


@contextmanager
def peak_rss(interval_s: float = 0.05) -> Iterator[dict[str, Any]]:
    """Peak resident memory (bytes) while the block runs: ``start`` and ``driver`` for this
    process, ``workers`` for the largest process it started (a Dask worker, its nanny) and
    ``processes`` for each of them by pid, sampled every ``interval_s`` in a background
    thread."""
    driver = psutil.Process()
    peaks: dict[str, Any] = {
        "start": driver.memory_info().rss,
        "driver": 0,
        "workers": 0,
        "processes": {},
    }
    done = threading.Event()

    def sample() -> None:
        while True:
            peaks["driver"] = max(peaks["driver"], driver.memory_info().rss)
            for child in driver.children(recursive=True):
                # A process may end between listing and reading.
                with suppress(psutil.NoSuchProcess):
                    rss = child.memory_info().rss
                    peaks["workers"] = max(peaks["workers"], rss)
                    peaks["processes"][child.pid] = max(peaks["processes"].get(child.pid, 0), rss)
            if done.wait(interval_s):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        done.set()
        sampler.join()


def largest(rss: dict[str, Any]) -> int:
    return max(rss["driver"], rss["workers"])


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def report(
    label: str,
    seconds: float,
    claims: int,
    dagster: dg.DagsterInstance,
    run_id: str,
    rss: dict[str, int],
) -> None:
    rate = f" ({claims / seconds:,.0f} claims/s)" if claims else ""
    workers = f", largest process it started {mib(rss['workers'])}" if rss["workers"] else ""
    print(
        f"{label}: {seconds:.1f} s{rate}; peak memory: driver {mib(rss['driver'])} "
        f"({mib(rss['start'])} at its start){workers}"
    )
    steps = [
        (entry.step_key, entry.dagster_event.event_specific_data.duration_ms / 1000)
        for entry in dagster.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        if entry.dagster_event is not None
    ]
    for step, step_s in steps:
        print(f"  {step:<22}{step_s:7.2f} s")
    print(f"  {'(Dagster, outside steps)':<22}{seconds - sum(s for _, s in steps):7.2f} s")


def io_floor(settings: Settings, run_id: str) -> tuple[float, float]:
    """Read every claim as the run does and write the run's results (hits, scores, held claims
    and cases), nothing else: one transaction, rolled back. The cases are built beforehand from
    the run's own frames and written for a workspace made (untimed) for them, so that they are
    new, as they were to the run: deleting the run's own would leave their dead rows in the
    way."""
    engine = get_engine(settings)
    io_dir = settings.data_dir / "dagster_io" / WORKSPACE
    hits, scores, raw = (_frames(io_dir / a) for a in ("rule_hits", "claim_scores", "raw_claims"))
    assert isinstance(hits, pd.DataFrame) and isinstance(scores, pd.DataFrame)
    assert isinstance(raw, dict)
    proposals = case_proposals(
        hits, flagged_claims(run_claims(raw), hits), scores, default_config()
    )
    ws = workspace_id(engine, WORKSPACE)
    assert ws is not None
    with engine.connect() as connection:
        transaction = connection.begin()
        started = time.perf_counter()
        batch_ids = run_batches(connection, ws, force=True)["batch_id"].tolist()
        frames = {t: read_new_claims(connection, t, ws, batch_ids) for t in ("medical", "pharmacy")}
        processed = pd.concat(
            [f[["claim_pk"]].assign(claim_type=t) for t, f in frames.items()], ignore_index=True
        )
        held = processed.iloc[0:0].assign(reason="")
        write_run_results(connection, ws, run_id, batch_ids, hits, scores, processed, held)
        claims_s = time.perf_counter() - started
        with Session(bind=connection) as session:
            scratch = Workspace(name=f"{WORKSPACE}-floor")
            session.add(scratch)
            session.flush()
            started = time.perf_counter()
            opened = upsert_cases(session, scratch.id, run_id, proposals)["opened"]
            session.flush()
        cases_s = time.perf_counter() - started
        transaction.rollback()
    assert opened == len(proposals)
    return claims_s, cases_s


def _frames(asset_dir: Path) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """The frames the run left for an asset (``defs.io``)."""
    found = load(asset_dir)
    assert found is not None, f"{asset_dir} has no frames"
    return found[1]


def verdict(target: str, met: bool, value: str) -> None:
    print(f"  {'met' if met else 'MISSED':<7}{target}: {value}")


if __name__ == "__main__":
    main()
