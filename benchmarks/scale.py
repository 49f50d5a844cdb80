"""A workspace larger than one process should hold, run on Dask with workers of bounded memory.

    python benchmarks/scale.py [--claims 10000000] [--workers 2] [--worker-memory 3GB]
                               [--shards 0] [--seed 42] [--admin-dsn postgresql://...]

Synthesises ``claims`` claims, lands them in a fresh PostgreSQL store, then runs the pipeline
once over all of them on a ``LocalCluster`` of ``workers`` processes, each limited to
``worker-memory`` (``FWA_COMPUTE=dask``, ``FWA_DASK_WORKER_MEMORY``; a worker above its limit is
restarted and the run fails after one retry), in a process of its own so that its peak memory
is its own. Prints the run's time, its steps, and the peak resident memory of the run's process
(the driver) and of each process it started (the workers and their nannies). Dagster keeps its
runs in memory here: the figures are the pipeline's. Databases are dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from pipeline import DEFAULT_ADMIN_DSN, WORKSPACE, databases, mib, peak_rss

from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.runs.launch import run_pipeline
from fwa_pipeline.settings import Settings
from fwa_pipeline.store import migrate
from fwa_pipeline.store.crypto import generate_key
from fwa_pipeline.store.db import get_engine
from fwa_pipeline.synth import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="3GB")
    parser.add_argument("--shards", type=int, default=0, help="0: twice the workers")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    # The run alone, in the process ``main`` starts for it: settings as JSON.
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(Settings(**json.loads(args.run), _env_file=None))
        return
    with (
        tempfile.TemporaryDirectory(prefix="fwa-scale-") as tmp,
        databases(args.admin_dsn, 1) as (store_url,),
    ):
        tmp_path = Path(tmp)
        settings = {
            "environment": "test",
            "database_url": store_url,
            "data_dir": str(tmp_path / "data"),
            "encryption_key": generate_key("scale"),
            "max_upload_mb": 1 << 20,
            "max_upload_rows": 2 * args.claims,
            "compute": "dask",
            "dask_workers": args.workers,
            "dask_worker_memory": args.worker_memory,
            "shards": args.shards,
        }
        started = time.perf_counter()
        generate(tmp_path / "batch", n_claims=args.claims, seed=args.seed)
        print(f"synth {args.claims:,} claims: {time.perf_counter() - started:.0f} s", flush=True)
        store = Settings(**settings, _env_file=None)
        engine = get_engine(store)
        migrate.upgrade(engine)
        started = time.perf_counter()
        load_directory(engine, store, WORKSPACE, tmp_path / "batch")
        print(f"load {args.claims:,} claims: {time.perf_counter() - started:.0f} s", flush=True)
        engine.dispose()
        command = [sys.executable, __file__, "--run", json.dumps(settings)]
        subprocess.run(command, check=True)


def run(settings: Settings) -> None:
    """One run over every claim of the workspace, with its time and peak memory."""
    # Where it computes is read from the environment, as a deployed run reads it.
    os.environ.update(
        FWA_COMPUTE=settings.compute,
        FWA_DASK_WORKERS=str(settings.dask_workers),
        FWA_DASK_WORKER_MEMORY=settings.dask_worker_memory,
        FWA_SHARDS=str(settings.shards),
    )
    store = StoreResource.from_settings(settings)
    with dg.DagsterInstance.ephemeral() as dagster, peak_rss() as rss:
        started = time.perf_counter()
        result = run_pipeline(WORKSPACE, dagster, store=store, trigger="benchmark")
        elapsed = time.perf_counter() - started
        steps = [
            (entry.step_key, entry.dagster_event.event_specific_data.duration_ms / 1000)
            for entry in dagster.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
            if entry.dagster_event is not None
        ]
    if not result.success:
        raise SystemExit(f"the run failed: {result.run_id}")
    print(
        f"full run on Dask ({settings.dask_workers} workers of {settings.dask_worker_memory}): "
        f"{elapsed:.0f} s"
    )
    for step, step_s in steps:
        print(f"  {step:<22}{step_s:7.1f} s")
    print(f"peak memory: the run's process {mib(rss['driver'])} ({mib(rss['start'])} at its start)")
    for pid, peak in sorted(rss["processes"].items(), key=lambda item: -item[1]):
        print(f"  process {pid}: {mib(peak)}")


if __name__ == "__main__":
    main()
