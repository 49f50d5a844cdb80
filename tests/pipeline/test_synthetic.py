"""On generated claims with every scheme planted: an incremental run finds on its new claims
exactly what reprocessing everything finds on them, peer rules included."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from fwa_pipeline.domain.config import default_config
from fwa_pipeline.steps.frame_files import load
from fwa_pipeline.steps.peer_history import peer_history_dir
from fwa_pipeline.steps.peer_statistics import statistics_dir
from fwa_pipeline.synth import generate
from tests.pipeline.conftest import WORKSPACE, Pipeline, materializations

CLAIM_FILES = ("medical_claims.csv", "pharmacy_claims.csv")
PEER_RULES = {"RULE-MED-005", "RULE-MED-010", "RULE-MED-011", "RULE-MED-012", "RULE-RX-010"}


def split_latest(source: Path, tmp: Path, share: float) -> tuple[Path, Path, set[str]]:
    """The generated batch as two: all but the latest ``share`` of each claims file (they are
    sorted by date), then those alone; and the claim ids of the second."""
    first, second = tmp / "first", tmp / "second"
    first.mkdir()
    second.mkdir()
    later: set[str] = set()
    for path in source.iterdir():
        if path.name == "labels.csv":
            continue
        if path.name not in CLAIM_FILES:
            (first / path.name).write_bytes(path.read_bytes())
            continue
        header, *rows = path.read_text().splitlines(keepends=True)
        keep = len(rows) - round(len(rows) * share)
        (first / path.name).write_text(header + "".join(rows[:keep]))
        (second / path.name).write_text(header + "".join(rows[keep:]))
        later.update(row.split(",", 1)[0] for row in rows[keep:])
    return first, second, later


def findings(pipeline: Pipeline, claim_ids: set[str]) -> set[tuple[object, ...]]:
    rows = pipeline.query(
        "SELECT rule_id, claim_id, subject_type, subject_id, severity FROM rule_hits"
    )
    return {(r, c, t, s, round(v, 9)) for r, c, t, s, v in rows if c in claim_ids}


@pytest.mark.slow
@pytest.mark.parametrize("peer_copy", ["kept", "lost"])
def test_an_incremental_run_finds_what_a_full_reprocess_finds(
    pipeline: Pipeline, tmp_path: Path, peer_copy: str
) -> None:
    generate(tmp_path / "all", n_claims=6000, seed=11)
    first, second, later = split_latest(tmp_path / "all", tmp_path, share=0.1)
    # Look-backs wider than the data: the incremental run's history is then all there is.
    wide = {"rules": {rule_id: {"lookback_days": 3650} for rule_id in default_config().rules}}
    pipeline.land_directory(first)
    assert pipeline.run(pipeline=wide).success
    pipeline.land_directory(second)
    peer_directory = peer_history_dir(pipeline.store.io_dir(), WORKSPACE)
    if peer_copy == "lost":  # the run rebuilds the peers' history and statistics from the store
        shutil.rmtree(peer_directory)
        shutil.rmtree(statistics_dir(peer_directory))

    incremental = pipeline.run(pipeline=wide)

    assert incremental.success
    metadata = materializations(pipeline.instance, incremental.run_id)
    assert metadata["raw_claims"]["claims_in"] == len(later)
    peers = metadata["peer_statistics"]
    if peer_copy == "lost":  # every processed claim, read to recompute the statistics
        assert peers["processed_claims_read"] > 0
    else:  # the new claims added to the statistics the first run kept
        assert peers["processed_claims_read"] == 0
        assert sum(peers["subjects_carried_over"].values()) > 0
    _, statistics = load(statistics_dir(peer_directory))  # type: ignore[misc]
    found = findings(pipeline, later)
    assert {f[0] for f in found} & PEER_RULES, "no peer rule fired on the new claims"
    # The peers' history the next run maps is the store's processed claims, as of this run.
    version, copy = load(peer_history_dir(pipeline.store.io_dir(), WORKSPACE))
    assert version == incremental.run_id
    processed = {
        t: {
            pk
            for (pk,) in pipeline.query(
                "SELECT claim_pk FROM claim_status WHERE claim_type = :t AND status = 'processed'",
                t=t,
            )
        }
        for t in ("medical", "pharmacy")
    }
    assert {t: set(copy[t]["claim_pk"]) for t in processed} == processed

    assert pipeline.run(pipeline=wide, force_reprocess=True).success
    assert findings(pipeline, later) == found
    _, forced = load(statistics_dir(peer_directory))  # type: ignore[misc]
    assert set(forced) == set(statistics)
    for name, frame in statistics.items():
        pd.testing.assert_frame_equal(frame, forced[name], check_exact=True, obj=name)
