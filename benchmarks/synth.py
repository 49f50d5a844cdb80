"""Demo-data generation throughput: ``fwa_pipeline.synth.generate`` for a batch of claims.

    .venv/bin/python benchmarks/synth.py [--claims 1000000] [--rounds 3] [--seed 42]

Writes each round's batch into a temporary directory (removed afterwards) and reports wall time,
CPU time and claims per second per round, then the median. CPU time is printed because the wall
clock is only meaningful on an otherwise idle machine. Target: 1,000,000 claims well under 60 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fwa_pipeline.synth import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    walls = []
    for round_number in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="fwa-synth-bench-") as directory:
            wall, cpu = time.perf_counter(), time.process_time()
            summary = generate(Path(directory), n_claims=args.claims, seed=args.seed)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            size = sum(f.stat().st_size for f in Path(directory).iterdir())
        walls.append(wall)
        print(
            f"round {round_number}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
            f"{args.claims / wall:10,.0f} claims/s, {size / 1e6:6.1f} MB written, "
            f"{summary['labelled_claims']:,} labelled claims"
        )
    median = statistics.median(walls)
    print(f"median: {median:.1f} s, {args.claims / median:,.0f} claims/s")


if __name__ == "__main__":
    main()
