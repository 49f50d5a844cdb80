"""The assistant's tools (plan 7B): read-only queries over one workspace, plus ``run_pipeline``.

The workspace is bound when ``WorkspaceTools`` is built from the caller's token and never read
from a tool's arguments: argument models ignore unknown fields, so a model (or a prompt that
steers it) passing ``workspace_id`` changes nothing. A case id from another workspace is answered
exactly like one that does not exist. Results carry ids, scores, amounts and rule evidence, never
member names or dates of birth, and are never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fwa_api.agents.llm import ToolSpec
from fwa_pipeline.domain.config import RuleParams, default_config
from fwa_pipeline.store import queries
from fwa_pipeline.store.cases import case_number as format_case_number
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import (
    ROLES,
    CaseClaim,
    CaseEvent,
    InvestigationCase,
    MedicalClaim,
    PharmacyClaim,
    PipelineRun,
    Provider,
    RuleHit,
)
from fwa_pipeline.store.runs import enqueue_request

MAX_ROWS = 50
MAX_EXPLANATION_CHARS = 6000
CASE_NUMBER = re.compile(r"^(?:CASE-)?(\d{1,12})$", re.IGNORECASE)
ENTITY_SUBJECTS = ("provider", "pharmacy", "prescriber")

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


class ToolError(Exception):
    """A refusal or a miss the model should read (and may recover from)."""


@lru_cache(maxsize=1)
def catalogue() -> dict[str, RuleParams]:
    return default_config().rules


def case_number(raw: str) -> str | None:
    """``CASE-000123`` from ``CASE-000123``, ``case-123`` or ``123``; None if it is not one."""
    match = CASE_NUMBER.match(raw.strip())
    return format_case_number(int(match.group(1))) if match else None


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


# --------------------------------------------------------------------------- argument models


class _Args(BaseModel):
    # Unknown fields (a ``workspace_id`` above all) are dropped, never used.
    model_config = ConfigDict(extra="ignore")


class NoArgs(_Args):
    pass


class CasesArgs(_Args):
    risk_level: Literal["low", "medium", "high", "critical"] | None = Field(
        None, description="Only cases at this risk level."
    )
    status: Literal["open", "under_review", "escalated", "closed"] | None = Field(
        None, description="Only cases in this status."
    )
    limit: int = Field(
        10, ge=1, description=f"How many cases, highest risk first (max {MAX_ROWS})."
    )


class CaseArgs(_Args):
    case_id: str = Field(description="The case number, e.g. CASE-000123.")


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
    claims: dict[str, dict[str, int]] = {}
    for label, model in (("medical", MedicalClaim), ("pharmacy", PharmacyClaim)):
        rows = session.execute(
            select(model.status, func.count())
            .where(model.workspace_id == ws)
            .group_by(model.status)
        )
        claims[label] = {status: count for status, count in rows}
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
            "stats": last.stats,
        },
    }
    return data, [{"type": "stats", "id": scope.workspace}]


def _case_row(row: InvestigationCase) -> dict[str, Any]:
    return {
        "case_id": row.case_number,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "risk_score": round(row.risk_score, 1),
        "risk_level": row.risk_level,
        "status": row.status,
        "flagged_billed": row.flagged_billed,
        "flagged_paid": row.flagged_paid,
        "assignee": row.assignee,
    }


def list_cases(
    session: Session, scope: Scope, args: CasesArgs
) -> tuple[dict[str, Any], list[Source]]:
    query = select(InvestigationCase).where(InvestigationCase.workspace_id == scope.workspace_id)
    if args.risk_level:
        query = query.where(InvestigationCase.risk_level == args.risk_level)
    if args.status:
        query = query.where(InvestigationCase.status == args.status)
    rows = session.scalars(
        query.order_by(InvestigationCase.risk_score.desc(), InvestigationCase.case_number).limit(
            min(args.limit, MAX_ROWS)
        )
    ).all()
    cases = [_case_row(row) for row in rows]
    filters = {k: v for k, v in (("risk_level", args.risk_level), ("status", args.status)) if v}
    return (
        {"filters": filters, "count": len(cases), "cases": cases},
        [{"type": "case", "id": c["case_id"]} for c in cases],
    )


def find_case(session: Session, scope: Scope, raw_id: str) -> InvestigationCase:
    number = case_number(raw_id)
    row = None
    if number is not None:
        row = session.scalars(
            select(InvestigationCase).where(
                InvestigationCase.workspace_id == scope.workspace_id,
                InvestigationCase.case_number == number,
            )
        ).first()
    if row is None:
        # The same words for a case in another workspace and one that does not exist.
        raise ToolError(f"no case {number or repr(raw_id)} in this workspace")
    return row


def _explanation(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, default=str)) <= MAX_EXPLANATION_CHARS:
        return value
    return {"note": "explanation too large to include", "keys": sorted(value)[:50]}


def case_detail(
    session: Session, scope: Scope, args: CaseArgs
) -> tuple[dict[str, Any], list[Source]]:
    row = find_case(session, scope, args.case_id)
    claims = session.execute(
        select(CaseClaim.claim_type, CaseClaim.claim_id)
        .where(CaseClaim.case_id == row.id)
        .order_by(CaseClaim.claim_type, CaseClaim.claim_id)
    ).all()
    rules = session.execute(
        select(RuleHit.rule_id, func.count(), func.max(RuleHit.severity))
        .join(
            CaseClaim,
            (CaseClaim.claim_type == RuleHit.claim_type) & (CaseClaim.claim_pk == RuleHit.claim_pk),
        )
        .where(CaseClaim.case_id == row.id, RuleHit.workspace_id == scope.workspace_id)
        .group_by(RuleHit.rule_id)
        .order_by(func.count().desc(), RuleHit.rule_id)
    ).all()
    events = session.execute(
        select(CaseEvent.at, CaseEvent.actor, CaseEvent.action)
        .where(CaseEvent.case_id == row.id)
        .order_by(CaseEvent.id.desc())
        .limit(10)
    ).all()
    known = catalogue()
    data = {
        **_case_row(row),
        "explanation": _explanation(row.explanation),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "claim_count": len(claims),
        "claims": [{"claim_type": t, "claim_id": c} for t, c in claims[:20]],
        "rules": [
            {
                "rule_id": rule_id,
                "name": known[rule_id].name if rule_id in known else None,
                "hits": hits,
                "max_severity": round(severity, 2),
            }
            for rule_id, hits, severity in rules
        ],
        "history": [{"at": _iso(at), "actor": actor, "action": a} for at, actor, a in events],
    }
    sources = [{"type": "case", "id": row.case_number}]
    sources += [{"type": "rule", "id": r[0]} for r in rules]
    return data, sources


def rules(session: Session, scope: Scope, args: RulesArgs) -> tuple[dict[str, Any], list[Source]]:
    counts = {
        rule_id: (hits, claims)
        for rule_id, hits, claims in session.execute(
            select(RuleHit.rule_id, func.count(), func.count(func.distinct(RuleHit.claim_pk)))
            .where(RuleHit.workspace_id == scope.workspace_id)
            .group_by(RuleHit.rule_id)
        )
    }
    listed = []
    for rule_id, params in catalogue().items():
        hits, claims = counts.get(rule_id, (0, 0))
        if args.triggered_only and not hits:
            continue
        listed.append(
            {
                "rule_id": rule_id,
                "name": params.name,
                "family": params.family,
                "enabled": params.enabled,
                "weight": params.weight,
                "hits": hits,
                "claims_hit": claims,
            }
        )
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
        riskiest = [{**_case_row(row), "name": name} for row, name in rows]
        return {"riskiest_providers": riskiest}, [
            {"type": "case", "id": r["case_id"]} for r in riskiest
        ]
    npi = re.sub(r"\D", "", args.npi)
    row = session.get(Provider, (ws, npi))
    if row is None:
        raise ToolError(f"no provider with NPI {args.npi!r} in this workspace")
    medical = session.execute(
        select(func.count(), func.coalesce(func.sum(MedicalClaim.amount_paid), 0)).where(
            MedicalClaim.workspace_id == ws, MedicalClaim.provider_id == npi
        )
    ).one()
    pharmacy = session.execute(
        select(
            func.count(case((PharmacyClaim.pharmacy_id == npi, 1))),
            func.count(case((PharmacyClaim.prescriber_id == npi, 1))),
        ).where(
            PharmacyClaim.workspace_id == ws,
            (PharmacyClaim.pharmacy_id == npi) | (PharmacyClaim.prescriber_id == npi),
        )
    ).one()
    hits = session.execute(
        select(RuleHit.rule_id, func.count())
        .where(
            RuleHit.workspace_id == ws,
            RuleHit.subject_type.in_(ENTITY_SUBJECTS),
            RuleHit.subject_id == npi,
        )
        .group_by(RuleHit.rule_id)
        .order_by(func.count().desc())
    ).all()
    cases = session.scalars(
        select(InvestigationCase)
        .where(
            InvestigationCase.workspace_id == ws,
            InvestigationCase.subject_type.in_(ENTITY_SUBJECTS),
            InvestigationCase.subject_id == npi,
        )
        .order_by(InvestigationCase.risk_score.desc())
    ).all()
    data = {
        "npi": row.provider_id,
        "name": row.name,
        "provider_type": row.provider_type,
        "specialty": row.specialty,
        "state": row.state,
        "excluded": row.excluded,
        "exclusion_date": _iso(row.exclusion_date),
        "medical_claims": {"count": medical[0], "amount_paid": float(medical[1])},
        "pharmacy_claims": {"as_pharmacy": pharmacy[0], "as_prescriber": pharmacy[1]},
        "rule_hits": [{"rule_id": r, "hits": n} for r, n in hits],
        "cases": [_case_row(c) for c in cases],
    }
    sources = [{"type": "provider", "id": npi}]
    sources += [{"type": "case", "id": c.case_number} for c in cases]
    return data, sources


def run_pipeline(
    session: Session, scope: Scope, args: PipelineArgs
) -> tuple[dict[str, Any], list[Source]]:
    if not scope.has_role("investigator"):
        raise ToolError("run_pipeline needs the investigator role; this caller does not have it")
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    job_id = enqueue_request(
        engine, scope.workspace_id, force_reprocess=args.force_reprocess, requested_by=scope.actor
    )
    data = {
        "job_id": job_id,
        "status": "queued",
        "force_reprocess": args.force_reprocess,
        "note": "the pipeline's sensor picks queued requests up; progress shows in run history",
    }
    return data, [{"type": "pipeline_request", "id": job_id}]


def claim_provenance(
    session: Session, scope: Scope, args: ProvenanceArgs
) -> tuple[dict[str, Any], list[Source]]:
    found = queries.claim_provenance(session, scope.workspace_id, args.claim_id)
    if found is None:
        raise ToolError(f"no claim {args.claim_id!r} in this workspace")
    if found["run"] is not None:
        # Every rule's settings: too long for a prompt, and each hit carries its own.
        found["run"].pop("config_snapshot", None)
    claim = found["claim"]
    found["cases"] = list(
        session.scalars(
            select(InvestigationCase.case_number)
            .join(CaseClaim, CaseClaim.case_id == InvestigationCase.id)
            .where(
                InvestigationCase.workspace_id == scope.workspace_id,
                CaseClaim.claim_type == claim["claim_type"],
                CaseClaim.claim_pk == claim["claim_pk"],
            )
            .order_by(InvestigationCase.case_number)
        )
    )
    sources = [{"type": "claim", "id": args.claim_id}]
    sources += [{"type": "case", "id": c} for c in found["cases"]]
    sources += [{"type": "rule", "id": h["rule_id"]} for h in found["hits"]]
    return found, sources


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    args: type[_Args]
    run: Callable[[Session, Scope, Any], tuple[dict[str, Any], list[Source]]]
    min_role: str = "viewer"

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
            "Queue a pipeline run for this workspace (needs the investigator role).",
            PipelineArgs,
            run_pipeline,
            min_role="investigator",
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


@dataclass
class WorkspaceTools:
    """The tools bound to one caller and workspace."""

    engine: Engine
    scope: Scope

    def available(self) -> list[Tool]:
        return [tool for tool in TOOLS.values() if self.scope.has_role(tool.min_role)]

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
        try:
            data, sources = await run_in_threadpool(self._run, tool, args)
        except ToolError as exc:
            return ToolResult(name, False, {"error": str(exc)})
        return ToolResult(name, True, data, _unique(sources))

    def _run(self, tool: Tool, args: _Args) -> tuple[dict[str, Any], list[Source]]:
        with session_scope(self.engine) as session:
            return tool.run(session, self.scope, args)

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
