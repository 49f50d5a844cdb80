"""The pipeline's tunable configuration: quality mode, every rule's weight, cap and thresholds,
scoring bands and case policy. It is data (defaults in ``catalogue.toml``), recorded whole in each
run's config snapshot, and never a literal in the logic that reads it."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from fwa_pipeline.kit.validation import InvalidInput

CATALOGUE = Path(__file__).with_name("catalogue.toml")


class QualityMode(StrEnum):
    skip_invalid = "skip_invalid"  # invalid claims are held back, marked and reported
    halt_on_errors = "halt_on_errors"  # any invalid claim fails the run before scoring
    flag_only = "flag_only"  # every claim goes on; issues are attached to the report


# A threshold's name, as the catalogue spells them (``min_robust_z``): a key the schema states,
# so a request with any other text as a name is refused before it reaches the store.
ThresholdName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class RuleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    family: str  # medical | pharmacy
    version: str
    enabled: bool = True
    weight: float = Field(ge=0)
    # Most a single rule may add to one claim's score (before the x10 scaling).
    cap: float = Field(ge=0)
    # How far back a run must read history for the entities its new claims touch.
    lookback_days: int = Field(0, ge=0)
    thresholds: dict[ThresholdName, Any] = Field(
        default_factory=dict, json_schema_extra={"additionalProperties": False}
    )


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: QualityMode = QualityMode.skip_invalid
    outlier_sd: float = 3.0
    outlier_min_peers: int = 10
    sample_size: int = 20


class ScoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    multiplier: float = 10.0
    max_score: float = 100.0
    # Lower bound of each risk level, ascending.
    bands: dict[str, float] = Field(
        default_factory=lambda: {"low": 0.0, "medium": 40.0, "high": 70.0, "critical": 90.0}
    )
    case_min_level: str = "high"
    # Entity score = max claim score blended with flagged dollars (see domain.scoring).
    entity_dollar_weight: float = 0.2
    entity_dollar_scale: float = 50_000.0
    # Rules whose hit makes the subject critical regardless of score.
    critical_overrides: list[str] = Field(default_factory=lambda: ["RULE-MED-009"])
    # Who a case is opened on when a rule's hit names the claim itself: the party answerable
    # for that kind of finding. Entity-level hits name their subject already.
    case_subject: dict[str, str] = Field(
        default_factory=lambda: {
            **{f"RULE-MED-{n:03d}": "provider" for n in range(1, 13)},
            "RULE-RX-001": "member",
            "RULE-RX-002": "member",
            "RULE-RX-003": "member",
            "RULE-RX-004": "member",
            "RULE-RX-005": "pharmacy",
            "RULE-RX-006": "pharmacy",
            "RULE-RX-007": "prescriber",
            "RULE-RX-008": "pharmacy",
            "RULE-RX-009": "pharmacy",
            "RULE-RX-010": "pharmacy",
        }
    )


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quality: QualityConfig = Field(default_factory=QualityConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    rules: dict[str, RuleParams]

    def enabled_rules(self) -> dict[str, RuleParams]:
        return {rule_id: p for rule_id, p in self.rules.items() if p.enabled}


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, Any]:
    with CATALOGUE.open("rb") as handle:
        return tomllib.load(handle)


def default_config(**overrides: Any) -> PipelineConfig:
    """The shipped defaults, optionally overridden (e.g. ``quality={"mode": "flag_only"}``)."""
    data = {"rules": _catalogue()["rules"], **overrides}
    return PipelineConfig.model_validate(data)


class ConfigError(InvalidInput):
    """An invalid configuration, each problem as (field path, message): the CLI prints them, the
    API answers 422 naming each field."""


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
def catalogue_document() -> dict[str, Any]:
    """The catalogue defaults as a JSON document (what every layer is laid over)."""
    return default_config().model_dump(mode="json")


def resolve_config(*layers: Mapping[str, Any]) -> PipelineConfig:
    """The catalogue defaults with each layer laid over the one before (a workspace's stored
    version, then a run's override), validated as a whole. Rules are code: a layer naming a
    rule the catalogue does not have is a typo, refused by name. Raises :class:`ConfigError`."""
    defaults = catalogue_document()
    merged: dict[str, Any] = defaults
    for layer in layers:
        if not isinstance(layer, Mapping):
            raise ConfigError([("config", "expected a mapping of config sections")])
        rules = layer.get("rules")
        unknown = sorted(set(rules) - set(defaults["rules"])) if isinstance(rules, Mapping) else []
        if unknown:
            raise ConfigError(
                [
                    (
                        f"rules.{rule}",
                        f"no rule {rule} in the catalogue (its ids: "
                        f"{', '.join(sorted(defaults['rules']))})",
                    )
                    for rule in unknown
                ]
            )
        merged = deep_merge(merged, layer)
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(
            [(".".join(str(p) for p in e["loc"]) or "config", e["msg"]) for e in exc.errors()]
        ) from None
