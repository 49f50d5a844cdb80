"""The peers' history for incremental runs.

Peer rules (E/M upcoding, modifier overuse, billing and pharmacy outliers, amount outliers per
code) compare a provider with every peer, so an incremental run needs every processed claim of
the workspace within their look-back, not only the history of the entities it touches. Reading
those from the claims tables costs seconds on a million claims (most of a small batch's run), so
each run leaves the workspace's processed claims as Arrow files beside its frames (``defs.io``),
and the next run maps them instead.

The copy is valid for the run that published it, and only while that run is the workspace's last
(``workspaces.last_pipeline_run_id``, set in the run's commit): a run that failed changed no
claim, so the copy stays valid; a copy that is missing, older or from a deleted workspace of the
same name is rebuilt from the store. Claims only become processed through a run's commit, which
is what keeps the copy and the store in step.
"""

from pathlib import Path

import pandas as pd

from fwa_pipeline.defs.io import Frames, load, publish, stage
from fwa_pipeline.store.claims import CLAIM_TABLES, Source, read_processed

DIRECTORY = "_peer_history"


def peer_history_dir(io_dir: Path, workspace: str) -> Path:
    return io_dir / workspace / DIRECTORY


def cached_processed(directory: Path, last_run_id: str | None) -> Frames | None:
    """The processed claims as of ``last_run_id``, if that run left them; else None."""
    found = load(directory) if last_run_id else None
    if found is None or found[0] != last_run_id or not isinstance(found[1], dict):
        return None
    return found[1]


def processed_claims(
    source: Source, directory: Path, workspace_id: int, last_run_id: str | None
) -> Frames:
    """Every processed claim of the workspace (all claim columns), from the last run's copy or,
    when it has none, from the store (and then kept for the runs that follow)."""
    cached = cached_processed(directory, last_run_id)
    if cached is not None:
        return cached
    frames = {t: read_processed(source, t, workspace_id) for t in CLAIM_TABLES}
    if last_run_id:
        publish(directory, last_run_id, frames)
    return frames


def stage_run(directory: Path, run_id: str, before: Frames | None, processed: Frames) -> None:
    """Stage the processed claims after ``run_id``: those before it (None when the run
    processed every claim there is) and the ones it processed. The run makes them current
    (``defs.io.make_current``) once its commit has succeeded."""
    frames = {
        t: pd.concat([before[t], processed[t]], ignore_index=True)
        if before is not None
        else processed[t]
        for t in CLAIM_TABLES
    }
    stage(directory, run_id, frames)
