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

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_api.deps import WorkspaceId, require_role
from fwa_api.params import Offset
from fwa_api.services import services
from fwa_api.workspaces.config_models import ConfigIn, ConfigOut, ConfigSet, HistoryOut, VersionOut
from fwa_pipeline.domain.config import ConfigError
from fwa_pipeline.store.workspace_config import (
    StaleConfigError,
    config_history,
    config_version,
    current_config,
    set_config,
)

router = APIRouter(prefix="/api/workspaces/{workspace}/config", tags=["configuration"])

Admin = Annotated[Principal, Depends(require_role("admin"))]
MAX_PAGE = 200


@router.get("")
async def get_config(request: Request, workspace_id: WorkspaceId) -> ConfigOut:
    """The configuration runs of this workspace apply unless they override it."""
    found = await run_in_threadpool(current_config, services(request).engine, workspace_id)
    return ConfigOut.of(found)


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
    return ConfigSet(**ConfigOut.of(found).model_dump(), created=created)


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
    return ConfigOut.of(found)
