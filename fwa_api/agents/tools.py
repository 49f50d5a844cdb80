"""The assistant's tools: read-only queries over one workspace, plus ``run_pipeline``.

The workspace is bound when ``WorkspaceTools`` is built from the caller's token and never read
from a tool's arguments: argument models ignore unknown fields, so a model (or a prompt that
steers it) passing ``workspace_id`` changes nothing. A case id from another workspace is answered
exactly like one that does not exist. Results carry ids, scores, amounts and rule evidence, never
member names or dates of birth, and are never logged.

``run_pipeline`` is offered only when the user's message asked to run or rescore, and even then
queues nothing: it proposes the run, kept with the chat session, and the session's next message
queues it only if it confirms (``fwa_api.agents.actions``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fwa_api.agents import actions
from fwa_api.agents.llm import ToolSpec
from fwa_api.cases import queries as case_queries
from fwa_api.cases.models import CaseStatus, CaseSummary, RiskLevel
from fwa_api.claims import queries as claim_queries
from fwa_api.kit.case_numbers import case_number
from fwa_api.providers import queries as provider_queries
from fwa_api.providers.queries import ENTITY_SUBJECTS
from fwa_api.rules import queries as rule_queries
from fwa_api.rules.queries import catalogue
from fwa_pipeline.store.claims import CLAIM_STATUS
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import (
    ROLES,
    InvestigationCase,
    PipelineRun,
    Provider,
    RuleHit,
)
from fwa_pipeline.store.runs import enqueue_request

MAX_ROWS = 50
MAX_EXPLANATION_CHARS = 6000
CASE_ROWS = 20  # linked claims a case detail shows the model
HISTORY_ROWS = 10  # latest history entries a case detail shows the model
RULE_FIELDS = {
    "rule_id",
    "name",
    "family",
    "enabled",
    "weight",
    "hits",
    "claims_hit",
    "feedback",
}

Source = dict[str, str]


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is asking, about which workspace: fixed for a request, from the token."""

    workspace_id: int
    workspace: str
    actor: str
    role: str

    def has_role(self, minimum: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(minimum)


@dataclass(slots=True)
class ToolResult:
    name: str
    ok: bool
    data: dict[str, Any]
    sources: list[Source] = field(default_factory=list)

    def for_model(self) -> str:
        return json.dumps(self.data, default=str, separators=(",", ":"))

    @property
    def evidence(self) -> bool:
        """Data about the workspace an answer can rest on: not an error, not an empty list,
        not an action's acknowledgement."""
        tool = TOOLS.get(self.name)
        return self.ok and tool is not None and tool.evidence and not _no_rows(self.data)


def _no_rows(data: dict[str, Any]) -> bool:
    return data.get("count") == 0 or data.get("riskiest_providers") == []


class ToolError(Exception):
    """A refusal or a miss the model should read (and may recover from)."""


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


# --------------------------------------------------------------------------- argument models


class _Args(BaseModel):
    # Unknown fields (a ``workspace_id`` above all) are dropped, never used.
    model_config = ConfigDict(extra="ignore")


class NoArgs(_Args):
    pass


class CasesArgs(_Args):
    risk_level: RiskLevel | None = Field(None, description="Only cases at this risk level.")
    status: CaseStatus | None = Field(None, description="Only cases in this status.")
    limit: int = Field(
        10, ge=1, description=f"How many cases, highest risk first (max {MAX_ROWS})."
    )


class CaseArgs(_Args):
    case_id: str = Field(description="The case number, like CASE-000000.")


class RulesArgs(_Args):
    triggered_only: bool = Field(False, description="Only rules with hits in this workspace.")
    limit: int = Field(25, ge=1, description=f"How many rules (max {MAX_ROWS}).")


class ProviderArgs(_Args):
    npi: str | None = Field(
        None, description="The provider's 10-digit NPI; omit it for the riskiest providers."
    )


class PipelineArgs(_Args):
    force_reprocess: bool = Field(False, description="Rescore every claim, not only new ones.")


class ProvenanceArgs(_Args):
    claim_id: str = Field(description="The payer's claim id.")


# --------------------------------------------------------------------------- the queries


def pipeline_stats(
    session: Session, scope: Scope, _args: NoArgs
) -> tuple[dict[str, Any], list[Source]]:
    ws = scope.workspace_id
    claims: dict[str, dict[str, int]] = {"medical": {}, "pharmacy": {}}
    state = CLAIM_STATUS.c  # a claim's status is its batch's, answered by this view
    for label, status, count in session.execute(
        select(state.claim_type, state.status, func.count())
        .where(state.workspace_id == ws)
        .group_by(state.claim_type, state.status)
    ):
        claims[label][status] = count
    by_level: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for level, status, count in session.execute(
        select(InvestigationCase.risk_level, InvestigationCase.status, func.count())
        .where(InvestigationCase.workspace_id == ws)
        .group_by(InvestigationCase.risk_level, InvestigationCase.status)
    ):
        by_status[status] = by_status.get(status, 0) + count
        if status != "closed":
            by_level[level] = by_level.get(level, 0) + count
    hits = session.execute(
        select(func.count(), func.count(func.distinct(RuleHit.rule_id))).where(
            RuleHit.workspace_id == ws
        )
    ).one()
    last = session.scalars(
        select(PipelineRun)
        .where(PipelineRun.workspace_id == ws)
        .order_by(PipelineRun.created_at.desc())
        .limit(1)
    ).first()
    data = {
        "workspace": scope.workspace,
        "claims": {
            label: {"total": sum(counts.values()), **counts} for label, counts in claims.items()
        },
        "open_cases_by_risk_level": by_level,
        "cases_by_status": by_status,
        "rule_hits": {"total": hits[0], "rules_triggered": hits[1]},
        "last_pipeline_run": None
        if last is None
        else {
            "run_id": last.run_id,
            "status": last.status,
            "started_at": _iso(last.started_at),
            "completed_at": _iso(last.completed_at),
            # The workspace configuration version it scored with (None: the catalogue's).
            "config_version": (last.config_snapshot or {}).get("config_version"),
            "stats": last.stats,
        },
    }
    return data, [{"type": "stats", "id": scope.workspace}]


def list_cases(
    session: Session, scope: Scope, args: CasesArgs
) -> tuple[dict[str, Any], list[Source]]:
    page = case_queries.list_cases(
        session,
        scope.workspace_id,
        case_queries.CaseFilters(
            risk_level=(args.risk_level,) if args.risk_level else (),
            status=(args.status,) if args.status else (),
        ),
        limit=min(args.limit, MAX_ROWS),
    )
    cases = [c.model_dump(mode="json") for c in page.items]
    filters = {k: v for k, v in (("risk_level", args.risk_level), ("status", args.status)) if v}
    return (
        {"filters": filters, "count": len(cases), "cases": cases},
        [{"type": "case", "id": c["case_id"]} for c in cases],
    )


def _explanation(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, default=str)) <= MAX_EXPLANATION_CHARS:
        return value
    return {"note": "explanation too large to include", "keys": sorted(value)[:50]}


def case_detail(
    session: Session, scope: Scope, args: CaseArgs
) -> tuple[dict[str, Any], list[Source]]:
    found = case_queries.case_detail(session, scope.workspace_id, args.case_id, rows=CASE_ROWS)
    if found is None:
        # The same words for a case in another workspace and one that does not exist.
        number = case_number(args.case_id)
        raise ToolError(f"no case {number or repr(args.case_id)} in this workspace")
    # Individual hits and their evidence would crowd the prompt: the per-rule counts stay.
    data = found.model_dump(mode="json", exclude={"hits", "hit_count", "history"})
    data["explanation"] = _explanation(found.explanation)
    data["history"] = [
        {"at": _iso(event.at), "actor": event.actor, "action": event.action}
        for event in reversed(found.history[-HISTORY_ROWS:])
    ]
    sources = [{"type": "case", "id": found.case_id}]
    sources += [{"type": "rule", "id": r.rule_id} for r in found.rules]
    return data, sources


def rules(session: Session, scope: Scope, args: RulesArgs) -> tuple[dict[str, Any], list[Source]]:
    found = rule_queries.rule_catalogue(session, scope.workspace_id)
    listed = [
        r.model_dump(include=RULE_FIELDS) for r in found.rules if r.hits or not args.triggered_only
    ]
    listed.sort(key=lambda r: (-r["hits"], r["rule_id"]))
    listed = listed[: min(args.limit, MAX_ROWS)]
    return {"count": len(listed), "rules": listed}, [
        {"type": "rule", "id": r["rule_id"]} for r in listed
    ]


def provider(
    session: Session, scope: Scope, args: ProviderArgs
) -> tuple[dict[str, Any], list[Source]]:
    ws = scope.workspace_id
    if not args.npi:
        rows = session.execute(
            select(InvestigationCase, Provider.name)
            .outerjoin(
                Provider,
                (Provider.workspace_id == ws)
                & (Provider.provider_id == InvestigationCase.subject_id),
            )
            .where(
                InvestigationCase.workspace_id == ws,
                InvestigationCase.subject_type.in_(ENTITY_SUBJECTS),
                InvestigationCase.status != "closed",
            )
            .order_by(InvestigationCase.risk_score.desc())
            .limit(10)
        ).all()
        riskiest = [
            {**CaseSummary.of(row).model_dump(mode="json"), "name": name} for row, name in rows
        ]
        return {"riskiest_providers": riskiest}, [
            {"type": "case", "id": r["case_id"]} for r in riskiest
        ]
    npi = re.sub(r"\D", "", args.npi)
    found = provider_queries.provider_detail(session, ws, npi)
    if found is None:
        raise ToolError(f"no provider with NPI {args.npi!r} in this workspace")
    sources = [{"type": "provider", "id": npi}]
    sources += [{"type": "case", "id": c.case_id} for c in found.cases]
    return found.model_dump(mode="json"), sources


def run_pipeline(
    _session: Session, scope: Scope, args: PipelineArgs
) -> tuple[dict[str, Any], list[Source]]:
    # Only a proposal: ``WorkspaceTools`` keeps it with the session, and the user confirms it.
    if not scope.has_role("investigator"):
        raise ToolError("run_pipeline needs the investigator role; this caller does not have it")
    data = {
        "status": "awaiting_confirmation",
        "force_reprocess": args.force_reprocess,
        "note": "nothing is queued: tell the user what would run; they confirm in their next "
        "message",
    }
    return data, []


def claim_provenance(
    session: Session, scope: Scope, args: ProvenanceArgs
) -> tuple[dict[str, Any], list[Source]]:
    found = claim_queries.claim_provenance(session, scope.workspace_id, args.claim_id)
    if found is None:
        raise ToolError(f"no claim {args.claim_id!r} in this workspace")
    data = found.model_dump(mode="json")
    if data["run"] is not None:
        # Every rule's settings: too long for a prompt, and each hit carries its own.
        data["run"].pop("config_snapshot", None)
    sources = [{"type": "claim", "id": args.claim_id}]
    sources += [{"type": "case", "id": c} for c in found.cases]
    sources += [{"type": "rule", "id": h.rule_id} for h in found.hits]
    return data, sources


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    args: type[_Args]
    run: Callable[[Session, Scope, Any], tuple[dict[str, Any], list[Source]]]
    min_role: str = "viewer"
    # A tool with side effects runs at most once per turn: a small model may call it again and
    # again (seen with SmolLM2 queueing four pipeline runs in one answer).
    once_per_turn: bool = False
    # Offered, and run, only when the user's own message asks for it.
    needs_request: bool = False
    # Whether what it returns is data about the workspace (an action's reply is not).
    evidence: bool = True

    def spec(self) -> ToolSpec:
        return _spec(self)


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "query_pipeline_stats",
            "Claim counts, open cases by risk level, rule hits and the last pipeline run.",
            NoArgs,
            pipeline_stats,
        ),
        Tool(
            "query_cases",
            "Investigation cases, highest risk first, optionally filtered.",
            CasesArgs,
            list_cases,
        ),
        Tool(
            "query_case_detail",
            "One case in full: subject, score, explanation, claims, rules that fired, history.",
            CaseArgs,
            case_detail,
        ),
        Tool(
            "query_rules",
            "The detection rules with how often each fired in this workspace.",
            RulesArgs,
            rules,
        ),
        Tool(
            "query_provider",
            "A provider by NPI (claims, rule hits, cases), or the riskiest providers.",
            ProviderArgs,
            provider,
        ),
        Tool(
            "query_claim_provenance",
            "How a claim was scored: its run, score, the rules that hit it (with the settings in "
            "effect and their evidence) and the cases it is in.",
            ProvenanceArgs,
            claim_provenance,
        ),
        Tool(
            "run_pipeline",
            "Propose a pipeline run for this workspace; the user confirms it before it is queued.",
            PipelineArgs,
            run_pipeline,
            min_role="investigator",
            once_per_turn=True,
            needs_request=True,
            evidence=False,
        ),
    )
}


@cache
def _spec(tool: Tool) -> ToolSpec:
    # Building a JSON schema takes about a millisecond a tool: once per process is enough.
    return ToolSpec(tool.name, tool.description, json_parameters(tool.args))


def json_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, trimmed for a prompt: no titles, ``X | None`` as plain X."""

    def trim(node: Any) -> Any:
        if isinstance(node, dict):
            options = node.get("anyOf")
            if isinstance(options, list):
                rest = [o for o in options if o != {"type": "null"}]
                if len(rest) == 1:
                    node = {**{k: v for k, v in node.items() if k != "anyOf"}, **rest[0]}
            return {k: trim(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [trim(item) for item in node]
        return node

    schema = trim(model.model_json_schema())
    schema.setdefault("properties", {})
    return schema


@dataclass(frozen=True, slots=True)
class Settled:
    """A turn that answered the session's proposed run: what was queued (None: nothing)."""

    result: ToolResult | None
    text: str


@dataclass
class WorkspaceTools:
    """The tools bound to one caller and workspace, for one turn.

    ``run_requested``: the user's message asked to run the pipeline (``actions.asks_to_run``);
    ``session_id``: the conversation a proposed run is kept with until it is confirmed.
    """

    engine: Engine
    scope: Scope
    run_requested: bool = False
    session_id: str | None = None
    confirm_ttl_s: float = 600.0
    proposed: actions.PendingRun | None = None
    # The data of this turn's evidence results, which an answer's figures are checked against.
    evidence: list[dict[str, Any]] = field(default_factory=list)
    _done: dict[str, ToolResult] = field(default_factory=dict)

    def available(self) -> list[Tool]:
        return [
            tool
            for tool in TOOLS.values()
            if self.scope.has_role(tool.min_role) and (self.run_requested or not tool.needs_request)
        ]

    def specs(self) -> list[ToolSpec]:
        return [tool.spec() for tool in self.available()]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        tool = TOOLS.get(name)
        if tool is None:
            names = ", ".join(TOOLS)
            return ToolResult(name, False, {"error": f"unknown tool {name!r}; tools: {names}"})
        try:
            args = tool.args.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            return ToolResult(name, False, {"error": f"invalid arguments: {problems}"})
        if tool.needs_request and not self.run_requested:
            # A model acting unasked, or text injected into the question or a record.
            return ToolResult(
                name, False, {"error": f"{name} is refused: the user did not ask for it"}
            )
        earlier = self._done.get(name)
        if earlier is not None:
            note = f"{name} already ran in this turn; its result stands"
            return ToolResult(name, earlier.ok, {**earlier.data, "note": note}, earlier.sources)
        try:
            data, sources = await run_in_threadpool(self._run, tool, args)
            if tool.needs_request:
                await self._propose(args)
        except ToolError as exc:
            return ToolResult(name, False, {"error": str(exc)})
        result = ToolResult(name, True, data, _unique(sources))
        if result.evidence:
            self.evidence.append(data)
        if tool.once_per_turn:
            self._done[name] = result
        return result

    def _run(self, tool: Tool, args: _Args) -> tuple[dict[str, Any], list[Source]]:
        with session_scope(self.engine) as session:
            return tool.run(session, self.scope, args)

    async def _propose(self, args: _Args) -> None:
        assert isinstance(args, PipelineArgs)
        if self.session_id is None:
            raise ToolError(
                "a run is confirmed in the conversation's next message: without a chat session "
                "it cannot be; nothing is queued"
            )
        try:
            self.proposed = await run_in_threadpool(
                actions.hold,
                self.engine,
                self.scope.workspace_id,
                self.session_id,
                force_reprocess=args.force_reprocess,
                ttl_s=self.confirm_ttl_s,
            )
        except LookupError as exc:
            raise ToolError("the chat session is gone; nothing is queued") from exc

    def confirmation_request(self) -> str | None:
        """What the reply must ask when this turn proposed a run."""
        if self.proposed is None:
            return None
        return actions.ask_to_confirm(self.scope.workspace, self.proposed, self.confirm_ttl_s)

    async def settle(self, message: str) -> Settled | None:
        """End the session's proposed run, if any: ``message`` is the session's next one, so
        the proposal goes either way; when it confirms in time, queue the run in this scope's
        workspace. None when there was nothing to confirm: the turn is an ordinary one."""
        if self.session_id is None:
            return None
        pending = await run_in_threadpool(
            actions.take, self.engine, self.scope.workspace_id, self.session_id
        )
        if pending is None or not actions.confirms(message):
            return None
        if pending.expired():
            return Settled(None, actions.EXPIRED)
        if not self.scope.has_role("investigator"):
            return Settled(None, actions.NOT_ALLOWED)
        job_id = await run_in_threadpool(
            enqueue_request,
            self.engine,
            self.scope.workspace_id,
            force_reprocess=pending.force_reprocess,
            requested_by=self.scope.actor,
        )
        data = {"job_id": job_id, "status": "queued", "force_reprocess": pending.force_reprocess}
        result = ToolResult(
            "run_pipeline", True, data, [{"type": "pipeline_request", "id": job_id}]
        )
        return Settled(
            result, actions.queued(self.scope.workspace, job_id, pending.force_reprocess)
        )

    async def known_ids(self, cases: set[str], rules: set[str]) -> set[str]:
        """Those of ``cases`` and ``rules`` that exist for this workspace."""
        known = {rule for rule in rules if rule in catalogue()}
        if cases:
            known |= await run_in_threadpool(self._existing_cases, sorted(cases))
        return known

    def _existing_cases(self, numbers: Sequence[str]) -> set[str]:
        with session_scope(self.engine) as session:
            return set(
                session.scalars(
                    select(InvestigationCase.case_number).where(
                        InvestigationCase.workspace_id == self.scope.workspace_id,
                        InvestigationCase.case_number.in_(numbers),
                    )
                )
            )


def _unique(sources: list[Source]) -> list[Source]:
    seen: set[tuple[str, str]] = set()
    out = []
    for source in sources:
        key = (source["type"], source["id"])
        if key not in seen:
            seen.add(key)
            out.append(source)
    return out
