"""The tags of a pipeline run. Dagster sets ``dagster/partition`` itself; ours say where a run
came from, which request and store it is for, and which process executes it in-process."""

from __future__ import annotations

import os
import socket

import dagster as dg

WORKSPACE_TAG = "fwa/workspace"
JOB_ID_TAG = "fwa/job_id"  # the PipelineRequest that asked for the run
TRIGGER_TAG = "fwa/trigger"  # cli | demo | batch_sensor | request_sensor | nightly
# The claims store a run was launched for (store.claims.store_id): a run that ended before
# recording itself is recorded by its own store's ending sensor only, so two stores sharing a
# Dagster home never take each other's runs (a run that started records itself in the store
# its resource points at, whatever its tag).
STORE_TAG = "fwa/store"
# Host and pid of a process running a run in-process (fwa run/demo), and the run they were
# recorded for: a run whose process died without the daemon to notice is failed by the ending
# sensor (runs.ending.orphaned_runs). A re-execution from the UI copies its parent's tags but
# runs elsewhere; PID_RUN_TAG names the parent, so its pid is not taken for the copy's.
HOST_TAG = "fwa/host"
PID_TAG = "fwa/pid"
PID_RUN_TAG = "fwa/pid_run"
PARTITION_TAG = "dagster/partition"
PARENT_RUN_TAG = "dagster/parent_run_id"  # set by Dagster on a re-execution


def run_tags(workspace: str, trigger: str, store: str, job_id: str | None = None) -> dict[str, str]:
    tags = {WORKSPACE_TAG: workspace, TRIGGER_TAG: trigger, STORE_TAG: store}
    if job_id is not None:
        tags[JOB_ID_TAG] = job_id
    return tags


def process_tags(run_id: str) -> dict[str, str]:
    """The tags of run ``run_id`` executed in this process."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PID_RUN_TAG: run_id}


def process_of(run: dg.DagsterRun) -> int | None:
    """The pid of the process executing ``run`` in-process, if its tags were set for it (or,
    for a run tagged before PID_RUN_TAG existed, if it is no re-execution)."""
    pid = run.tags.get(PID_TAG, "")
    owner = run.tags.get(PID_RUN_TAG, None if PARENT_RUN_TAG in run.tags else run.run_id)
    return int(pid) if pid.isdigit() and owner == run.run_id else None
