"""The fast path: questions of a known shape are answered straight from the data,
without waiting for the LLM (or when it is down): workspace stats, the top risk cases, a case or
rule by its id, the riskiest providers. Only whole-message matches count, so "why was
CASE-000123 flagged and what should I do next?" still goes to the LLM (with the case's data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fwa_api.agents.tools import ToolResult

_LEAD = (
    r"(?:(?:please|can you|could you)\s+)?"
    r"(?:(?:show|list|give|get|display|open|find|fetch|what are|whats|what is|tell me about"
    r"|look up|lookup|summari[sz]e)\s+)?(?:me\s+)?(?:all\s+)?(?:the\s+)?"
)
_STATS = re.compile(
    _LEAD + r"(?:current\s+)?(?:pipeline|workspace|claims?|cases?|fwa)?\s*"
    r"(?:stats|statistics|summary|overview|status|numbers|dashboard|counts)"
    r"(?:\s+(?:for|of)\s+(?:this|the)\s+workspace)?(?:\s+please)?"
    r"|how many (?:claims|cases)(?:\s+(?:are there|do we have|in this workspace))*"
)
_TOP_CASES = re.compile(
    _LEAD + r"(?:(?:top|highest|riskiest|most risky)(?:[- ]risk)?\s+(?:(?P<n>\d{1,2})\s+)?"
    r"(?:risk(?:y|iest)?\s+)?)?"
    r"(?:(?P<open>open)\s+)?(?:(?P<level>critical|high|medium|low)(?:[- ]risk)?\s+)?cases"
    r"(?:\s+by risk)?"
)
_TOP_REQUIRED = re.compile(r"\b(?:top|highest|riskiest|most risky|critical|high|medium|low)\b")
_CASE = re.compile(
    _LEAD + r"(?:details?\s+(?:of|for|on)\s+)?(?:case\s+)?(?P<id>case-\d{1,12})(?:\s+details?)?"
)
_RULE = re.compile(_LEAD + r"(?:rule\s+)?(?P<id>rule-[a-z]{2,8}-\d{1,4})")
_PROVIDERS = re.compile(
    _LEAD + r"(?:top|riskiest|most risky|highest[- ]risk)\s+(?:providers|pharmacies|prescribers)"
)
DEFAULT_TOP = 10


@dataclass(frozen=True, slots=True)
class Intent:
    kind: str  # stats | cases | case | rule | providers
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None  # the id asked about (case, rule)


def _normalise(message: str) -> str:
    text = re.sub(r"\s+", " ", message.lower()).strip()
    return text.strip(" ?.!")


def classify(message: str) -> Intent | None:
    text = _normalise(message)
    if len(text) > 120:
        return None
    if _STATS.fullmatch(text):
        return Intent("stats", "query_pipeline_stats")
    if match := _CASE.fullmatch(text):
        ident = match.group("id").upper()
        return Intent("case", "query_case_detail", {"case_id": ident}, ident)
    if match := _RULE.fullmatch(text):
        ident = match.group("id").upper()
        return Intent("rule", "query_rules", {"limit": 50}, ident)
    if _PROVIDERS.fullmatch(text):
        return Intent("providers", "query_provider")
    match = _TOP_CASES.fullmatch(text)
    if match and _TOP_REQUIRED.search(text):
        arguments: dict[str, Any] = {"limit": max(1, int(match.group("n") or DEFAULT_TOP))}
        if match.group("level"):
            arguments["risk_level"] = match.group("level")
        if match.group("open"):
            arguments["status"] = "open"
        return Intent("cases", "query_cases", arguments)
    return None


# --------------------------------------------------------------------------- rendering


def _money(value: Any) -> str:
    return f"${float(value or 0):,.2f}"


def _counts_as_text(counts: dict[str, int]) -> str:
    return (
        ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in counts.items()) or "none"
    )


def render_stats(data: dict[str, Any]) -> str:
    claims = data["claims"]
    lines = [f"**Workspace {data['workspace']}**", ""]
    for label in ("medical", "pharmacy"):
        counts = dict(claims[label])
        total = counts.pop("total")
        lines.append(
            f"- {label.title()} claims: {total:,}"
            + (f" ({_counts_as_text(counts)})" if counts else "")
        )
    levels = data["open_cases_by_risk_level"]
    ordered = {k: levels[k] for k in ("critical", "high", "medium", "low") if k in levels}
    lines.append(
        f"- Open cases: {sum(levels.values()):,}"
        + (f" ({_counts_as_text(ordered)})" if ordered else "")
    )
    if data["cases_by_status"]:
        lines.append(f"- Cases by status: {_counts_as_text(data['cases_by_status'])}")
    hits = data["rule_hits"]
    rules = hits["rules_triggered"]
    lines.append(f"- Rule hits: {hits['total']:,} from {rules} rule{'' if rules == 1 else 's'}")
    run = data["last_pipeline_run"]
    if run is None:
        lines.append("- Last pipeline run: none yet")
    else:
        when = run["completed_at"] or run["started_at"] or "not started"
        lines.append(f"- Last pipeline run: {run['run_id']} ({run['status']}, {when})")
    return "\n".join(lines)


def render_cases(data: dict[str, Any], workspace: str) -> str:
    filters = " ".join(str(v).replace("_", " ") for v in data["filters"].values())
    if not data["cases"]:
        return f"No {filters + ' ' if filters else ''}cases in workspace {workspace}."
    lines = [
        f"Top {data['count']} {filters + ' ' if filters else ''}cases in workspace {workspace}, "
        "highest risk first:",
        "",
        "| Case | Subject | Risk | Score | Status | Flagged paid |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in data["cases"]:
        lines.append(
            f"| {c['case_id']} | {c['subject_type']} {c['subject_id']} | {c['risk_level']} "
            f"| {c['risk_score']} | {c['status'].replace('_', ' ')} | {_money(c['flagged_paid'])} |"
        )
    return "\n".join(lines)


def render_case(data: dict[str, Any]) -> str:
    lines = [
        f"**{data['case_id']}**: {data['subject_type']} {data['subject_id']}, "
        f"**{data['risk_level']}** risk (score {data['risk_score']}), "
        f"status {data['status'].replace('_', ' ')}"
        + (f", assigned to {data['assignee']}" if data["assignee"] else "")
        + ".",
        "",
        f"Flagged {_money(data['flagged_billed'])} billed and {_money(data['flagged_paid'])} paid "
        f"across {data['claim_count']} claims.",
    ]
    if data["rules"]:
        lines += ["", "Rules that fired:"]
        for rule in data["rules"]:
            name = f" {rule['name']}" if rule["name"] else ""
            lines.append(
                f"- {rule['rule_id']}{name}: {rule['hits']} hits "
                f"(max severity {rule['max_severity']})"
            )
    if data["claims"]:
        shown = ", ".join(c["claim_id"] for c in data["claims"][:10])
        more = data["claim_count"] - min(10, len(data["claims"]))
        lines += ["", f"Claims: {shown}" + (f" and {more} more" if more > 0 else "")]
    if data["history"]:
        latest = data["history"][0]
        lines += [
            "",
            f"Latest activity: {latest['action']} by {latest['actor']} at {latest['at']}.",
        ]
    return "\n".join(lines)


def render_rule(data: dict[str, Any], rule_id: str) -> str | None:
    rule = next((r for r in data["rules"] if r["rule_id"] == rule_id), None)
    if rule is None:
        return None
    state = "enabled" if rule["enabled"] else "disabled"
    return (
        f"**{rule['rule_id']}** {rule['name']} ({rule['family']}, weight {rule['weight']}, "
        f"{state}): {rule['hits']:,} hits on {rule['claims_hit']:,} claims in this workspace."
    )


def render_providers(data: dict[str, Any], workspace: str) -> str:
    rows = data["riskiest_providers"]
    if not rows:
        return f"No open cases on providers, pharmacies or prescribers in workspace {workspace}."
    lines = [
        f"Riskiest providers with open cases in workspace {workspace}:",
        "",
        "| Case | Type | NPI | Name | Risk | Score | Flagged paid |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['case_id']} | {r['subject_type']} | {r['subject_id']} | {r['name'] or '-'} "
            f"| {r['risk_level']} | {r['risk_score']} | {_money(r['flagged_paid'])} |"
        )
    return "\n".join(lines)


def render_rules(data: dict[str, Any]) -> str:
    if not data["rules"]:
        return "No rules to list."
    lines = ["| Rule | Name | Hits | Claims hit |", "| --- | --- | --- | --- |"]
    for r in data["rules"]:
        lines.append(f"| {r['rule_id']} | {r['name']} | {r['hits']:,} | {r['claims_hit']:,} |")
    return "\n".join(lines)


def render_provider(data: dict[str, Any]) -> str:
    medical = data["medical_claims"]
    hits = ", ".join(f"{h['rule_id']} ({h['hits']})" for h in data["rule_hits"]) or "none"
    cases = ", ".join(c["case_id"] for c in data["cases"]) or "none"
    return (
        f"**{data['name']}** (NPI {data['npi']}, {data['provider_type']}): "
        f"{medical['count']:,} medical claims, {_money(medical['amount_paid'])} paid. "
        f"Rule hits: {hits}. Cases: {cases}."
    )


def render_provenance(data: dict[str, Any]) -> str:
    claim, score = data["claim"], data["score"]
    scored = (
        f"score {score['score']} ({score['risk_level']}), {score['hit_count']} rule hits"
        if score
        else "not scored yet"
    )
    rules = ", ".join(sorted({h["rule_id"] for h in data["hits"]})) or "none"
    cases = ", ".join(data["cases"]) or "none"
    return f"Claim {claim['claim_id']}: {scored}. Rules: {rules}. Cases: {cases}."


def render_result(result: ToolResult, workspace: str) -> str | None:
    """A tool's data as an answer, for a turn whose model did not give one; None for a tool
    whose result is not evidence to show (a queued run, a failed lookup)."""
    if not result.ok:
        return None
    data = result.data
    match result.name:
        case "query_pipeline_stats":
            return render_stats(data)
        case "query_cases":
            return render_cases(data, workspace)
        case "query_case_detail":
            return render_case(data)
        case "query_rules":
            return render_rules(data)
        case "query_provider":
            if "riskiest_providers" in data:
                return render_providers(data, workspace)
            return render_provider(data)
        case "query_claim_provenance":
            return render_provenance(data)
    return None


def render(intent: Intent, result: ToolResult, workspace: str) -> tuple[str, bool]:
    """The answer and whether data stands behind it (False: the thing asked about is missing)."""
    if not result.ok:
        return f"{result.data['error'][0].upper()}{result.data['error'][1:]}.", False
    data = result.data
    if intent.kind == "stats":
        return render_stats(data), True
    if intent.kind == "cases":
        return render_cases(data, workspace), True
    if intent.kind == "case":
        return render_case(data), True
    if intent.kind == "providers":
        return render_providers(data, workspace), True
    assert intent.subject is not None
    text = render_rule(data, intent.subject)
    if text is None:
        return f"There is no rule {intent.subject}.", False
    return text, True
