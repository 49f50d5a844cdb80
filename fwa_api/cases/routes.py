"""Investigation cases: list, detail, and the investigator's actions (status, notes,
assignment).

Every route takes ``?workspace=NAME``. A case is named by its number (``CASE-000123``;
``case-123`` and ``123`` also work); one in another workspace is answered 404 exactly like one
that does not exist. Status changes, notes and assignments are appended to the case's history
(never edited) and need the investigator role. Closing a case takes a disposition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_api.cases import queries
from fwa_api.cases.models import (
    Assignment,
    CaseAction,
    CaseDetail,
    CaseEventOut,
    CasePage,
    CaseStatus,
    CaseSummary,
    NoteIn,
    RiskLevel,
    StatusChange,
    TokenName,
)
from fwa_api.deps import WorkspaceId, require_role
from fwa_api.kit.db import in_session
from fwa_api.params import NO_NUL, Offset
from fwa_api.rules.queries import catalogue
from fwa_api.services import services
from fwa_pipeline.kit.validation import InvalidInput
from fwa_pipeline.store.cases import (
    CaseConflictError,
    add_case_note,
    assign_case,
    change_case_status,
)
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import CaseEvent, InvestigationCase

router = APIRouter(prefix="/api/cases", tags=["cases"])

MAX_PAGE = 200

CaseRef = Annotated[
    str,
    Path(max_length=32, description="The case number, e.g. CASE-000123 (case-123 or 123 too)."),
]
Investigator = Annotated[Principal, Depends(require_role(queries.CASE_WORKER))]


def _case_not_found() -> HTTPException:
    return HTTPException(404, "case not found")


@router.get("")
async def list_cases(
    request: Request,
    workspace_id: WorkspaceId,
    status: Annotated[
        list[CaseStatus] | None,
        Query(description="Only cases in these statuses (repeatable)."),
    ] = None,
    risk_level: Annotated[
        list[RiskLevel] | None,
        Query(description="Only cases at these risk levels (repeatable)."),
    ] = None,
    assignee: Annotated[
        TokenName | None,
        Query(description=f"Only this token holder's cases; `{queries.UNASSIGNED}`: unassigned."),
    ] = None,
    rule_id: Annotated[
        str | None,
        Query(max_length=32, description="Only cases with a hit of this rule on their claims."),
    ] = None,
    subject_id: Annotated[
        str | None,
        Query(max_length=64, pattern=NO_NUL, description="Only cases on this subject (an NPI…)."),
    ] = None,
    opened_from: Annotated[
        dt.date | None, Query(description="Only cases opened on or after this day (UTC).")
    ] = None,
    opened_to: Annotated[
        dt.date | None, Query(description="Only cases opened on or before this day (UTC).")
    ] = None,
    sort: Annotated[
        queries.CaseSort,
        Query(
            description="`score`: highest risk first; `amount`: most paid on the flagged claims "
            "first; `age`: oldest first. Ties go to the lower case number."
        ),
    ] = "score",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Offset = 0,
) -> CasePage:
    """The queue: one page of the cases the filters match, with ``total`` counting them all and
    ``counts_by_risk_level`` counting each level under every filter but ``risk_level``."""
    if rule_id is not None and rule_id not in catalogue():
        raise _invalid_query("rule_id", "unknown rule")
    if opened_from and opened_to and opened_to < opened_from:
        raise _invalid_query("opened_to", "is before opened_from")
    filters = queries.CaseFilters(
        status=tuple(status or ()),
        risk_level=tuple(risk_level or ()),
        assignee=assignee,
        rule_id=rule_id,
        subject_id=subject_id,
        opened_from=opened_from,
        opened_to=opened_to,
    )
    return await run_in_threadpool(
        in_session,
        services(request).engine,
        queries.list_cases,
        workspace_id,
        filters,
        sort=sort,
        limit=limit,
        offset=offset,
    )


def _invalid_query(parameter: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", parameter), "msg": message, "type": "invalid_input"}]
    )


@router.get("/{case_id}", responses={404: {"description": "No such case in this workspace."}})
async def get_case(request: Request, workspace_id: WorkspaceId, case_id: CaseRef) -> CaseDetail:
    """The case, its explanation, the rule hits on its claims with their evidence (the first
    100, highest severity first; ``hit_count`` has them all), its linked claims (the first 100;
    ``claim_count``) and its whole history, oldest first."""
    found = await run_in_threadpool(
        in_session, services(request).engine, queries.case_detail, workspace_id, case_id
    )
    if found is None:
        raise _case_not_found()
    return found


def _act(
    engine: Engine,
    workspace_id: int,
    case_id: str,
    apply: Callable[[Session, InvestigationCase], CaseEvent],
) -> CaseAction:
    """Apply one change to the locked case row and return the case and its new history entry."""
    try:
        with session_scope(engine) as session:
            case = queries.find_case(session, workspace_id, case_id, for_update=True)
            if case is None:
                raise _case_not_found()
            try:
                event = apply(session, case)
            except CaseConflictError as exc:
                raise HTTPException(409, str(exc)) from exc
            except InvalidInput as exc:
                # The store's refusal names a field of the request's body: say so as
                # validation does.
                raise RequestValidationError(
                    [
                        {"loc": ("body", field), "msg": message, "type": "invalid_input"}
                        for field, message in exc.problems
                    ]
                ) from exc
            session.flush()  # the entry's time
            return CaseAction(case=CaseSummary.of(case), event=CaseEventOut.of(event))
    except IntegrityError as exc:
        # The pipeline opened a case on the same subject meanwhile: one open case per subject.
        raise HTTPException(409, "another case on the same subject is open") from exc


@router.post(
    "/{case_id}/status",
    responses={
        404: {"description": "No such case in this workspace."},
        409: {"description": "The case already has that status, or cannot reopen."},
    },
)
async def change_status(
    request: Request,
    principal: Investigator,
    workspace_id: WorkspaceId,
    case_id: CaseRef,
    body: StatusChange,
) -> CaseAction:
    """Move the case to another status (``status_changed`` in its history). Closing needs a
    ``disposition`` (422 naming it otherwise) and may give the ``amount_recovered``; other
    statuses take neither. Reopening a closed case clears its disposition (its history keeps
    it), and is refused (409) while its subject has another open case."""

    def apply(session: Session, case: InvestigationCase) -> CaseEvent:
        if case.status == body.status:
            raise HTTPException(409, f"{case.case_number} is already {body.status}")
        event = change_case_status(
            session,
            case,
            body.status,
            principal.name,
            body.note,
            disposition=body.disposition,
            amount_recovered=body.amount_recovered,
        )
        assert event is not None  # None only when the status is unchanged, refused above
        return event

    return await run_in_threadpool(_act, services(request).engine, workspace_id, case_id, apply)


@router.post(
    "/{case_id}/notes",
    status_code=201,
    responses={404: {"description": "No such case in this workspace."}},
)
async def add_note(
    request: Request,
    principal: Investigator,
    workspace_id: WorkspaceId,
    case_id: CaseRef,
    body: NoteIn,
) -> CaseAction:
    """Append a note to the case's history."""

    def apply(session: Session, case: InvestigationCase) -> CaseEvent:
        return add_case_note(session, case, principal.name, body.note)

    return await run_in_threadpool(_act, services(request).engine, workspace_id, case_id, apply)


@router.post(
    "/{case_id}/assign",
    responses={
        404: {"description": "No such case in this workspace."},
        409: {"description": "The case already has that assignee."},
    },
)
async def assign(
    request: Request,
    principal: Investigator,
    workspace_id: WorkspaceId,
    case_id: CaseRef,
    body: Assignment,
) -> CaseAction:
    """Assign the case to a token holder who may work it (a token of the investigator role or
    above, unrevoked and unexpired, for this workspace; 422 naming ``assignee`` otherwise), or
    unassign it with null (``assigned`` in its history, from and to)."""

    def apply(session: Session, case: InvestigationCase) -> CaseEvent:
        if body.assignee is not None and not queries.may_be_assigned(
            session, workspace_id, body.assignee
        ):
            raise InvalidInput(
                [("assignee", "must name an active token of an investigator of this workspace")]
            )
        event = assign_case(session, case, body.assignee, principal.name)
        if event is None:
            raise HTTPException(409, f"{case.case_number} already has that assignee")
        return event

    return await run_in_threadpool(_act, services(request).engine, workspace_id, case_id, apply)
