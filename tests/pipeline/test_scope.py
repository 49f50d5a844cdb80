"""The run's scope: fixed once by the run's first step, read back by every later one as it was
fixed, through the frames the IO manager writes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from fwa_pipeline.steps.frame_files import load, publish
from fwa_pipeline.steps.scope import RunScope


@pytest.mark.parametrize("last_run_id", [None, "run-1"])
def test_the_scope_reads_back_as_it_was_fixed(tmp_path: Path, last_run_id: str | None) -> None:
    scope = RunScope(
        workspace_id=3,
        batch_ids=(4, 7),
        as_of=dt.date(2024, 6, 30),
        fresh=False,
        last_run_id=last_run_id,
        force=True,
    )
    batches = pd.DataFrame({"batch_id": [4, 7], "source": ["cli", "api"]})

    publish(tmp_path, "run-2", scope.frames(batches))
    _, frames = load(tmp_path)  # type: ignore[misc]

    assert RunScope.of(frames) == scope


@pytest.mark.parametrize(
    ("force", "fresh", "covers_all"),
    [(False, False, False), (True, False, True), (False, True, True), (True, True, True)],
)
def test_a_run_covers_every_claim_when_forced_or_when_nothing_was_processed(
    force: bool, fresh: bool, covers_all: bool
) -> None:
    scope = RunScope(1, (), dt.date(2024, 6, 30), fresh=fresh, last_run_id=None, force=force)

    assert scope.covers_all is covers_all
