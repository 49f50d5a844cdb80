"""What a run is asked to do, and what it records it did.

* :class:`PipelineRunConfig`: the run's tunable configuration (force_reprocess, quality mode,
  every rule's weight and thresholds, scoring bands). It is a Dagster resource so one launchpad
  entry configures every asset of a run, and Dagster records it with the run. Precedence: the
  run's own override, over the workspace's stored configuration version (which the launcher pins
  in the run config: :func:`workspace_run_config`), over the catalogue defaults.
* :func:`run_config` / :func:`workspace_run_config`: the run config every launcher (sensors, the
  schedule, the CLI) sends, and the run ledger reads back for a run that never started.
"""

import datetime as dt
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from fwa_pipeline.domain.config import PipelineConfig, resolve_config
from fwa_pipeline.kit.version import code_version
from fwa_pipeline.store.workspace_config import ConfigVersion, current_config_of

PIPELINE_CONFIG_KEY = "pipeline_config"


@lru_cache(maxsize=8)
def _validated(layers_json: str) -> PipelineConfig:
    """The run's configuration, validated once per run config: every asset of a run asks for it
    (about 25 ms each)."""
    return resolve_config(*json.loads(layers_json))


class PipelineRunConfig(dg.ConfigurableResource):
    """What a run does: reprocess everything or only new claims, and the pipeline configuration
    (quality gate, rules, scoring, cases). ``pipeline``, the run's override, may be partial: it
    is laid over the workspace's configuration version (``workspace_config``, the document of
    version ``config_version``), itself over the catalogue defaults, and the whole is validated;
    the result is the run's config snapshot."""

    force_reprocess: bool = Field(
        default=False, description="Reprocess every claim of the workspace, not only new ones."
    )
    as_of: str | None = Field(
        default=None,
        description="The run's as-of date (YYYY-MM-DD): claims dated after it are in the "
        "future. Default: the run's date (UTC).",
    )
    pipeline: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "This run's override: quality (mode: skip_invalid | halt_on_errors | flag_only, "
            "outlier_sd, ...), scoring (bands, multiplier, case policy) and rules (per rule: "
            "enabled, weight, cap, lookback_days, thresholds). Omitted keys keep the workspace's "
            "configuration (else the catalogue defaults)."
        ),
    )
    config_version: int | None = Field(
        default=None,
        description="The workspace configuration version the run applies (set by its "
        "launcher: the workspace's newest). None: the catalogue defaults.",
    )
    workspace_config: dict[str, Any] = Field(
        default_factory=dict,
        description="That version's document, as stored (set by the launcher with it).",
    )

    def effective(self) -> PipelineConfig:
        """The validated configuration the run applies (raises ``ConfigError``, a
        ``ValueError``, on an invalid one)."""
        return _validated(json.dumps([self.workspace_config, self.pipeline], sort_keys=True))

    def as_of_date(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of) if self.as_of else dt.datetime.now(dt.UTC).date()

    def snapshot(self, as_of: dt.date | None = None) -> dict[str, Any]:
        """The run's config snapshot: exactly what it ran with (``as_of``: the date the run
        fixed, when it has)."""
        return {
            "force_reprocess": self.force_reprocess,
            "as_of": (as_of or self.as_of_date()).isoformat(),
            "config_version": self.config_version,
            "override": self.pipeline,  # what the run changed over that version ({}: nothing)
            "code": code_version(),
            **self.effective().model_dump(mode="json"),
        }

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Fail the run at start, before any asset reads a claim, when the config is invalid.
        self.effective()
        self.as_of_date()


def run_config(
    force_reprocess: bool = False,
    pipeline: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
    stored: ConfigVersion | None = None,
) -> dict[str, Any]:
    """Dagster run config setting :class:`PipelineRunConfig`: ``pipeline`` the run's override,
    ``stored`` the workspace configuration version it applies (None: the catalogue's)."""
    config: dict[str, Any] = {"force_reprocess": force_reprocess}
    if pipeline:
        config["pipeline"] = dict(pipeline)
    if as_of is not None:
        config["as_of"] = as_of.isoformat()
    if stored is not None:
        config["config_version"] = stored.version
        config["workspace_config"] = stored.document
    return {"resources": {PIPELINE_CONFIG_KEY: {"config": config}}}


def workspace_run_config(
    engine: Engine,
    workspace: str,
    *,
    force_reprocess: bool = False,
    pipeline: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
) -> dict[str, Any]:
    """:func:`run_config` pinning ``workspace``'s newest configuration version: what every
    launcher (sensors, the schedule, the CLI) asks for. Pinned in the run config, the version
    holds for the whole run and for its re-executions, whatever is saved meanwhile."""
    return run_config(force_reprocess, pipeline, as_of, current_config_of(engine, workspace))
