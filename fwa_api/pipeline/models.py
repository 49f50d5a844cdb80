"""What the pipeline routes take and answer: enqueue requests, jobs and runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AliasPath, BaseModel, ConfigDict, Field, StrictBool

from fwa_pipeline.domain.config import QualityMode


class EnqueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: a 0 or "yes" is a client's mistake to name, not a choice to guess.
    force_reprocess: StrictBool = False
    quality_mode: QualityMode | None = Field(
        None, description="This run's quality mode, over the workspace configuration's."
    )


class EnqueuedOut(BaseModel):
    job_id: str
    status: str
    force_reprocess: bool
    quality_mode: QualityMode | None


class JobResultOut(BaseModel):
    status: str
    claims_processed: int
    hits: int
    cases_opened: int
    cases_updated: int
    failure_reason: str | None


class JobOut(BaseModel):
    job_id: str
    status: str
    phase: str | None
    progress: dict[str, int]
    claims_processed: int
    force_reprocess: bool
    requested_at: dt.datetime | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    dagster_run_id: str | None
    errors: list[str]
    result: JobResultOut | None
    quality_mode: QualityMode | None
    config_version: int | None = Field(
        description="The workspace configuration version its run applies (null: the "
        "catalogue defaults, or no run yet)."
    )


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    run_id: str
    status: str
    force_reprocess: bool
    batch_id: int | None
    job_name: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    stats: dict[str, Any]
    config_version: int | None = Field(
        None,
        validation_alias=AliasPath("config_snapshot", "config_version"),
        description="The workspace configuration version the run applied (null: the "
        "catalogue defaults).",
    )


class RunProgress(BaseModel):
    planned: list[str] = Field(default_factory=list, description="The run's steps, in order.")
    done: list[str] = Field(default_factory=list, description="The steps it has finished.")


class RunDetail(RunOut):
    config_snapshot: dict[str, Any]
    quality_report: dict[str, Any]
    progress: RunProgress = Field(description="The steps the run planned and has finished.")
    errors: list[str] = Field(description="Why steps failed, as the run recorded it.")


class RunList(BaseModel):
    runs: list[RunOut]
    total: int
    limit: int
    offset: int
