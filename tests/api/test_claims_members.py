"""Claim provenance and member records (with PHI by role, and its audit trail) on the real
PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from fwa_api.app import create_app
from fwa_pipeline.ingest import load_files
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import Member, PhiAuditEvent
from tests.agents.harness import FOREIGN_CASE
from tests.api.conftest import bearer, make_token, serve
from tests.api.seeded import EVIDENCE, World, seed_world
from tests.conftest import make_key
from tests.unit.ingest.batch import files, rows

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

ACME = {"workspace": "acme"}
# M0001 of the ingest tests' batch.
PHI = {"first_name": "Zelda", "last_name": "Quibbleworth", "date_of_birth": "1950-03-14"}
DIED = "2024-01-09"  # M0002's date of death


# --------------------------------------------------------------------------- provenance


async def test_provenance_names_the_run_its_config_and_the_hits(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    world: World = seed_world(pg_engine)
    response = await api.get(
        "/api/claims/ACME-CLM-0/provenance", params=ACME, headers=world.headers["viewer"]
    )
    assert response.status_code == 200, response.text
    found = response.json()
    assert (found["claim"]["claim_id"], found["claim"]["claim_type"]) == ("ACME-CLM-0", "medical")
    assert found["claim"]["last_run_id"] == "run-1"
    run = found["run"]
    assert (run["run_id"], run["status"]) == ("run-1", "success")
    assert run["config_snapshot"] == world.snapshot
    assert found["score"] == {"score": 80.0, "risk_level": "high", "hit_count": 1}
    [hit] = found["hits"]
    assert (hit["rule_id"], hit["evidence"]) == ("RULE-MED-004", EVIDENCE)
    assert hit["rule_config"] == world.snapshot["rules"]["RULE-MED-004"]
    assert found["cases"] == ["CASE-000001"]


async def test_another_workspaces_claim_is_404_like_a_missing_one(
    api: httpx.AsyncClient, pg_engine: Engine
) -> None:
    world = seed_world(pg_engine)
    for claim_id in ("GLOBEX-CLM-0", "NO-SUCH-CLAIM"):
        response = await api.get(
            f"/api/claims/{claim_id}/provenance", params=ACME, headers=world.headers["admin"]
        )
        assert (response.status_code, response.json()["detail"]) == (404, "claim not found")
        assert FOREIGN_CASE not in response.text


# --------------------------------------------------------------------------- members


def load_members(engine: Engine, settings: Settings) -> dict[str, dict[str, str]]:
    """acme gets the ingest tests' batch (members M0001, M0002), globex the same with other
    member ids and names; returns headers by role for acme, and ``globex`` for globex's."""
    load_files(engine, settings, "acme", files())
    theirs = rows()
    for member in theirs["members.csv"]:
        member["member_id"] = "G" + member["member_id"]
        member["last_name"] = "Globexer"
    load_files(engine, settings, "globex", files(theirs))
    headers = {
        role: bearer(make_token(engine, role, "acme", name=f"{role}-acme"))
        for role in ("viewer", "investigator", "admin")
    }
    headers["globex"] = bearer(make_token(engine, "investigator", "globex", name="gina"))
    return headers


def audit_rows(engine: Engine) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        events = session.scalars(select(PhiAuditEvent).order_by(PhiAuditEvent.id))
        return [
            {
                column.key: getattr(event, column.key)
                for column in PhiAuditEvent.__table__.columns
                if column.key not in ("id", "at")
            }
            for event in events
        ]


async def test_an_investigator_reads_phi_and_the_read_is_audited(
    api: httpx.AsyncClient, api_settings: Settings, pg_engine: Engine
) -> None:
    headers = load_members(pg_engine, api_settings)
    for role in ("investigator", "admin"):
        response = await api.get(
            "/api/members/M0001",
            params=ACME,
            headers={**headers[role], "X-Request-ID": f"member-read-{role}"},
        )
        assert response.status_code == 200, response.text
        member = response.json()
        assert {k: member[k] for k in PHI} == PHI
        assert (member["phi_included"], member["gender"], member["state"]) == (True, "F", "OH")
    with session_scope(pg_engine) as session:
        stored = session.get_one(Member, (session.scalar(select(Member.workspace_id)), "M0001"))
        assert stored.first_name != PHI["first_name"]  # encrypted at rest, decrypted for the read
    audits = audit_rows(pg_engine)
    assert [(a["actor"], a["request_id"], a["outcome"]) for a in audits] == [
        ("investigator-acme", "member-read-investigator", "allowed"),
        ("admin-acme", "member-read-admin", "allowed"),
    ]
    for audit in audits:
        assert (audit["action"], audit["resource_type"], audit["resource_id"]) == (
            "read",
            "member",
            "M0001",
        )
        for value in PHI.values():
            assert value not in repr(audit)


async def test_a_viewer_gets_the_record_without_phi(
    api: httpx.AsyncClient, api_settings: Settings, pg_engine: Engine
) -> None:
    headers = load_members(pg_engine, api_settings)
    response = await api.get(
        "/api/members/M0001",
        params=ACME,
        headers={**headers["viewer"], "X-Request-ID": "member-read-viewer"},
    )
    assert response.status_code == 200
    member = response.json()
    assert member["phi_included"] is False
    assert {k: member[k] for k in PHI} == dict.fromkeys(PHI)
    assert (member["member_id"], member["gender"]) == ("M0001", "F")
    for value in PHI.values():
        assert value not in response.text
    [audit] = audit_rows(pg_engine)
    assert (audit["actor"], audit["request_id"], audit["outcome"]) == (
        "viewer-acme",
        "member-read-viewer",
        "denied",
    )


async def test_a_date_of_death_is_phi_too(
    api: httpx.AsyncClient, api_settings: Settings, pg_engine: Engine
) -> None:
    """M0002 died on 2024-01-09: the date is stored encrypted, a viewer gets null (and a truthful
    ``phi_included: false``), the roles allowed PHI get it, and every read is audited."""
    headers = load_members(pg_engine, api_settings)
    with session_scope(pg_engine) as session:
        stored = session.scalars(
            select(Member.date_of_death).where(Member.member_id == "M0002")
        ).one()
    assert stored is not None and stored.startswith("v1:") and DIED not in stored
    read = {}
    for role in ("viewer", "investigator", "admin"):
        response = await api.get(
            "/api/members/M0002",
            params=ACME,
            headers={**headers[role], "X-Request-ID": f"death-{role}"},
        )
        assert response.status_code == 200, response.text
        read[role] = response.json()
        if role == "viewer":
            assert DIED not in response.text
    assert (read["viewer"]["phi_included"], read["viewer"]["date_of_death"]) == (False, None)
    for role in ("investigator", "admin"):
        assert (read[role]["phi_included"], read[role]["date_of_death"]) == (True, DIED)
    audits = audit_rows(pg_engine)
    assert [(a["request_id"], a["outcome"], a["resource_id"]) for a in audits] == [
        ("death-viewer", "denied", "M0002"),
        ("death-investigator", "allowed", "M0002"),
        ("death-admin", "allowed", "M0002"),
    ]
    assert not any(DIED in repr(audit) for audit in audits)


async def test_another_workspaces_member_is_404_and_reads_nothing(
    api: httpx.AsyncClient, api_settings: Settings, pg_engine: Engine
) -> None:
    headers = load_members(pg_engine, api_settings)
    for member_id in ("GM0001", "M9999"):
        response = await api.get(
            f"/api/members/{member_id}", params=ACME, headers=headers["investigator"]
        )
        assert (response.status_code, response.json()["detail"]) == (404, "member not found")
        assert "Globexer" not in response.text
    assert audit_rows(pg_engine) == []
    # globex's own investigator reads it.
    theirs = await api.get(
        "/api/members/GM0001", params={"workspace": "globex"}, headers=headers["globex"]
    )
    assert theirs.json()["last_name"] == "Globexer"


async def test_phi_that_cannot_be_decrypted_is_503_and_audited_as_an_error(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    headers = load_members(pg_engine, api_settings)
    # A server whose key is not the one the batch was encrypted with.
    other = api_settings.model_copy(update={"encryption_key": SecretStr(make_key("other"))})
    async with serve(create_app(other, redis_prefix=redis_prefix)) as http:
        response = await http.get(
            "/api/members/M0001",
            params=ACME,
            headers={**headers["investigator"], "X-Request-ID": "member-read-broken"},
        )
    assert response.status_code == 503
    assert set(response.json()) == {"detail", "request_id"}
    [audit] = audit_rows(pg_engine)
    assert (audit["request_id"], audit["outcome"]) == ("member-read-broken", "error")
