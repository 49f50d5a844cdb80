"""A workspace's pipeline configuration, versioned (``store.workspace_config``). Runs that do not
override it apply its newest version; each run records the version it applied.

* ``GET /api/workspaces/{workspace}/config``: the newest version (``version`` null and the
  catalogue defaults while there is none).
* ``PUT /api/workspaces/{workspace}/config`` (admin; ``{"config": {...}, "note": "why",
  "based_on": 3}``): ``config`` (its schema: every key of the configuration optional) is laid
  over the catalogue defaults (omitted keys keep them) and validated as a run's override is; a
  valid one becomes the next version (200 with it and ``created: true``; the newest version's
  document again: ``created: false``). 422 naming each invalid field
  (``body.config.rules.RULE-NOPE``...), 409 when ``based_on`` is not the newest version (another
  change came first).
* ``GET /api/workspaces/{workspace}/config/history``: every version, newest first, each with who
  set it, when, its note and its changes from the one before.
* ``GET /api/workspaces/{workspace}/config/versions/{version}``: one version's document (what a
  run that names it applied, before its override).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, get_args, get_origin

from annotated_types import Ge
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    create_model,
)
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_api.deps import WorkspaceId, require_role
from fwa_api.params import NO_NUL, Offset
from fwa_api.services import services
from fwa_pipeline.domain.config import (
    ConfigError,
    PipelineConfig,
    RuleParams,
    catalogue_document,
)
from fwa_pipeline.kit.validation import FREE_TEXT
from fwa_pipeline.store.workspace_config import (
    MAX_NOTE_CHARS,
    ConfigVersion,
    StaleConfigError,
    config_history,
    config_version,
    current_config,
    set_config,
)

router = APIRouter(prefix="/api/workspaces/{workspace}/config", tags=["configuration"])

Admin = Annotated[Principal, Depends(require_role("admin"))]
MAX_PAGE = 200
NoteText = Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS), FREE_TEXT]


class ConfigOut(BaseModel):
    version: int | None = Field(description="null: no version yet, runs apply the catalogue.")
    created_by: str | None
    created_at: dt.datetime | None
    note: str | None
    config: dict[str, Any] = Field(description="quality, scoring and rules, in full.")


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
        fields[name] = (kind, Field(default=None, description=info.description))
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


def _out(found: ConfigVersion | None) -> ConfigOut:
    if found is None:
        return ConfigOut(
            version=None, created_by=None, created_at=None, note=None, config=catalogue_document()
        )
    return ConfigOut(
        version=found.version,
        created_by=found.created_by,
        created_at=found.created_at,
        note=found.note,
        config=found.document,
    )


@router.get("")
async def get_config(request: Request, workspace_id: WorkspaceId) -> ConfigOut:
    """The configuration runs of this workspace apply unless they override it."""
    found = await run_in_threadpool(current_config, services(request).engine, workspace_id)
    return _out(found)


@router.put("", responses={409: {"description": "`based_on` is not the newest version."}})
async def put_config(
    request: Request, principal: Admin, workspace_id: WorkspaceId, body: ConfigIn
) -> ConfigSet:
    """Save a new version; runs adopt it when they start (nothing is rescored until then)."""
    try:
        found, created = await run_in_threadpool(
            set_config,
            services(request).engine,
            workspace_id,
            body.config.model_dump(mode="json", by_alias=True, exclude_unset=True),
            created_by=principal.name,
            note=body.note,
            based_on=body.based_on,
        )
    except ConfigError as exc:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "config", *field.split(".")),
                    "msg": message,
                    "type": "value_error",
                }
                for field, message in exc.problems
            ]
        ) from None
    except StaleConfigError as exc:
        raise HTTPException(409, str(exc)) from None
    return ConfigSet(**_out(found).model_dump(), created=created)


@router.get("/history")
async def get_history(
    request: Request,
    workspace_id: WorkspaceId,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Offset = 0,
) -> HistoryOut:
    """Every version, newest first, with its changes from the one before."""
    history = await run_in_threadpool(config_history, services(request).engine, workspace_id)
    return HistoryOut(
        versions=[VersionOut.model_validate(v) for v in history[offset : offset + limit]],
        total=len(history),
        limit=limit,
        offset=offset,
    )


@router.get("/versions/{version}", responses={404: {"description": "No such version."}})
async def get_version(
    request: Request,
    workspace_id: WorkspaceId,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> ConfigOut:
    found = await run_in_threadpool(config_version, services(request).engine, workspace_id, version)
    if found is None:
        raise HTTPException(404, "configuration version not found")
    return _out(found)
