"""The processed claims for incremental runs.

The peer rules with phases (E/M upcoding, modifier overuse, billing, pharmacy and per-code
amount outliers) keep their statistics from run to run (``steps.peer_statistics``) and read
processed claims only to recompute them in full; a peer rule without phases compares the new
claims with every processed claim of its look-back (:func:`peer_frames`). Reading those from the
claims tables costs seconds on a million claims (most of a small batch's run), so each run
leaves the workspace's processed claims as Arrow files beside its frames
(``steps.frame_files``), and the next run maps them instead.

The copy is valid for the run that published it, and only while that run is the workspace's last
(``workspaces.last_pipeline_run_id``, set in the run's commit): a run that failed changed no
claim, so the copy stays valid; a copy that is missing, older or from a deleted workspace of the
same name is rebuilt from the store. Claims only become processed through a run's commit, which
is what keeps the copy and the store in step.
"""

from pathlib import Path

import pandas as pd

from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.steps.claims import CLAIM_TYPES, DATE_COLUMN, enrich, in_scope
from fwa_pipeline.steps.frame_files import Frames, load, publish, stage
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import HistoryPlan, plan_history
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
    (``steps.frame_files.make_current``) once its commit has succeeded."""
    frames = {
        t: pd.concat([before[t], processed[t]], ignore_index=True)
        if before is not None
        else processed[t]
        for t in CLAIM_TABLES
    }
    stage(directory, run_id, frames)


def peer_frames(
    source: Source,
    directory: Path,
    config: PipelineConfig,
    enriched_claims: Frames,
    reference_data: Frames,
    scope: RunScope,
) -> Frames:
    """Per claim type: the run's enriched new claims and the processed claims within the peer
    rules' look-back of their dates (the columns peer rules read), enriched here. The history
    comes from the last run's copy in ``directory``, so it never passes through the IO manager:
    a million narrow rows written and read back cost more than the peer rules themselves."""
    plans = {t: plan_history(config, t) for t in CLAIM_TYPES}
    new = {t: in_scope(enriched_claims[t]) for t in CLAIM_TYPES}
    wanted = [t for t in CLAIM_TYPES if plans[t].peer_rules and not new[t].empty]
    processed = (
        processed_claims(source, directory, scope.workspace_id, scope.last_run_id) if wanted else {}
    )
    frames: Frames = {}
    for t in CLAIM_TYPES:
        frames[t] = new[t]
        if t not in wanted:
            continue
        start, end = plans[t].peer_window(new[t][DATE_COLUMN[t]])
        dates = processed[t][DATE_COLUMN[t]]
        window = (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))
        if not window.any():
            continue
        history = enriched_processed(t, processed[t].loc[window], plans[t], reference_data)
        frames[t] = pd.concat([new[t][history.columns], history], ignore_index=True)
    return frames


def enriched_processed(
    claim_type: str, processed: pd.DataFrame, plan: HistoryPlan, reference_data: Frames
) -> pd.DataFrame:
    """``processed`` claims of ``claim_type`` as history (``in_scope`` false) with the columns
    ``plan``'s peer rules read, enriched. Peer rules read no member attribute: the history is
    enriched without members."""
    history = processed[["claim_pk", *plan.peer_columns]].assign(in_scope=False)
    return enrich(claim_type, history, None, reference_data)
