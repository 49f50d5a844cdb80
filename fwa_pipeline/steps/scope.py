"""The run's scope: what the run's first step fixes for the whole run (the workspace, the batches
whose claims it processes, the as-of date, whether it covers every claim) and every later step
reads as it was fixed, however long the run takes."""

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.store.claims import Source, has_processed_batches, last_run_id, run_batches


@dataclass(frozen=True)
class RunScope:
    workspace_id: int
    batch_ids: tuple[int, ...]
    as_of: dt.date
    # No batch processed yet: the run's hits will be all the workspace has.
    fresh: bool
    # The workspace's last run when the batches were chosen (its commit must still be the last).
    last_run_id: str | None
    force: bool

    @property
    def covers_all(self) -> bool:
        """Every claim of the workspace is new to the run (a reprocess, or nothing processed
        yet): it reads no history, and only it knows a subject has no evidence left."""
        return self.force or self.fresh

    def frames(self, batches: pd.DataFrame) -> Frames:
        """The scope as the frames the first step outputs (``batches``: its chosen batches)."""
        row = {
            "workspace_id": self.workspace_id,
            "as_of": self.as_of.isoformat(),
            "fresh": self.fresh,
            "last_run_id": self.last_run_id or "",
            "force": self.force,
        }
        return {"batches": batches, "scope": pd.DataFrame([row])}

    @classmethod
    def of(cls, frames: Frames) -> "RunScope":
        """The scope :meth:`frames` encoded."""
        row = frames["scope"].iloc[0]
        return cls(
            workspace_id=int(row["workspace_id"]),
            batch_ids=tuple(int(b) for b in frames["batches"]["batch_id"]),
            as_of=dt.date.fromisoformat(str(row["as_of"])),
            fresh=bool(row["fresh"]),
            last_run_id=str(row["last_run_id"]) or None,
            force=bool(row["force"]),
        )


def fix_scope(
    source: Source, workspace_id: int, *, as_of: dt.date, force: bool
) -> tuple[RunScope, pd.DataFrame]:
    """The scope of a run of ``workspace_id`` as the store is now, and the batches it consumes
    (``store.claims.run_batches``)."""
    # The last run first: a run committing while this one reads the rest makes this one's
    # commit fail, instead of passing with batches and history read before that commit.
    last = last_run_id(source, workspace_id)
    fresh = not has_processed_batches(source, workspace_id)
    batches = run_batches(source, workspace_id, force=force)
    scope = RunScope(
        workspace_id=workspace_id,
        batch_ids=tuple(int(b) for b in batches["batch_id"]),
        as_of=as_of,
        fresh=fresh,
        last_run_id=last,
        force=force,
    )
    return scope, batches
