"""The assistant's tools on the real PostgreSQL: each query, bound to the caller's workspace
whatever the arguments say."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, update

from fwa_api.agents import sessions
from fwa_api.agents.tools import TOOLS, Scope, WorkspaceTools, json_parameters
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ChatSession, InvestigationCase, PipelineRequest, utcnow
from tests.agents.conftest import World
from tests.agents.harness import ACME_NPI, FOREIGN_CASE, GLOBEX_NPI

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tools(engine: Engine, world: World, role: str = "investigator") -> WorkspaceTools:
    return WorkspaceTools(engine, Scope(world.acme, "acme", "alice", role))


async def test_pipeline_stats_count_only_this_workspace(pg_engine: Engine, world: World) -> None:
    result = await tools(pg_engine, world).call("query_pipeline_stats", {})
    assert result.ok
    assert result.data["claims"]["medical"] == {"total": 3, "processed": 3}
    assert result.data["open_cases_by_risk_level"] == {"critical": 1, "high": 1}
    assert result.data["cases_by_status"] == {"open": 2, "closed": 1}
    assert result.data["rule_hits"] == {"total": 3, "rules_triggered": 1}


async def test_query_cases_filters_and_orders(pg_engine: Engine, world: World) -> None:
    t = tools(pg_engine, world)
    result = await t.call("query_cases", {"limit": 500})
    assert [c["case_id"] for c in result.data["cases"]] == [
        "CASE-000001",
        "CASE-000002",
        "CASE-000003",
    ]
    critical = await t.call("query_cases", {"risk_level": "critical"})
    assert [c["case_id"] for c in critical.data["cases"]] == ["CASE-000001"]
    assert critical.sources == [{"type": "case", "id": "CASE-000001"}]
    bad = await t.call("query_cases", {"risk_level": "extreme"})
    assert not bad.ok and "risk_level" in bad.data["error"]


async def test_workspace_arguments_are_ignored(pg_engine: Engine, world: World) -> None:
    t = tools(pg_engine, world)
    result = await t.call("query_cases", {"workspace_id": world.globex, "workspace": "globex"})
    assert FOREIGN_CASE not in {c["case_id"] for c in result.data["cases"]}
    detail = await t.call(
        "query_case_detail", {"case_id": FOREIGN_CASE, "workspace_id": world.globex}
    )
    assert not detail.ok
    assert detail.data == {"error": f"no case {FOREIGN_CASE} in this workspace"}
    missing = await t.call("query_case_detail", {"case_id": "CASE-999999"})
    assert missing.data == {"error": "no case CASE-999999 in this workspace"}  # the same words


async def test_case_detail(pg_engine: Engine, world: World) -> None:
    result = await tools(pg_engine, world).call("query_case_detail", {"case_id": "case-1"})
    data = result.data
    assert (data["case_id"], data["risk_level"], data["claim_count"]) == (
        "CASE-000001",
        "critical",
        3,
    )
    assert data["rules"] == [
        {"rule_id": "RULE-MED-004", "name": "Impossible day", "hits": 3, "max_severity": 1.0}
    ]
    assert data["history"][0]["action"] == "opened"
    assert {"type": "rule", "id": "RULE-MED-004"} in result.sources


async def test_rules_with_hit_counts(pg_engine: Engine, world: World) -> None:
    t = tools(pg_engine, world)
    triggered = await t.call("query_rules", {"triggered_only": True})
    assert [(r["rule_id"], r["hits"], r["claims_hit"]) for r in triggered.data["rules"]] == [
        ("RULE-MED-004", 3, 3)
    ]
    every = await t.call("query_rules", {"limit": 50})
    assert every.data["count"] == 22
    assert triggered.data["rules"][0]["feedback"]["closed_cases"] == 0


async def test_rules_carry_the_feedback_of_closed_cases(pg_engine: Engine, world: World) -> None:
    with session_scope(pg_engine) as session:
        session.execute(
            update(InvestigationCase)
            .where(InvestigationCase.case_number == "CASE-000001")
            .values(status="closed", disposition="no_issue")
        )
    found = await tools(pg_engine, world).call("query_rules", {"triggered_only": True})
    [rule] = found.data["rules"]
    assert rule["feedback"] == {
        "closed_cases": 1,
        "confirmed": 0,
        "no_issue": 1,
        "inconclusive": 0,
        "precision": 0.0,
        "precision_interval": (0.0, 0.7935),
        "proposed_weight": None,
    }


async def test_provider_lookup_stays_in_the_workspace(pg_engine: Engine, world: World) -> None:
    t = tools(pg_engine, world)
    found = await t.call("query_provider", {"npi": ACME_NPI})
    assert found.data["name"] == "Acme Clinic"
    assert found.data["medical_claims"] == {"count": 3, "amount_paid": 1200.0}
    assert [c["case_id"] for c in found.data["cases"]] == ["CASE-000001"]
    foreign = await t.call("query_provider", {"npi": GLOBEX_NPI})
    assert not foreign.ok
    riskiest = await t.call("query_provider", {})
    assert [r["case_id"] for r in riskiest.data["riskiest_providers"]] == ["CASE-000001"]


async def test_claim_provenance(pg_engine: Engine, world: World) -> None:
    t = tools(pg_engine, world)
    result = await t.call("query_claim_provenance", {"claim_id": "ACME-CLM-0"})
    data = result.data
    assert (data["claim"]["claim_id"], data["claim"]["status"]) == ("ACME-CLM-0", "processed")
    assert data["score"]["risk_level"] == "high"
    assert [h["rule_id"] for h in data["hits"]] == ["RULE-MED-004"]
    assert data["cases"] == ["CASE-000001"]
    assert {"type": "case", "id": "CASE-000001"} in result.sources
    foreign = await t.call("query_claim_provenance", {"claim_id": "GLOBEX-CLM-0"})
    assert foreign.data == {"error": "no claim 'GLOBEX-CLM-0' in this workspace"}


def _queued(engine: Engine) -> list[PipelineRequest]:
    with session_scope(engine) as session:
        rows = session.scalars(select(PipelineRequest)).all()
        session.expunge_all()
        return list(rows)


def asked(engine: Engine, world: World, role: str = "investigator") -> WorkspaceTools:
    """A turn whose message asked to run the pipeline, in a new session of alice's."""
    chat = sessions.create_session(engine, world.acme, created_by="alice")
    scope = Scope(world.acme, "acme", "alice", role)
    return WorkspaceTools(engine, scope, run_requested=True, session_id=chat.session_id)


def next_turn(engine: Engine, turn: WorkspaceTools) -> WorkspaceTools:
    return WorkspaceTools(engine, turn.scope, session_id=turn.session_id)


async def test_run_pipeline_unasked_is_not_offered_and_queues_nothing(
    pg_engine: Engine, world: World
) -> None:
    turn = tools(pg_engine, world)
    assert "run_pipeline" not in {spec.name for spec in turn.specs()}
    result = await turn.call("run_pipeline", {"force_reprocess": True})
    assert not result.ok and "did not ask" in result.data["error"]
    assert turn.confirmation_request() is None
    assert _queued(pg_engine) == []


async def test_run_pipeline_proposes_and_the_next_yes_queues_in_the_callers_workspace(
    pg_engine: Engine, world: World
) -> None:
    turn = asked(pg_engine, world)
    assert "run_pipeline" in {spec.name for spec in turn.specs()}
    result = await turn.call(
        "run_pipeline", {"force_reprocess": True, "workspace_id": world.globex}
    )
    assert result.ok and result.data["status"] == "awaiting_confirmation"
    assert not result.evidence and turn.evidence == []
    assert "reply **yes**" in (turn.confirmation_request() or "")
    assert _queued(pg_engine) == []
    settled = await next_turn(pg_engine, turn).settle("Yes, go ahead.")
    assert settled is not None and settled.result is not None
    [request] = _queued(pg_engine)
    assert (request.job_id, request.workspace_id, request.force_reprocess) == (
        settled.result.data["job_id"],
        world.acme,
        True,
    )
    assert request.requested_by == "alice"
    # Taken: a second yes finds nothing to confirm.
    assert await next_turn(pg_engine, turn).settle("yes") is None
    assert len(_queued(pg_engine)) == 1


async def test_any_other_next_message_drops_the_proposal(pg_engine: Engine, world: World) -> None:
    turn = asked(pg_engine, world)
    await turn.call("run_pipeline", {})
    assert await next_turn(pg_engine, turn).settle("yes, but only the new claims") is None
    assert await next_turn(pg_engine, turn).settle("yes") is None
    assert _queued(pg_engine) == []


async def test_an_expired_proposal_queues_nothing(pg_engine: Engine, world: World) -> None:
    turn = asked(pg_engine, world)
    await turn.call("run_pipeline", {})
    with session_scope(pg_engine) as session:
        row = session.get(ChatSession, turn.session_id)
        assert row is not None and row.pending_run_expires_at is not None
        row.pending_run_expires_at = utcnow() - dt.timedelta(seconds=1)
    settled = await next_turn(pg_engine, turn).settle("yes")
    assert (
        settled is not None and settled.result is None and "not confirmed in time" in settled.text
    )
    assert _queued(pg_engine) == []


async def test_a_yes_from_a_caller_without_the_role_queues_nothing(
    pg_engine: Engine, world: World
) -> None:
    turn = asked(pg_engine, world)
    await turn.call("run_pipeline", {})
    demoted = WorkspaceTools(
        pg_engine, Scope(world.acme, "acme", "alice", "viewer"), session_id=turn.session_id
    )
    settled = await demoted.settle("yes")
    assert settled is not None and settled.result is None and "investigator" in settled.text
    assert _queued(pg_engine) == []


async def test_run_pipeline_proposes_once_per_turn(pg_engine: Engine, world: World) -> None:
    turn = asked(pg_engine, world)
    first = await turn.call("run_pipeline", {})
    again = await turn.call("run_pipeline", {"force_reprocess": True})
    assert again.data["force_reprocess"] is first.data["force_reprocess"] is False
    assert "already ran" in again.data["note"]
    assert await next_turn(pg_engine, turn).settle("confirm") is not None
    [request] = _queued(pg_engine)
    assert request.force_reprocess is False


async def test_run_pipeline_without_a_session_queues_nothing(
    pg_engine: Engine, world: World
) -> None:
    turn = WorkspaceTools(
        pg_engine, Scope(world.acme, "acme", "alice", "investigator"), run_requested=True
    )
    result = await turn.call("run_pipeline", {})
    assert not result.ok and "session" in result.data["error"]
    assert turn.confirmation_request() is None
    assert _queued(pg_engine) == []


async def test_run_pipeline_is_refused_to_a_viewer(pg_engine: Engine, world: World) -> None:
    viewer = asked(pg_engine, world, role="viewer")
    assert "run_pipeline" not in {spec.name for spec in viewer.specs()}
    result = await viewer.call("run_pipeline", {})
    assert not result.ok and "investigator" in result.data["error"]
    assert await next_turn(pg_engine, viewer).settle("yes") is None
    assert _queued(pg_engine) == []


async def test_only_data_counts_as_evidence(pg_engine: Engine, world: World) -> None:
    turn = tools(pg_engine, world)
    assert (await turn.call("query_cases", {"risk_level": "critical"})).evidence
    assert not (await turn.call("query_cases", {"risk_level": "low"})).evidence  # no rows
    assert not (await turn.call("query_case_detail", {"case_id": "CASE-999999"})).evidence
    assert [len(data["cases"]) for data in turn.evidence] == [1]


async def test_unknown_tool(pg_engine: Engine, world: World) -> None:
    result = await tools(pg_engine, world).call("drop_tables", {})
    assert not result.ok and "unknown tool" in result.data["error"]


async def test_known_ids(pg_engine: Engine, world: World) -> None:
    known = await tools(pg_engine, world).known_ids(
        {"CASE-000001", FOREIGN_CASE, "CASE-999999"}, {"RULE-MED-001", "RULE-MED-999"}
    )
    assert known == {"CASE-000001", "RULE-MED-001"}


def test_tool_parameters_are_plain_json_schema() -> None:
    schema = json_parameters(TOOLS["query_cases"].args)
    assert "title" not in schema
    assert schema["properties"]["risk_level"]["enum"] == ["low", "medium", "high", "critical"]
    assert "anyOf" not in schema["properties"]["risk_level"]
    assert json_parameters(TOOLS["query_pipeline_stats"].args)["properties"] == {}
