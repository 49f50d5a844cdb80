"""Batch-loading throughput: synth N claims, then load them into a fresh PostgreSQL database.

    python benchmarks/load.py [--claims 1000000] [--seed 42] [--admin-dsn postgresql://...]

Prints rows/s for ``synth``, claims/s for validating the batch alone (parse, sanitise, type;
no database), claims/s for the whole ``load_directory`` (validation, encryption of member PHI,
COPY into PostgreSQL, the claims' index rebuild, one commit, and the VACUUM ANALYZE after it),
and claims/s for reading every stored claim back with ``store.bulk.read_frame``. The database
is created for the run and dropped after. Member PHI is encrypted with a throwaway key, as in
production.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text

from fwa_pipeline.ingest import load_directory
from fwa_pipeline.ingest.contract import FILES, Role
from fwa_pipeline.ingest.parse import Limits, parse_file
from fwa_pipeline.settings import Settings
from fwa_pipeline.store import migrate
from fwa_pipeline.store.bulk import read_frame
from fwa_pipeline.store.crypto import generate_key
from fwa_pipeline.synth import generate

DEFAULT_ADMIN_DSN = os.environ.get(
    "FWA_BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CLAIMS_FILES = [s.name for s in FILES.values() if s.role is Role.CLAIMS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    # The lander's per-file timings, to show where the time goes.
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    logging.getLogger("fwa_pipeline.ingest.land").setLevel(logging.DEBUG)

    with tempfile.TemporaryDirectory(prefix="fwa-bench-") as tmp:
        batch = Path(tmp) / "batch"
        started = time.perf_counter()
        summary = generate(batch, n_claims=args.claims, seed=args.seed)
        synth_s = time.perf_counter() - started
        rows: dict[str, int] = summary["files"]  # type: ignore[assignment]
        claims = sum(rows[name] for name in CLAIMS_FILES)
        total_rows = sum(rows.values())
        size = sum(p.stat().st_size for p in batch.iterdir())
        report(
            "synth", synth_s, claims, f"{total_rows / synth_s:,.0f} rows/s, {size / 2**20:,.0f} MB"
        )

        # Limits that let the whole batch in: the benchmark measures speed, not the defaults.
        limits = Limits(max_bytes=size, max_rows=total_rows, max_columns=64)
        started = time.perf_counter()
        for path in sorted(batch.iterdir()):
            parse_file(FILES[path.name], path.read_bytes(), limits)
        report("validate only", time.perf_counter() - started, claims)

        name = f"fwa_bench_{secrets.token_hex(4)}"
        with psycopg.connect(args.admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{args.admin_dsn.rsplit('/', 1)[0]}/{name}"
        try:
            settings = Settings(
                environment="test",
                database_url=url,
                encryption_key=generate_key("bench"),
                max_upload_mb=max(1, -(-size // 2**20)),
                max_upload_rows=total_rows,
                _env_file=None,
            )
            engine = create_engine(settings.sqlalchemy_url)
            migrate.upgrade(engine)
            with engine.connect() as conn:
                server = {
                    setting: conn.execute(text(f"SHOW {setting}")).scalar_one()
                    for setting in ("server_version", "shared_buffers", "max_wal_size")
                }
            started = time.perf_counter()
            result = load_directory(engine, settings, "bench", batch, source="cli")
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            stored = sum(
                len(read_frame(engine, f"SELECT * FROM {FILES[n].table}")) for n in CLAIMS_FILES
            )
            read_s = time.perf_counter() - started
            engine.dispose()
        finally:
            with psycopg.connect(args.admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if stored != claims:
            sys.exit(f"stored {stored:,} claims, expected {claims:,}")
        report("load into PostgreSQL", load_s, claims)
        report("read_frame back", read_s, claims)
        print(
            json.dumps(
                {
                    "claims": claims,
                    "rows": result.summary()["files"],
                    "synth_rows_per_s": round(total_rows / synth_s),
                    "load_claims_per_s": round(claims / load_s),
                    "load_seconds": round(load_s, 2),
                    "read_frame_claims_per_s": round(claims / read_s),
                    "postgres": server,
                },
                indent=2,
            )
        )


def report(step: str, seconds: float, claims: int, extra: str = "") -> None:
    line = f"{step:<22} {seconds:8.2f} s  {claims / seconds:>10,.0f} claims/s"
    print(f"{line}  ({extra})" if extra else line, flush=True)


if __name__ == "__main__":
    main()
