"""What the workspace configuration routes take and answer. The request's model is built from
the pipeline's configuration models, so its schema says what a change may hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, get_args, get_origin

from annotated_types import Ge
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
)

from fwa_api.params import NO_NUL
from fwa_pipeline.domain.config import PipelineConfig, RuleParams, catalogue_document
from fwa_pipeline.kit.validation import FREE_TEXT
from fwa_pipeline.store.workspace_config import MAX_NOTE_CHARS, ConfigVersion

NoteText = Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS), FREE_TEXT]


class ConfigOut(BaseModel):
    version: int | None = Field(description="null: no version yet, runs apply the catalogue.")
    created_by: str | None
    created_at: dt.datetime | None
    note: str | None
    config: dict[str, Any] = Field(description="quality, scoring and rules, in full.")

    @classmethod
    def of(cls, found: ConfigVersion | None) -> ConfigOut:
        """The version ``found``; none yet: the catalogue defaults, version null."""
        if found is None:
            return cls(
                version=None,
                created_by=None,
                created_at=None,
                note=None,
                config=catalogue_document(),
            )
        return cls(
            version=found.version,
            created_by=found.created_by,
            created_at=found.created_at,
            note=found.note,
            config=found.document,
        )


class ConfigSet(ConfigOut):
    created: bool = Field(description="false: the document equals the newest version's.")


# The request's schema says what the pipeline's configuration accepts, so clients (and the
# schema-driven fuzzing) know it: the domain models with every field optional, each rule id of
# the catalogue a property of ``rules``, text without NUL (the store cannot hold one), threshold
# values scalars or lists of them. The document is then validated as a run's override is.
def _json_number(value: Any) -> Any:
    # JSON numbers only (5 and 5.0 alike, as JSON Schema has them): not true, nor "5".
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
Flag = Annotated[bool, Strict()]
Number = Annotated[float, BeforeValidator(_json_number)]
Scalar = Number | Flag | Text


def _change_type(annotation: Any, constraints: Sequence[Any] = ()) -> Any:
    """The request type of a configuration field of type ``annotation``, with its ``constraints``
    (bounds) kept on the value itself so the schema states them."""
    kind: Any = annotation
    checks: list[Any] = []
    if annotation is str:
        kind = Text
    elif annotation is bool:
        kind = Flag
    elif annotation in (int, float):
        checks = [BeforeValidator(_json_number)]
    elif annotation is Any:
        kind = Scalar | list[Scalar]
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        kind = _change_model(annotation)
    elif get_origin(annotation) is dict:
        key, value = get_args(annotation)
        kind = dict[_change_type(key), _change_type(value)]  # type: ignore[misc]
    elif get_origin(annotation) is list:
        kind = list[_change_type(get_args(annotation)[0])]  # type: ignore[misc]
    return Annotated[kind, *constraints, *checks] if constraints or checks else kind


def _rules_change() -> type[BaseModel]:
    rule = _change_model(RuleParams)
    fields: dict[str, Any] = {
        rule_id.lower().replace("-", "_"): (rule, Field(default=None, alias=rule_id))
        for rule_id in catalogue_document()["rules"]
    }
    return create_model("RulesChange", __config__=ConfigDict(extra="forbid"), **fields)


def _change_model(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with every field optional (absent, not null) and the same constraints."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if model is PipelineConfig and name == "rules":
            kind: Any = _rules_change()
        else:
            kind = _change_type(info.annotation, info.metadata)
        fields[name] = (
            kind,
            Field(
                default=None,
                description=info.description,
                json_schema_extra=info.json_schema_extra,
            ),
        )
    return create_model(f"{model.__name__}Change", __config__=ConfigDict(extra="forbid"), **fields)


PipelineConfigChange = _change_model(PipelineConfig)


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: PipelineConfigChange = Field(  # type: ignore[valid-type]
        description="quality, scoring and rules.<id>: laid over the catalogue defaults."
    )
    note: NoteText = Field(description="Why: kept with the version.")
    based_on: _change_type(int, [Ge(0)]) | None = Field(  # type: ignore[valid-type]
        None, description="The version the change was made from (0: none); 409 if stale."
    )


class Change(BaseModel):
    path: str
    change: str  # changed | added | removed
    before: Any = None
    after: Any = None


class VersionOut(BaseModel):
    version: int
    created_by: str
    created_at: dt.datetime
    note: str
    changes: list[Change] = Field(description="From the version before (or the catalogue).")


class HistoryOut(BaseModel):
    versions: list[VersionOut]
    total: int
    limit: int
    offset: int
