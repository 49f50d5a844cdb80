"""The resources every asset, check and sensor shares.

* :class:`StoreResource`: the relational store (engine, settings, PHI cipher). Fields left unset
  come from the ``FWA_`` environment through :class:`~fwa_pipeline.settings.Settings`, so a
  production database URL or key never shows in Dagster's UI; tests set them explicitly.
* :class:`PipelineRunConfig`: the run's tunable configuration (force_reprocess, quality mode,
  every rule's weight and thresholds, scoring bands). It is a resource so one launchpad entry
  configures every asset of a run, and Dagster records it with the run.
"""

import copy
import datetime as dt
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from fwa_pipeline.defs.partitions import STORE_TAG
from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.claims import store_id
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.db import get_engine
from fwa_pipeline.store.pii import cipher_from_settings

PIPELINE_CONFIG_KEY = "pipeline_config"


class StoreResource(dg.ConfigurableResource):
    """The claims store. Unset fields are read from the environment (``FWA_*``)."""

    environment: str | None = None
    database_url: str | None = None
    data_dir: str | None = None
    encryption_key: str | None = None

    _settings: Settings | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> "StoreResource":
        return cls(
            environment=settings.environment.value,
            database_url=settings.database_url.get_secret_value() or None,
            data_dir=str(settings.data_dir),
            encryption_key=settings.encryption_key.get_secret_value() or None,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Dagster sets up a copy of the resource for each run (and sensor tick): Settings are
        # read from the environment once for it, not on each of the dozens of calls a run makes.
        self._settings = self._read_settings()
        if context.run is not None and context.instance is not None:
            # The run writes to this store, whoever launched it: the tag is set here, over
            # none (a run started from the UI) or a copied one (a re-execution of another
            # store's run), so the run mirror of this store, and only this one, takes it.
            # A run its launcher tagged already (the CLI, the sensors) costs no write.
            ours = store_id(self.engine())
            if context.run.tags.get(STORE_TAG) != ours:
                context.instance.add_run_tags(context.run.run_id, {STORE_TAG: ours})

    def settings(self) -> Settings:
        # Outside a run (the CLI, the benchmark) nothing set it up: read the environment as
        # it is now.
        return self._settings or self._read_settings()

    def _read_settings(self) -> Settings:
        fields = {
            "environment": self.environment,
            "database_url": self.database_url,
            "data_dir": self.data_dir,
            "encryption_key": self.encryption_key,
        }
        return Settings(**{k: v for k, v in fields.items() if v is not None})

    def engine(self) -> Engine:
        return get_engine(self.settings())

    def cipher(self) -> FieldCipher | None:
        return cipher_from_settings(self.settings())

    def io_dir(self) -> Path:
        """Where the run's intermediate frames are kept (see ``defs.io``)."""
        return self.settings().data_dir / "dagster_io"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, dicts merged key by key (lists replaced)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@lru_cache(maxsize=1)
def _catalogue_defaults() -> dict[str, Any]:
    return default_config().model_dump(mode="json")


def _default_pipeline() -> dict[str, Any]:
    return copy.deepcopy(_catalogue_defaults())


@lru_cache(maxsize=8)
def _validated(pipeline_json: str) -> PipelineConfig:
    """The catalogue defaults with an override laid over them, validated once per override:
    every asset of a run asks for it (about 25 ms each). Rules are code: an override naming a
    rule the catalogue does not have is a typo, refused by name."""
    defaults, override = _catalogue_defaults(), json.loads(pipeline_json)
    rules = override.get("rules")
    unknown = sorted(set(rules) - set(defaults["rules"])) if isinstance(rules, dict) else []
    if unknown:
        raise ValueError(
            f"rules: no rule {', '.join(unknown)} in the catalogue (its ids: "
            f"{', '.join(sorted(defaults['rules']))})"
        )
    return PipelineConfig.model_validate(deep_merge(defaults, override))


class PipelineRunConfig(dg.ConfigurableResource):
    """What a run does: reprocess everything or only new claims, and the pipeline configuration
    (quality gate, rules, scoring, cases). ``pipeline`` may be partial: it is laid over the
    catalogue defaults and validated as a whole, and the result is the run's config snapshot."""

    force_reprocess: bool = Field(
        default=False, description="Reprocess every claim of the workspace, not only new ones."
    )
    as_of: str | None = Field(
        default=None,
        description="The run's as-of date (YYYY-MM-DD): claims dated after it are in the "
        "future. Default: the run's date (UTC).",
    )
    pipeline: dict[str, Any] = Field(
        default_factory=_default_pipeline,
        description=(
            "quality (mode: skip_invalid | halt_on_errors | flag_only, outlier_sd, ...), "
            "scoring (bands, multiplier, case policy) and rules (per rule: enabled, weight, "
            "cap, lookback_days, thresholds). Omitted keys keep the catalogue defaults."
        ),
    )

    def effective(self) -> PipelineConfig:
        """The validated configuration the run applies (raises on an invalid override)."""
        return _validated(json.dumps(self.pipeline, sort_keys=True))

    def as_of_date(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of) if self.as_of else dt.datetime.now(dt.UTC).date()

    def snapshot(self, as_of: dt.date | None = None) -> dict[str, Any]:
        """The run's config snapshot: exactly what it ran with (``as_of``: the date the run
        fixed, when it has)."""
        return {
            "force_reprocess": self.force_reprocess,
            "as_of": (as_of or self.as_of_date()).isoformat(),
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
) -> dict[str, Any]:
    """Dagster run config setting :class:`PipelineRunConfig` (for sensors, schedules, the CLI)."""
    config: dict[str, Any] = {"force_reprocess": force_reprocess}
    if pipeline:
        config["pipeline"] = dict(pipeline)
    if as_of is not None:
        config["as_of"] = as_of.isoformat()
    return {"resources": {PIPELINE_CONFIG_KEY: {"config": config}}}
