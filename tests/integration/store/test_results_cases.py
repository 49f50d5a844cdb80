"""Run results, stored hits, case upserts, the case workflow and claim provenance, on SQLite and
PostgreSQL alike (COPY, jsonb, the claim_status view and the partial unique index are each
engine's own)."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from fwa_pipeline.domain.cases import case_proposals, case_subjects
from fwa_pipeline.domain.config import default_config
from fwa_pipeline.domain.feedback import Verdicts
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS
from fwa_pipeline.domain.scoring import score_claims
from fwa_pipeline.kit.validation import InvalidInput
from fwa_pipeline.store.cases import (
    CaseConflictError,
    add_case_note,
    assign_case,
    change_case_status,
    rule_verdicts,
    upsert_cases,
)
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import (
    CaseEvent,
    ClaimScore,
    HeldClaim,
    InvestigationCase,
    PipelineRun,
    RuleHit,
)
from fwa_pipeline.store.queries import claim_provenance
from fwa_pipeline.store.results import load_case_inputs, load_hits, write_run_results
from tests.integration.store.seeded import (
    PHARM,
    PROV_A,
    PROV_B,
    batches_of,
    cases,
    count,
    events,
    hits_on,
    links,
    propose_and_upsert,
    record,
    seed,
    statuses,
)


def test_write_and_reprocess(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine)
    first = pd.concat(
        [
            hits_on(seeded, "RULE-MED-003", "medical", [0, 1]),
            hits_on(
                seeded, "RULE-MED-005", "medical", [0], severity=0.5, subject=("provider", PROV_A)
            ),
            hits_on(seeded, "RULE-RX-001", "pharmacy", [0], weight=5.0, subject=("member", "M0")),
        ],
        ignore_index=True,
    )
    held = seeded.keys("medical", [int(seeded.medical["claim_pk"].iloc[5])])
    written = record(store_engine, seeded, "run-1", first, config, held=held)
    assert written == {"processed": 7, "held": 1, "hits": 4, "scores": 3}

    with session_scope(store_engine) as session:
        stored = session.scalars(select(RuleHit).order_by(RuleHit.id)).all()
        assert {h.run_id for h in stored} == {"run-1"}
        assert stored[0].evidence == {"position": 0, "peer_median": 1.5, "nan": None}
        score_rows = {
            (s.claim_type, s.claim_pk): (s.score, s.risk_level, s.hit_count, s.run_id)
            for s in session.scalars(select(ClaimScore))
        }
    pk0, pk1 = (int(p) for p in seeded.medical["claim_pk"].iloc[:2])
    assert score_rows[("medical", pk0)] == (100.0, "critical", 2, "run-1")
    assert score_rows[("medical", pk1)] == (70.0, "high", 1, "run-1")
    assert len(score_rows) == 3
    medical_status = statuses(store_engine, seeded, "medical")
    assert medical_status[int(held["claim_pk"].iloc[0])] == ("held", "run-1")
    assert medical_status[pk0] == ("processed", "run-1")
    assert set(statuses(store_engine, seeded, "pharmacy").values()) == {("processed", "run-1")}
    with store_engine.connect() as connection:
        assert connection.execute(select(HeldClaim.claim_pk, HeldClaim.reason)).all() == [
            (int(held["claim_pk"].iloc[0]), "invalid_npi")
        ]

    # A reprocess replaces the earlier results: claim 0 now has one weaker hit, claim 1 none,
    # and claim 0 of pharmacy is held (its earlier hit and score go too).
    second = hits_on(seeded, "RULE-MED-003", "medical", [0], severity=0.5)
    rx_held = seeded.keys("pharmacy", [int(seeded.pharmacy["claim_pk"].iloc[0])])
    record(store_engine, seeded, "run-2", second, config, held=rx_held)
    with session_scope(store_engine) as session:
        assert [(h.claim_pk, h.run_id) for h in session.scalars(select(RuleHit))] == [
            (pk0, "run-2")
        ]
        assert [(s.claim_pk, s.score) for s in session.scalars(select(ClaimScore))] == [(pk0, 35.0)]
    assert statuses(store_engine, seeded, "pharmacy")[int(rx_held["claim_pk"].iloc[0])] == (
        "held",
        "run-2",
    )
    assert statuses(store_engine, seeded, "medical")[int(held["claim_pk"].iloc[0])] == (
        "processed",
        "run-2",
    )


def test_write_rejects_inconsistent_input(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine)
    other = seed(store_engine, medical=1, pharmacy=0, name="other")
    hits = hits_on(seeded, "RULE-MED-003", "medical", [0])
    everything = pd.concat([seeded.keys("medical"), seeded.keys("pharmacy")], ignore_index=True)

    none = everything.iloc[0:0].assign(reason="")

    def write(processed: pd.DataFrame, held: pd.DataFrame) -> None:
        with store_engine.begin() as connection:
            write_run_results(
                connection,
                seeded.workspace_id,
                "bad",
                batches_of(store_engine, seeded, everything),
                hits,
                score_claims(hits, config),
                processed,
                held,
            )

    with pytest.raises(ValueError, match="listed twice"):
        write(everything, everything.head(1).assign(reason="invalid_npi"))
    with pytest.raises(ValueError, match="1 claim\\(s\\) in hits are not among the processed"):
        write(everything.iloc[1:], none)
    foreign = pd.concat([everything, other.keys("medical")], ignore_index=True)
    with pytest.raises(ValueError, match="7 medical claim\\(s\\) processed or held, but"):
        write(foreign, none)
    # Nothing of the failed writes remains.
    assert count(store_engine, RuleHit) == 0
    assert {s for s, _ in statuses(store_engine, seeded, "medical").values()} == {"pending"}


def test_load_hits(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine)
    hits = pd.concat(
        [
            hits_on(seeded, "RULE-MED-003", "medical", [0, 1, 2]),  # claim-level: A, B, A
            hits_on(seeded, "RULE-MED-005", "medical", [3], subject=("provider", PROV_B)),
            hits_on(seeded, "RULE-RX-002", "pharmacy", [0], subject=("member", "M0")),
            hits_on(seeded, "RULE-RX-005", "pharmacy", [1]),  # claim-level: the pharmacy
        ],
        ignore_index=True,
    )
    record(store_engine, seeded, "run-1", hits, config)

    by_claim = load_hits(
        store_engine, seeded.workspace_id, claims=seeded.keys("medical").iloc[[1, 3]]
    )
    assert list(by_claim.columns) == HIT_FRAME_COLUMNS
    assert by_claim["rule_id"].tolist() == ["RULE-MED-003", "RULE-MED-005"]
    assert by_claim["evidence"].iloc[0]["peer_median"] == 1.5
    assert by_claim["claim_pk"].dtype == "int64"

    subjects = pd.DataFrame(
        {"subject_type": ["provider", "pharmacy"], "subject_id": [PROV_A, PHARM]}
    )
    by_subject = load_hits(store_engine, seeded.workspace_id, subjects=subjects)
    # Provider A's claim-level hits (claims 0, 2) and the pharmacy's claim-level hit.
    assert sorted(zip(by_subject["rule_id"], by_subject["claim_id"], strict=True)) == [
        ("RULE-MED-003", "MC0"),
        ("RULE-MED-003", "MC2"),
        ("RULE-RX-005", "RX1"),
    ]
    both = load_hits(
        store_engine,
        seeded.workspace_id,
        subjects=subjects,
        claims=seeded.keys("medical").iloc[[3]],
    )
    assert len(both) == 4
    none = load_hits(store_engine, seeded.workspace_id, claims=seeded.keys("medical").iloc[0:0])
    assert none.empty
    assert list(none.columns) == HIT_FRAME_COLUMNS
    with pytest.raises(ValueError, match="needs subjects, claims or both"):
        load_hits(store_engine, seeded.workspace_id)
    # Another workspace's hits never leak in.
    assert load_hits(store_engine, seeded.workspace_id + 1, subjects=subjects).empty


def test_case_lifecycle(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine, batch_per_claim=True)
    # Provider A: claims 0 and 2 over the MUE (70 each) -> high; provider B: one weak hit.
    run1 = pd.concat(
        [
            hits_on(seeded, "RULE-MED-003", "medical", [0, 2]),
            hits_on(seeded, "RULE-MED-003", "medical", [1], severity=0.2),
        ],
        ignore_index=True,
    )
    record(store_engine, seeded, "run-1", run1, config)
    assert propose_and_upsert(store_engine, seeded, "run-1", run1, config) == {
        "opened": 1,
        "updated": 0,
        "unchanged": 0,
        "skipped_closed": 0,
        "not_qualifying": 0,
    }
    [case] = cases(store_engine)
    assert case.case_number == f"CASE-{case.id:06d}"
    assert (case.subject_type, case.subject_id, case.status) == ("provider", PROV_A, "open")
    assert case.risk_level == "high"
    assert case.run_id == "run-1"
    assert case.flagged_billed == 100.0 + 102.0
    assert case.explanation["rules"][0]["rule_id"] == "RULE-MED-003"
    assert links(store_engine, case.id) == {int(p) for p in seeded.medical["claim_pk"].iloc[[0, 2]]}
    assert events(store_engine) == [(case.id, "opened", "pipeline:run-1")]

    # The same batch again: nothing opens, nothing is written.
    assert propose_and_upsert(store_engine, seeded, "run-1b", run1, config)["unchanged"] == 1
    assert len(cases(store_engine)) == 1
    assert len(events(store_engine)) == 1
    assert cases(store_engine)[0].run_id == "run-1"

    # An incremental run: a new hit on claim 4 (provider A). The case is rebuilt from all its
    # stored hits, not only the new one, and gains the claim.
    run2 = hits_on(seeded, "RULE-MED-006", "medical", [4], weight=9.0)
    processed = seeded.keys("medical", [int(seeded.medical["claim_pk"].iloc[4])])
    record(store_engine, seeded, "run-2", run2, config, processed=processed)
    assert propose_and_upsert(store_engine, seeded, "run-2", run2, config)["updated"] == 1
    [case] = cases(store_engine)
    assert case.risk_score > 90.0
    assert case.risk_level == "critical"
    assert case.run_id == "run-2"
    assert {r["rule_id"] for r in case.explanation["rules"]} == {"RULE-MED-003", "RULE-MED-006"}
    assert links(store_engine, case.id) == {
        int(p) for p in seeded.medical["claim_pk"].iloc[[0, 2, 4]]
    }
    assert [(a, actor) for _, a, actor in events(store_engine)] == [
        ("opened", "pipeline:run-1"),
        ("rescored", "pipeline:run-2"),
    ]
    with session_scope(store_engine) as session:
        rescored = session.scalars(select(CaseEvent).where(CaseEvent.action == "rescored")).one()
        assert rescored.detail["from"]["risk_level"] == "high"
        assert rescored.detail["to"]["risk_level"] == "critical"
        assert rescored.detail["claims_added"] == 1
        assert rescored.detail["evidence_changed"] is True

    # A score fallen below case_min_level rescores the open case down; it does not leave it at
    # its old level, nor open a case for a subject without one.
    provider_a = pd.DataFrame({"subject_type": ["provider"], "subject_id": [PROV_A]})
    inputs = load_case_inputs(store_engine, seeded.workspace_id, provider_a)
    # Critical from 95 now, and only critical opens a case: the case (90-odd) is high.
    bands = {"low": 0.0, "medium": 40.0, "high": 70.0, "critical": 95.0}
    stricter = default_config(scoring={"case_min_level": "critical", "bands": bands})
    lowered = case_proposals(
        inputs.hits, inputs.claims, inputs.scores, stricter, provider_a, provider_a
    )
    with session_scope(store_engine) as session:
        counts = upsert_cases(session, seeded.workspace_id, "run-2a", lowered)
        assert (counts["updated"], counts["opened"]) == (1, 0)
        elsewhere = lowered.assign(subject_id="elsewhere")  # no case: none opens
        assert (
            upsert_cases(session, seeded.workspace_id, "run-2a", elsewhere)["not_qualifying"] == 1
        )
    [case] = cases(store_engine)
    assert (case.risk_level, case.run_id) == ("high", "run-2a")
    assert propose_and_upsert(store_engine, seeded, "run-2", run2, config)["updated"] == 1

    # Closed: the same evidence does not reopen it ...
    with session_scope(store_engine) as session:
        closed = session.get(InvestigationCase, case.id)
        assert closed is not None
        for status, disposition, amount, field in [
            ("closed", None, None, "disposition"),
            ("closed", "fraud", None, "disposition"),
            ("closed", "no_issue", -1.0, "amount_recovered"),
            ("escalated", "no_issue", None, "disposition"),
            ("escalated", None, 10.0, "amount_recovered"),
        ]:
            with pytest.raises(InvalidInput) as refused:
                change_case_status(
                    session,
                    closed,
                    status,
                    "token:alice",
                    disposition=disposition,
                    amount_recovered=amount,
                )
            assert [f for f, _ in refused.value.problems] == [field]
        change_case_status(
            session,
            closed,
            "closed",
            "token:alice",
            note="billing error, refunded",
            disposition="confirmed_waste_abuse",
            amount_recovered=1250.5,
        )
    with session_scope(store_engine) as session:
        # The closed case cites both rules that hit its claims, once each.
        confirmed = Verdicts(confirmed=1)
        assert rule_verdicts(session, seeded.workspace_id) == {
            "RULE-MED-003": confirmed,
            "RULE-MED-006": confirmed,
        }
        assert rule_verdicts(session, seeded.workspace_id, "RULE-MED-006") == {
            "RULE-MED-006": confirmed
        }
        assert rule_verdicts(session, seeded.workspace_id + 1) == {}
        stored = session.get(InvestigationCase, case.id)
        assert stored is not None
        assert (stored.disposition, stored.amount_recovered) == ("confirmed_waste_abuse", 1250.5)
    assert propose_and_upsert(store_engine, seeded, "run-2b", run2, config)["skipped_closed"] == 1
    assert len(cases(store_engine)) == 1
    # ... new evidence opens a new case for the subject.
    run3 = hits_on(seeded, "RULE-MED-002", "medical", [0])
    record(
        store_engine,
        seeded,
        "run-3",
        pd.concat([run1.iloc[:2], run3]),
        config,
        processed=seeded.keys(
            "medical",
            [int(seeded.medical["claim_pk"].iloc[0]), int(seeded.medical["claim_pk"].iloc[2])],
        ),
    )
    assert propose_and_upsert(store_engine, seeded, "run-3", run3, config)["opened"] == 1
    old, new = cases(store_engine)
    assert (old.status, new.status) == ("closed", "open")
    assert new.subject_id == PROV_A
    assert new.case_number == f"CASE-{new.id:06d}"

    # Only one open case per subject: reopening the old one conflicts.
    with session_scope(store_engine) as session, pytest.raises(CaseConflictError, match="is open"):
        change_case_status(session, session.get(InvestigationCase, old.id), "open", "token:bob")


def test_case_workflow(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine, batch_per_claim=True)
    run1 = hits_on(seeded, "RULE-MED-009", "medical", [1], severity=0.1, weight=10.0)
    record(store_engine, seeded, "run-1", run1, config)
    propose_and_upsert(store_engine, seeded, "run-1", run1, config)
    [case] = cases(store_engine)
    assert (case.subject_id, case.risk_level) == (PROV_B, "critical")  # the override

    with session_scope(store_engine) as session:
        case = session.get(InvestigationCase, case.id)
        assert case is not None
        assert assign_case(session, case, "alice", "token:lead") is not None
        assert assign_case(session, case, " alice ", "token:lead") is None  # no change, no entry
        with pytest.raises(InvalidInput):
            assign_case(session, case, "\x1c\x1d", "token:lead")
        assert change_case_status(session, case, "under_review", "token:alice") is not None
        assert change_case_status(session, case, "under_review", "token:alice") is None
        add_case_note(session, case, "token:alice", "called the practice")
        with pytest.raises(InvalidInput) as refused:
            change_case_status(session, case, "archived", "token:alice")
        assert refused.value.problems == [
            ("status", "must be one of open, under_review, escalated, closed")
        ]
        # Blank as str.strip() sees it, the ASCII separators included; nothing is written.
        for blank in ("   ", "\x1f", " \x1c\u3000"):
            with pytest.raises(InvalidInput) as refused:
                add_case_note(session, case, "token:alice", blank)
            assert [field for field, _ in refused.value.problems] == ["note"]
            with pytest.raises(InvalidInput):
                change_case_status(session, case, "escalated", "token:alice", note=blank)
        change_case_status(session, case, "escalated", "token:alice", note="to SIU")
    with session_scope(store_engine) as session:
        stored = session.get(InvestigationCase, case.id)
        assert stored is not None
        assert (stored.status, stored.assignee) == ("escalated", "alice")
        history = [(e.action, e.actor, e.detail) for e in stored.history]
    assert history == [
        ("opened", "pipeline:run-1", history[0][2]),
        ("assigned", "token:lead", {"from": None, "to": "alice"}),
        ("status_changed", "token:alice", {"from": "open", "to": "under_review"}),
        ("note", "token:alice", {"note": "called the practice"}),
        (
            "status_changed",
            "token:alice",
            {"from": "under_review", "to": "escalated", "note": "to SIU"},
        ),
    ]
    assert history[0][2]["override"] == "RULE-MED-009"

    # The pipeline updates an escalated case (it is still open work) without touching status.
    run2 = hits_on(seeded, "RULE-MED-003", "medical", [3])
    record(
        store_engine,
        seeded,
        "run-2",
        run2,
        config,
        processed=seeded.keys("medical", [int(seeded.medical["claim_pk"].iloc[3])]),
    )
    assert propose_and_upsert(store_engine, seeded, "run-2", run2, config)["updated"] == 1
    [case] = cases(store_engine)
    assert (case.status, case.assignee, case.run_id) == ("escalated", "alice", "run-2")


def test_upsert_guards(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine)
    run1 = hits_on(seeded, "RULE-MED-003", "medical", [0])
    record(store_engine, seeded, "run-1", run1, config)
    inputs = load_case_inputs(
        store_engine, seeded.workspace_id, case_subjects(run1, seeded.claims(), config)
    )
    proposals = case_proposals(inputs.hits, inputs.claims, inputs.scores, config)
    with session_scope(store_engine) as session:
        assert upsert_cases(session, seeded.workspace_id, "r", proposals.iloc[0:0]) == {
            "opened": 0,
            "updated": 0,
            "unchanged": 0,
            "skipped_closed": 0,
            "not_qualifying": 0,
        }
        with pytest.raises(ValueError, match="name a subject twice"):
            upsert_cases(session, seeded.workspace_id, "r", pd.concat([proposals, proposals]))
        with pytest.raises(ValueError, match="lack columns: evidence_hash"):
            upsert_cases(session, seeded.workspace_id, "r", proposals.drop(columns="evidence_hash"))
    # The partial unique index itself: a second open case for a subject is refused.
    with session_scope(store_engine) as session:
        upsert_cases(session, seeded.workspace_id, "run-1", proposals)
    with pytest.raises(IntegrityError), session_scope(store_engine) as session:
        session.add(
            InvestigationCase(
                case_number="CASE-X",
                workspace_id=seeded.workspace_id,
                subject_type="provider",
                subject_id=PROV_A,
                risk_score=1.0,
                risk_level="low",
                run_id="manual",
                evidence_hash="x",
                status="under_review",
            )
        )


def test_provenance(store_engine: Engine) -> None:
    config = default_config()
    seeded = seed(store_engine, medical=3, claim_ids=["MC0", "MC1", "MC0"])
    snapshot = config.model_dump(mode="json")
    with session_scope(store_engine) as session:
        session.add(
            PipelineRun(
                run_id="run-1",
                workspace_id=seeded.workspace_id,
                status="success",
                config_snapshot=snapshot,
            )
        )
    hits = pd.concat(
        [
            hits_on(
                seeded, "RULE-MED-005", "medical", [0], severity=0.5, subject=("provider", PROV_A)
            ),
            hits_on(seeded, "RULE-MED-003", "medical", [0]),
        ],
        ignore_index=True,
    )
    held = seeded.keys("medical", [int(seeded.medical["claim_pk"].iloc[2])])  # the reused id
    record(store_engine, seeded, "run-1", hits, config, held=held)

    with session_scope(store_engine) as session:
        found = claim_provenance(session, seeded.workspace_id, "MC0")
        assert claim_provenance(session, seeded.workspace_id, "nope") is None
        assert claim_provenance(session, seeded.workspace_id + 99, "MC0") is None
        pharmacy_only = claim_provenance(session, seeded.workspace_id, "MC0", claim_type="pharmacy")
        assert pharmacy_only is None
    assert found is not None
    claim = found["claim"]
    assert claim["claim_pk"] == int(seeded.medical["claim_pk"].iloc[0])
    assert (claim["status"], claim["last_run_id"]) == ("processed", "run-1")
    assert claim["claim_date"] == "2024-01-01"
    assert claim["provider_id"] == PROV_A
    assert claim["pharmacy_id"] is None
    assert found["run"]["status"] == "success"
    assert found["run"]["config_snapshot"]["scoring"]["bands"]["high"] == 70.0
    assert found["score"] == {"score": 100.0, "risk_level": "critical", "hit_count": 2}
    assert [h["rule_id"] for h in found["hits"]] == ["RULE-MED-003", "RULE-MED-005"]
    upcoding = found["hits"][1]
    assert upcoding["severity"] == 0.5
    assert upcoding["subject_type"] == "provider"
    assert upcoding["evidence"]["peer_median"] == 1.5
    assert upcoding["rule_config"]["thresholds"]["min_robust_z"] == 3.5
    assert found["other_rows"] == [
        {"claim_type": "medical", "claim_pk": int(held["claim_pk"].iloc[0]), "status": "held"}
    ]

    # A claim the run processed without a finding: its run, no score, no hits.
    with session_scope(store_engine) as session:
        clean = claim_provenance(session, seeded.workspace_id, "RX0")
    assert clean is not None
    assert clean["claim"]["claim_type"] == "pharmacy"
    assert clean["claim"]["provider_id"] is None
    assert clean["claim"]["pharmacy_id"] == PHARM
    assert clean["run"]["run_id"] == "run-1"
    assert (clean["score"], clean["hits"]) == (None, [])

    # A claim no run has processed yet.
    fresh = seed(store_engine, medical=1, pharmacy=0, name="fresh")
    with session_scope(store_engine) as session:
        pending = claim_provenance(session, fresh.workspace_id, "MC0")
    assert pending is not None
    assert (pending["claim"]["status"], pending["claim"]["last_run_id"]) == ("pending", None)
    assert (pending["run"], pending["score"], pending["hits"]) == (None, None, [])


def test_many_subjects(store_engine: Engine) -> None:
    """More subjects than one IN list: cases open in bulk with their numbers, history and
    links; the same proposals again change nothing; a new score rescores; a closed case is not
    reopened by the evidence it was closed on."""
    seeded = seed(store_engine, medical=1, pharmacy=0)
    count = 1_200

    def proposals(score: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "subject_type": "member",
                "subject_id": [f"M{i:05d}" for i in range(count)],
                "risk_score": score,
                "risk_level": "high",
                "override": None,
                "explanation": [{"rules": [{"rule_id": "RULE-MED-003", "z": 1.5}]}] * count,
                "flagged_billed": 100.0,
                "flagged_paid": 80.0,
                "claims": [
                    [{"claim_type": "medical", "claim_pk": i + 1, "claim_id": f"MC{i}"}]
                    for i in range(count)
                ],
                "evidence_hash": [f"h{i}" for i in range(count)],
                "qualifies": True,
            }
        )

    with session_scope(store_engine) as session:
        assert (
            upsert_cases(session, seeded.workspace_id, "run-1", proposals(75.0))["opened"] == count
        )
    stored = cases(store_engine)
    assert [c.case_number for c in stored] == [f"CASE-{c.id:06d}" for c in stored]
    assert [c.subject_id for c in stored] == [f"M{i:05d}" for i in range(count)]
    assert stored[0].explanation == {"rules": [{"rule_id": "RULE-MED-003", "z": 1.5}]}
    assert (stored[-1].status, stored[-1].risk_score, stored[-1].run_id) == ("open", 75.0, "run-1")
    assert links(store_engine, stored[-1].id) == {count}
    assert [a for _, a, _ in events(store_engine)] == ["opened"] * count

    with session_scope(store_engine) as session:
        again = upsert_cases(session, seeded.workspace_id, "run-2", proposals(75.0))
        assert again["unchanged"] == count
        held = session.get(InvestigationCase, stored[0].id)
        assert held is not None
        change_case_status(session, held, "closed", "alice", disposition="no_issue")
        rescored = upsert_cases(session, seeded.workspace_id, "run-3", proposals(80.0))
        assert held.run_id == "run-1"  # the closed case is untouched (and reloaded)
    assert rescored == {
        "opened": 0,
        "updated": count - 1,
        "unchanged": 0,
        "skipped_closed": 1,
        "not_qualifying": 0,
    }
    after = cases(store_engine)
    assert len(after) == count
    assert {c.risk_score for c in after[1:]} == {80.0}
    history = events(store_engine)
    assert [a for _, a, _ in history].count("rescored") == count - 1
    assert history[-1][2] == "pipeline:run-3"


# --------------------------------------------------------------------------- SQLite
