"""The rule catalogue of a workspace (``?workspace=NAME``): each rule's parameters in effect (the
config snapshot of the workspace's latest successful run, else the shipped catalogue;
``parameters_run_id`` says which) and how often it fired there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from fwa_api.deps import WorkspaceId
from fwa_api.kit.db import in_session
from fwa_api.params import NO_NUL, Offset
from fwa_api.rules import queries
from fwa_api.rules.models import RuleCatalogue, RuleOut, RulePage
from fwa_api.services import services

router = APIRouter(prefix="/api/rules", tags=["rules"])

MAX_PAGE = 200


@router.get("")
async def list_rules(
    request: Request,
    workspace_id: WorkspaceId,
    triggered_only: Annotated[bool, Query(description="Only rules with hits here.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> RulePage:
    """Rules by id, with their parameters in effect and hit counts in this workspace."""
    found: RuleCatalogue = await run_in_threadpool(
        in_session, services(request).engine, queries.rule_catalogue, workspace_id
    )
    rules = [r for r in found.rules if r.hits or not triggered_only]
    return RulePage(
        total=len(rules),
        limit=limit,
        offset=offset,
        items=rules[offset : offset + limit],
        parameters_run_id=found.parameters_run_id,
    )


@router.get("/{rule_id}", responses={404: {"description": "No such rule."}})
async def get_rule(
    request: Request,
    workspace_id: WorkspaceId,
    rule_id: Annotated[str, Path(max_length=32, pattern=NO_NUL, description="e.g. RULE-MED-001")],
) -> RuleOut:
    """One rule (its id in any case), with its parameters in effect and hits here."""
    found: RuleCatalogue = await run_in_threadpool(
        in_session,
        services(request).engine,
        queries.rule_catalogue,
        workspace_id,
        rule_id.upper(),
    )
    if not found.rules:
        raise HTTPException(404, "rule not found")
    return found.rules[0]
