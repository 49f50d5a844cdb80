"""The cases routes on the real PostgreSQL and Redis: listing with filters and pages, the detail,
the investigator's status changes and notes, and workspace isolation."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from fastapi import APIRouter, Request
from sqlalchemy import Engine, func, select, update

from fwa_api.app import create_app
from fwa_api.services import services
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.cases import add_case_note, upsert_cases
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ApiToken, CaseEvent, InvestigationCase
from tests.agents.harness import FOREIGN_CASE, FOREIGN_SUBJECT
from tests.api.conftest import make_token, serve
from tests.api.seeded import ACME_CASES, EVIDENCE, World, proposals, seed_world

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

ACME = {"workspace": "acme"}


@pytest.fixture
def world(pg_engine: Engine) -> World:
    return seed_world(pg_engine)


def ids(page: dict[str, Any]) -> list[str]:
    return [c["case_id"] for c in page["items"]]


def history(engine: Engine, number: str) -> list[tuple[str, str, dict[str, Any]]]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(CaseEvent.actor, CaseEvent.action, CaseEvent.detail)
            .join(InvestigationCase, InvestigationCase.id == CaseEvent.case_id)
            .where(InvestigationCase.case_number == number)
            .order_by(CaseEvent.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def error_fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {error["field"] for error in response.json()["errors"]}


# --------------------------------------------------------------------------- list


async def test_cases_are_listed_by_score_with_a_total(api: httpx.AsyncClient, world: World) -> None:
    response = await api.get("/api/cases", params=ACME, headers=world.headers["viewer"])
    assert response.status_code == 200
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (6, 50, 0)
    assert ids(page) == [number for number, _, _ in ACME_CASES]
    assert FOREIGN_CASE not in response.text and FOREIGN_SUBJECT not in response.text
    first = page["items"][0]
    assert first == {
        "case_id": "CASE-000001",
        "subject_type": "provider",
        "subject_id": "1234567893",
        "risk_score": 95.5,
        "risk_level": "critical",
        "status": "open",
        "flagged_billed": 1000.0,
        "flagged_paid": 12345.0,
        "assignee": None,
        "disposition": None,
        "amount_recovered": None,
    }


async def test_filters_and_pages(api: httpx.AsyncClient, world: World) -> None:
    async def listed(**params: Any) -> dict[str, Any]:
        response = await api.get(
            "/api/cases", params={**ACME, **params}, headers=world.headers["viewer"]
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    critical = await listed(risk_level="critical")
    assert (critical["total"], ids(critical)) == (2, ["CASE-000001", "CASE-000005"])
    closed = await listed(status="closed")
    assert ids(closed) == ["CASE-000003"]
    open_medium = await listed(risk_level="medium", status="open")
    assert ids(open_medium) == ["CASE-000007"]

    everything = [number for number, _, _ in ACME_CASES]
    pages = [await listed(limit=4, offset=offset) for offset in (0, 4, 8)]
    assert [p["total"] for p in pages] == [6, 6, 6]  # the total counts every match, every page
    assert [ids(p) for p in pages] == [everything[:4], everything[4:], []]


async def test_bad_filters_are_422_naming_the_parameter(
    api: httpx.AsyncClient, world: World
) -> None:
    viewer = world.headers["viewer"]
    for params, field in [
        ({"risk_level": "extreme"}, "query.risk_level.0"),
        ({"status": "resolved"}, "query.status.0"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
        ({"offset": -1}, "query.offset"),
    ]:
        response = await api.get("/api/cases", params={**ACME, **params}, headers=viewer)
        assert error_fields(response) == {field}


# --------------------------------------------------------------------------- detail


async def test_case_detail_has_hits_with_evidence_claims_and_history(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get("/api/cases/case-1", params=ACME, headers=world.headers["viewer"])
    assert response.status_code == 200
    case = response.json()
    assert (case["case_id"], case["risk_level"], case["status"]) == (
        "CASE-000001",
        "critical",
        "open",
    )
    assert case["explanation"]["top_rules"] == ["RULE-MED-004"]
    assert case["claim_count"] == 3
    assert [c["claim_id"] for c in case["claims"]] == [f"ACME-CLM-{n}" for n in range(3)]
    assert case["rules"] == [
        {"rule_id": "RULE-MED-004", "name": "Impossible day", "hits": 3, "max_severity": 1.0}
    ]
    assert case["hit_count"] == 3
    assert {h["claim_id"] for h in case["hits"]} == {f"ACME-CLM-{n}" for n in range(3)}
    hit = case["hits"][0]
    assert (hit["rule_id"], hit["run_id"], hit["evidence"]) == ("RULE-MED-004", "run-1", EVIDENCE)
    assert [(e["actor"], e["action"]) for e in case["history"]] == [("pipeline:run-1", "opened")]


async def test_a_case_outside_the_workspace_is_404_like_a_missing_one(
    api: httpx.AsyncClient, world: World
) -> None:
    answers = []
    for case_id in (FOREIGN_CASE, "CASE-999999", "not-a-case"):
        response = await api.get(
            f"/api/cases/{case_id}", params=ACME, headers=world.headers["admin"]
        )
        assert response.status_code == 404
        assert FOREIGN_SUBJECT not in response.text
        answers.append(response.json()["detail"])
    assert answers == ["case not found"] * 3
    # Naming the other workspace does not help: a token never sees it.
    response = await api.get(
        f"/api/cases/{FOREIGN_CASE}",
        params={"workspace": "globex"},
        headers=world.headers["admin"],
    )
    assert (response.status_code, response.json()["detail"]) == (404, "workspace not found")


# --------------------------------------------------------------------------- actions


async def test_a_status_change_and_a_note_are_appended_to_the_history(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    investigator = world.headers["investigator"]
    actor = world.names["investigator"]
    changed = await api.post(
        "/api/cases/CASE-000002/status",
        params=ACME,
        headers=investigator,
        json={"status": "under_review", "note": "  billing pattern looks deliberate "},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["case"]["case_id"], body["case"]["status"]) == ("CASE-000002", "under_review")
    assert (body["event"]["actor"], body["event"]["action"]) == (actor, "status_changed")
    assert body["event"]["detail"] == {
        "from": "open",
        "to": "under_review",
        "note": "billing pattern looks deliberate",
    }
    noted = await api.post(
        "/api/cases/case-2/notes",
        params=ACME,
        headers=world.headers["admin"],
        json={"note": "asked the provider for records"},
    )
    assert noted.status_code == 201, noted.text
    assert noted.json()["event"]["action"] == "note"

    detail = (await api.get("/api/cases/CASE-000002", params=ACME, headers=investigator)).json()
    assert detail["status"] == "under_review"
    assert [(e["actor"], e["action"]) for e in detail["history"]] == [
        (actor, "status_changed"),
        (world.names["admin"], "note"),
    ]
    assert detail["history"][1]["detail"] == {"note": "asked the provider for records"}
    listed = await api.get(
        "/api/cases", params={**ACME, "status": "under_review"}, headers=investigator
    )
    assert ids(listed.json()) == ["CASE-000002"]
    assert [action for _, action, _ in history(pg_engine, "CASE-000002")] == [
        "status_changed",
        "note",
    ]


async def test_a_viewer_cannot_change_a_case(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    viewer = world.headers["viewer"]
    status = await api.post(
        "/api/cases/CASE-000001/status", params=ACME, headers=viewer, json={"status": "closed"}
    )
    note = await api.post(
        "/api/cases/CASE-000001/notes", params=ACME, headers=viewer, json={"note": "hello"}
    )
    for response in (status, note):
        assert (response.status_code, response.json()["detail"]) == (
            403,
            "requires the investigator role",
        )
    assert history(pg_engine, "CASE-000001") == [("pipeline:run-1", "opened", {})]


async def test_invalid_changes_are_refused_with_a_reason(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    investigator = world.headers["investigator"]

    async def post(case_id: str, action: str, body: dict[str, Any]) -> httpx.Response:
        return await api.post(
            f"/api/cases/{case_id}/{action}", params=ACME, headers=investigator, json=body
        )

    assert error_fields(await post("CASE-000001", "status", {"status": "resolved"})) == {
        "body.status"
    }
    assert error_fields(await post("CASE-000001", "status", {})) == {"body.status"}
    assert error_fields(await post("CASE-000001", "notes", {"note": "   "})) == {"body.note"}
    assert error_fields(await post("CASE-000001", "notes", {"note": "x" * 4001})) == {"body.note"}

    same = await post("CASE-000001", "status", {"status": "open"})
    assert (same.status_code, same.json()["detail"]) == (409, "CASE-000001 is already open")

    # CASE-000003 (member M2) is closed; a later run opens a new case on M2.
    with session_scope(pg_engine) as session:
        upsert_cases(session, world.acme, "run-2", proposals(("member", "M2", 60.0, "medium")))
    reopen = await post("CASE-000003", "status", {"status": "open"})
    assert (reopen.status_code, reopen.json()["detail"]) == (
        409,
        "CASE-000003 cannot reopen: CASE-000008 is open",
    )
    # Nothing refused left a trace.
    assert [action for _, action, _ in history(pg_engine, "CASE-000001")] == ["opened"]
    assert history(pg_engine, "CASE-000003") == []


# Blank to ``str.strip()``: the ASCII separators U+001C..U+001F (which pydantic's own stripping
# and JSON Schema's ``\s`` keep), tabs, line and ideographic spaces.
BLANK_TEXT = ["\x1f", " \x1c\t\x1d ", "\u2028\u3000"]


@pytest.mark.parametrize("blank", BLANK_TEXT)
async def test_blank_text_is_refused_by_both_actions_naming_the_field(
    api: httpx.AsyncClient, world: World, pg_engine: Engine, blank: str
) -> None:
    investigator = world.headers["investigator"]
    for action, body in (
        ("notes", {"note": blank}),
        ("status", {"status": "escalated", "note": blank}),
    ):
        response = await api.post(
            f"/api/cases/CASE-000001/{action}", params=ACME, headers=investigator, json=body
        )
        assert error_fields(response) == {"body.note"}, action
        [error] = response.json()["errors"]
        assert "blank" in error["message"]
    assert [action for _, action, _ in history(pg_engine, "CASE-000001")] == ["opened"]


async def test_a_refusal_from_the_store_is_a_422_naming_the_field(
    api_settings: Settings, redis_prefix: str, world: World, pg_engine: Engine
) -> None:
    """A route that skipped request validation still gets no 500: the store's own check answers
    422 naming the field, and the value is not echoed."""
    unchecked = APIRouter()

    @unchecked.post("/unchecked-note")
    def unchecked_note(request: Request, note: str) -> None:
        with session_scope(services(request).engine) as session:
            case = session.scalars(
                select(InvestigationCase).where(InvestigationCase.case_number == "CASE-000001")
            ).one()
            add_case_note(session, case, "tester", note)

    app = create_app(api_settings, redis_prefix=redis_prefix)
    app.include_router(unchecked)
    async with serve(app) as http:
        for note in ("\x1f", "SECRET\x00"):
            response = await http.post("/unchecked-note", params={"note": note})
            assert response.status_code == 422, response.text
            assert response.json()["errors"] == [
                {"field": "note", "message": ANY, "type": "invalid_input"}
            ]
            assert "SECRET" not in response.text
    assert [action for _, action, _ in history(pg_engine, "CASE-000001")] == ["opened"]


async def test_another_workspaces_case_cannot_be_changed(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    for action, body in (("status", {"status": "closed"}), ("notes", {"note": "mine now"})):
        response = await api.post(
            f"/api/cases/{FOREIGN_CASE}/{action}",
            params=ACME,
            headers=world.headers["investigator"],
            json=body,
        )
        assert (response.status_code, response.json()["detail"]) == (404, "case not found")
    with session_scope(pg_engine) as session:
        foreign = session.scalars(
            select(InvestigationCase).where(InvestigationCase.case_number == FOREIGN_CASE)
        ).one()
        assert foreign.status == "open"
        events = session.scalar(
            select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == foreign.id)
        )
        assert events == 1
    # Its own investigator still can.
    response = await api.post(
        f"/api/cases/{FOREIGN_CASE}/status",
        params={"workspace": "globex"},
        headers=world.headers["globex"],
        json={"status": "escalated"},
    )
    assert response.status_code == 200 and response.json()["case"]["status"] == "escalated"


async def test_the_routes_are_in_the_schema_with_typed_answers(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path, method in [
        ("/api/cases", "get"),
        ("/api/cases/{case_id}", "get"),
        ("/api/cases/{case_id}/status", "post"),
        ("/api/cases/{case_id}/notes", "post"),
        ("/api/cases/{case_id}/assign", "post"),
        ("/api/rules", "get"),
        ("/api/rules/{rule_id}", "get"),
        ("/api/providers/{npi}", "get"),
        ("/api/claims/{claim_id}/provenance", "get"),
        ("/api/members/{member_id}", "get"),
    ]:
        operation = paths[path][method]
        ok = operation["responses"]["201" if path.endswith("notes") else "200"]
        assert ok["content"]["application/json"]["schema"]["$ref"].startswith(
            "#/components/schemas/"
        ), path
        assert "workspace" in {p["name"] for p in operation["parameters"]}, path


# --------------------------------------------------------------------------- dispositions


async def test_closing_needs_a_disposition_and_only_closing_takes_one(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    investigator = world.headers["investigator"]

    async def status(body: dict[str, Any]) -> httpx.Response:
        return await api.post(
            "/api/cases/CASE-000002/status", params=ACME, headers=investigator, json=body
        )

    missing = await status({"status": "closed"})
    assert error_fields(missing) == {"body.disposition"}
    assert "disposition" in missing.json()["errors"][0]["message"]
    assert error_fields(await status({"status": "closed", "disposition": "fraud"})) == {
        "body.disposition"
    }
    assert error_fields(
        await status({"status": "closed", "disposition": "no_issue", "amount_recovered": -1})
    ) == {"body.amount_recovered"}
    assert error_fields(await status({"status": "escalated", "disposition": "no_issue"})) == {
        "body.disposition"
    }
    assert error_fields(await status({"status": "escalated", "amount_recovered": 5})) == {
        "body.amount_recovered"
    }
    assert history(pg_engine, "CASE-000002") == []  # nothing refused left a trace


async def test_a_closed_case_keeps_its_disposition_until_it_reopens(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    investigator = world.headers["investigator"]
    actor = world.names["investigator"]
    closed = await api.post(
        "/api/cases/CASE-000002/status",
        params=ACME,
        headers=investigator,
        json={
            "status": "closed",
            "disposition": "confirmed_fraud",
            "amount_recovered": 1250.5,
            "note": "provider repaid",
        },
    )
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["case"]["disposition"], body["case"]["amount_recovered"]) == (
        "confirmed_fraud",
        1250.5,
    )
    closing = {
        "from": "open",
        "to": "closed",
        "disposition": "confirmed_fraud",
        "amount_recovered": 1250.5,
        "note": "provider repaid",
    }
    assert (body["event"]["actor"], body["event"]["action"], body["event"]["detail"]) == (
        actor,
        "status_changed",
        closing,
    )
    detail = (await api.get("/api/cases/CASE-000002", params=ACME, headers=investigator)).json()
    assert (detail["disposition"], detail["amount_recovered"]) == ("confirmed_fraud", 1250.5)
    listed = await api.get("/api/cases", params={**ACME, "status": "closed"}, headers=investigator)
    assert {c["case_id"]: c["disposition"] for c in listed.json()["items"]} == {
        "CASE-000002": "confirmed_fraud",
        "CASE-000003": None,  # closed before dispositions
    }

    reopened = await api.post(
        "/api/cases/CASE-000002/status", params=ACME, headers=investigator, json={"status": "open"}
    )
    assert reopened.status_code == 200, reopened.text
    case = reopened.json()["case"]
    assert (case["status"], case["disposition"], case["amount_recovered"]) == ("open", None, None)
    # The history keeps what the case was closed with.
    assert history(pg_engine, "CASE-000002") == [
        (actor, "status_changed", closing),
        (actor, "status_changed", {"from": "closed", "to": "open"}),
    ]


# --------------------------------------------------------------------------- assignment


async def test_a_case_is_assigned_to_an_investigator_of_its_workspace(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    admin = world.headers["admin"]
    assignee = world.names["investigator"]

    async def assign(name: str | None, headers: dict[str, str] = admin) -> httpx.Response:
        return await api.post(
            "/api/cases/case-2/assign", params=ACME, headers=headers, json={"assignee": name}
        )

    assigned = await assign(assignee)
    assert assigned.status_code == 200, assigned.text
    body = assigned.json()
    assert body["case"]["assignee"] == assignee
    assert (body["event"]["actor"], body["event"]["action"], body["event"]["detail"]) == (
        world.names["admin"],
        "assigned",
        {"from": None, "to": assignee},
    )
    assert body["event"]["at"]
    again = await assign(assignee)
    assert (again.status_code, again.json()["detail"]) == (
        409,
        "CASE-000002 already has that assignee",
    )
    mine = await api.get(
        "/api/cases", params={**ACME, "assignee": assignee}, headers=world.headers["viewer"]
    )
    assert ids(mine.json()) == ["CASE-000002"]

    # Whoever may change a case may assign it; a viewer may not.
    unassigned = await assign(None, world.headers["investigator"])
    assert unassigned.status_code == 200 and unassigned.json()["case"]["assignee"] is None
    denied = await assign(assignee, world.headers["viewer"])
    assert (denied.status_code, denied.json()["detail"]) == (403, "requires the investigator role")
    assert history(pg_engine, "CASE-000002") == [
        (world.names["admin"], "assigned", {"from": None, "to": assignee}),
        (assignee, "assigned", {"from": assignee, "to": None}),
    ]


async def test_an_assignee_who_cannot_work_the_case_is_refused(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    make_token(pg_engine, "investigator", "acme", name="revoked-ivy")
    make_token(pg_engine, "investigator", "acme", name="expired-eve")
    with session_scope(pg_engine) as session:
        session.execute(
            update(ApiToken).where(ApiToken.name == "revoked-ivy").values(revoked_at=func.now())
        )
        session.execute(
            update(ApiToken).where(ApiToken.name == "expired-eve").values(expires_at=func.now())
        )
    for name in (
        "nobody",
        "gina",  # an investigator of globex only
        world.names["viewer"],  # may see the case, not work it
        "revoked-ivy",
        "expired-eve",
    ):
        response = await api.post(
            "/api/cases/CASE-000002/assign",
            params=ACME,
            headers=world.headers["investigator"],
            json={"assignee": name},
        )
        assert error_fields(response) == {"body.assignee"}, name
    blank = await api.post(
        "/api/cases/CASE-000002/assign",
        params=ACME,
        headers=world.headers["investigator"],
        json={"assignee": " "},
    )
    assert error_fields(blank) == {"body.assignee"}
    # Another workspace's case is not found, whoever the assignee.
    foreign = await api.post(
        f"/api/cases/{FOREIGN_CASE}/assign",
        params=ACME,
        headers=world.headers["admin"],
        json={"assignee": world.names["investigator"]},
    )
    assert (foreign.status_code, foreign.json()["detail"]) == (404, "case not found")
    assert history(pg_engine, "CASE-000002") == []


# --------------------------------------------------------------------------- the queue


async def test_the_queue_filters_sorts_and_counts_by_risk_level(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    opened = {  # the day each acme case was opened
        "CASE-000001": "2026-01-05",
        "CASE-000002": "2026-01-20",
        "CASE-000003": "2026-01-01",
        "CASE-000005": "2026-02-10",
        "CASE-000006": "2026-01-20",
        "CASE-000007": "2026-02-28",
    }
    with session_scope(pg_engine) as session:
        for number, day in opened.items():
            session.execute(
                update(InvestigationCase)
                .where(InvestigationCase.case_number == number)
                .values(created_at=dt.datetime.fromisoformat(f"{day}T23:30:00+00:00"))
            )
        session.execute(
            update(InvestigationCase)
            .where(InvestigationCase.case_number.in_(["CASE-000002", "CASE-000007"]))
            .values(assignee="viewer-acme")
        )

    async def listed(params: Any) -> dict[str, Any]:
        response = await api.get(
            "/api/cases", params=[*ACME.items(), *params], headers=world.headers["viewer"]
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    everything = await listed([])
    assert everything["counts_by_risk_level"] == {"low": 0, "medium": 2, "high": 2, "critical": 2}

    # Repeated values widen a filter; the counts ignore the risk level filter, not the others.
    page = await listed([("risk_level", "critical"), ("risk_level", "medium")])
    assert ids(page) == ["CASE-000001", "CASE-000005", "CASE-000007", "CASE-000003"]
    assert page["total"] == 4 and page["counts_by_risk_level"] == everything["counts_by_risk_level"]
    page = await listed([("status", "closed"), ("status", "escalated"), ("risk_level", "high")])
    assert (ids(page), page["total"]) == ([], 0)
    assert page["counts_by_risk_level"] == {"low": 0, "medium": 1, "high": 0, "critical": 0}

    page = await listed([("assignee", "viewer-acme")])
    assert ids(page) == ["CASE-000002", "CASE-000007"]
    page = await listed([("assignee", "none")])
    assert ids(page) == ["CASE-000001", "CASE-000005", "CASE-000006", "CASE-000003"]
    assert page["counts_by_risk_level"] == {"low": 0, "medium": 1, "high": 1, "critical": 2}

    # CASE-000001 has three hits of the rule: listed once, counted once. Globex's case cites
    # the rule too and never appears.
    page = await listed([("rule_id", "RULE-MED-004")])
    assert (ids(page), page["total"]) == (["CASE-000001"], 1)
    assert page["counts_by_risk_level"] == {"low": 0, "medium": 0, "high": 0, "critical": 1}
    assert FOREIGN_CASE not in str(page)
    assert ids(await listed([("rule_id", "RULE-MED-001")])) == []

    assert ids(await listed([("subject_id", "M7")])) == ["CASE-000006"]
    assert ids(await listed([("subject_id", FOREIGN_SUBJECT)])) == []

    # Both ends are whole days, in UTC.
    page = await listed([("opened_from", "2026-01-20"), ("opened_to", "2026-02-10")])
    assert ids(page) == ["CASE-000005", "CASE-000006", "CASE-000002"]
    assert ids(await listed([("opened_to", "2026-01-05")])) == ["CASE-000001", "CASE-000003"]

    # Amount: flagged_paid, most first; age: oldest first; ties by case number.
    assert ids(await listed([("sort", "amount")])) == [
        "CASE-000001",  # 12,345 paid
        "CASE-000002",  # 800
        "CASE-000003",  # 800
        "CASE-000005",  # 80
        "CASE-000006",
        "CASE-000007",
    ]
    assert ids(await listed([("sort", "age")])) == [
        "CASE-000003",
        "CASE-000001",
        "CASE-000002",  # opened the same moment as CASE-000006
        "CASE-000006",
        "CASE-000005",
        "CASE-000007",
    ]
    page = await listed([("sort", "age"), ("status", "open"), ("limit", 2), ("offset", 2)])
    assert (ids(page), page["total"]) == (["CASE-000006", "CASE-000005"], 5)


async def test_bad_queue_parameters_are_422_naming_the_parameter(
    api: httpx.AsyncClient, world: World
) -> None:
    viewer = world.headers["viewer"]
    for params, field in [
        ([("status", "open"), ("status", "resolved")], "query.status.1"),
        ([("sort", "oldest")], "query.sort"),
        ([("rule_id", "RULE-MED-999")], "query.rule_id"),
        ([("rule_id", "R" * 33)], "query.rule_id"),
        ([("subject_id", "x\x00")], "query.subject_id"),
        ([("opened_from", "2026-13-01")], "query.opened_from"),
        ([("opened_from", "2026-02-01"), ("opened_to", "2026-01-31")], "query.opened_to"),
    ]:
        response = await api.get("/api/cases", params=[*ACME.items(), *params], headers=viewer)
        assert error_fields(response) == {field}
