"""A workspace of seeded claims, and the helpers that record a run's results and cases on it
and read them back, for the store tests on both engines."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from fwa_pipeline.domain.cases import case_proposals, case_subjects
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS
from fwa_pipeline.domain.scoring import score_claims
from fwa_pipeline.store.bulk import copy_frame
from fwa_pipeline.store.cases import (
    upsert_cases,
)
from fwa_pipeline.store.claims import claim_statuses, last_run_id
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import (
    Batch,
    CaseClaim,
    CaseEvent,
    InvestigationCase,
    MedicalClaim,
    PharmacyClaim,
    Workspace,
)
from fwa_pipeline.store.results import load_case_inputs, write_run_results
from fwa_pipeline.store.runs import finish_workspace_run

PROV_A, PROV_B = "1000000001", "1000000002"
PHARM, PRESC = "2000000001", "3000000001"
KEY = ["claim_type", "claim_pk"]


@dataclass(frozen=True)
class Seeded:
    workspace_id: int
    medical: pd.DataFrame  # claim_pk, claim_id, provider_id, member_id, amounts
    pharmacy: pd.DataFrame

    def claims(self) -> pd.DataFrame:
        """The claims frame case_proposals reads."""
        return pd.concat(
            [
                self.medical.assign(claim_type="medical"),
                self.pharmacy.assign(claim_type="pharmacy"),
            ],
            ignore_index=True,
        )

    def keys(self, claim_type: str, pks: list[int] | None = None) -> pd.DataFrame:
        frame = self.medical if claim_type == "medical" else self.pharmacy
        chosen = frame["claim_pk"] if pks is None else pd.Series(pks)
        return pd.DataFrame({"claim_type": claim_type, "claim_pk": chosen.to_numpy()})


def seed(
    engine: Engine,
    medical: int = 6,
    pharmacy: int = 2,
    name: str = "ws",
    claim_ids: list[str] | None = None,
    providers: tuple[str, ...] = (PROV_A, PROV_B),
    *,
    batch_per_claim: bool = False,
) -> Seeded:
    """A workspace with ``medical`` claims cycling through ``providers`` (members M0 .. M49)
    and ``pharmacy`` claims, landed as one batch (or one batch per claim, so that a run can
    process any of them alone); returns their surrogate keys."""
    batches = medical + pharmacy if batch_per_claim else 1
    with session_scope(engine) as session:
        workspace = Workspace(name=name)
        session.add(workspace)
        session.flush()
        rows = [Batch(workspace_id=workspace.id, source="cli") for _ in range(batches)]
        session.add_all(rows)
        session.flush()
        workspace_id, batch_ids = workspace.id, np.array([b.id for b in rows])
    ids = claim_ids or [f"MC{i}" for i in range(medical)]
    med = pd.DataFrame(
        {
            "workspace_id": workspace_id,
            "batch_id": batch_ids[np.arange(medical) % batches],
            "claim_id": ids,
            "member_id": [f"M{i % 50}" for i in range(medical)],
            "provider_id": np.array(providers)[np.arange(medical) % len(providers)],
            "service_date": dt.date(2024, 1, 1),
            "cpt_code": "99213",
            "units": 1,
            "amount_billed": 100.0 + np.arange(medical),
            "amount_paid": 80.0,
        }
    )
    rx = pd.DataFrame(
        {
            "workspace_id": workspace_id,
            "batch_id": batch_ids[(medical + np.arange(pharmacy)) % batches],
            "claim_id": [f"RX{i}" for i in range(pharmacy)],
            "member_id": "M0",
            "prescriber_id": PRESC,
            "pharmacy_id": PHARM,
            "fill_date": dt.date(2024, 2, 1),
            "ndc_code": "00002323230",
            "quantity": 30.0,
            "days_supply": 30,
            "amount_billed": 25.0,
            "amount_paid": 20.0,
        }
    )
    with engine.begin() as connection:
        copy_frame(connection, "medical_claims", med)
        copy_frame(connection, "pharmacy_claims", rx)
    with engine.connect() as connection:
        med_pks = connection.scalars(
            select(MedicalClaim.id).where(MedicalClaim.workspace_id == workspace_id).order_by("id")
        ).all()
        rx_pks = connection.scalars(
            select(PharmacyClaim.id)
            .where(PharmacyClaim.workspace_id == workspace_id)
            .order_by("id")
        ).all()
    medical_frame = med.drop(columns=["workspace_id", "batch_id"]).assign(claim_pk=med_pks)
    pharmacy_frame = rx.drop(columns=["workspace_id", "batch_id"]).assign(claim_pk=rx_pks)
    return Seeded(workspace_id, medical_frame, pharmacy_frame)


def hits_on(
    seeded: Seeded,
    rule_id: str,
    claim_type: str,
    positions: list[int],
    *,
    severity: float = 1.0,
    weight: float = 7.0,
    subject: tuple[str, str] | None = None,
) -> pd.DataFrame:
    """Hits of ``rule_id`` on the claims at ``positions`` of the seeded ``claim_type`` frame."""
    frame = (seeded.medical if claim_type == "medical" else seeded.pharmacy).iloc[positions]
    subject_type, subject_id = subject or ("claim", None)
    return pd.DataFrame(
        {
            "rule_id": rule_id,
            "rule_version": "1.0",
            "weight": weight,
            "claim_type": claim_type,
            "claim_pk": frame["claim_pk"].to_numpy(),
            "claim_id": frame["claim_id"].to_numpy(),
            "subject_type": subject_type,
            "subject_id": frame["claim_id"].to_numpy() if subject_id is None else subject_id,
            "severity": severity,
            "evidence": [
                {"position": p, "peer_median": 1.5, "nan": float("nan")} for p in positions
            ],
        }
    )[HIT_FRAME_COLUMNS]


def statuses(engine: Engine, seeded: Seeded, claim_type: str) -> dict[int, tuple[str, str | None]]:
    found = claim_statuses(engine, seeded.workspace_id)
    found = found[found["claim_type"] == claim_type].astype(object)
    return {
        int(pk): (status, None if pd.isna(run) else run)
        for pk, status, run in zip(
            found["claim_pk"], found["status"], found["last_run_id"], strict=True
        )
    }


def batches_of(engine: Engine, seeded: Seeded, keys: pd.DataFrame) -> list[int]:
    found = claim_statuses(engine, seeded.workspace_id).astype({"claim_pk": "int64"})
    return sorted({int(b) for b in found.merge(keys.astype({"claim_pk": "int64"}))["batch_id"]})


def count(engine: Engine, model: type) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def record(
    engine: Engine,
    seeded: Seeded,
    run_id: str,
    hits: pd.DataFrame,
    config: PipelineConfig,
    held: pd.DataFrame | None = None,
    processed: pd.DataFrame | None = None,
) -> dict[str, int]:
    """Score ``hits`` and write the run over the batches of the processed and held claims,
    then mark those batches consumed: every seeded claim processed unless given."""
    if processed is None:
        processed = pd.concat([seeded.keys("medical"), seeded.keys("pharmacy")], ignore_index=True)
    if held is not None:
        processed = processed.merge(held, how="left", indicator=True)
        processed = processed[processed.pop("_merge") == "left_only"]
    held = (held if held is not None else processed.iloc[0:0]).assign(reason="invalid_npi")
    batch_ids = batches_of(engine, seeded, pd.concat([processed, held[KEY]]))
    with engine.begin() as connection:
        written = write_run_results(
            connection,
            seeded.workspace_id,
            run_id,
            batch_ids,
            hits,
            score_claims(hits, config),
            processed,
            held,
        )
        finish_workspace_run(
            connection,
            seeded.workspace_id,
            run_id,
            batch_ids,
            after=last_run_id(connection, seeded.workspace_id),
        )
    return written


def propose_and_upsert(
    engine: Engine, seeded: Seeded, run_id: str, new_hits: pd.DataFrame, config: PipelineConfig
) -> dict[str, int]:
    """The incremental case step: the subjects the new hits touch, rebuilt from every stored
    hit of theirs."""
    subjects = case_subjects(new_hits, seeded.claims(), config)
    inputs = load_case_inputs(engine, seeded.workspace_id, subjects)
    proposals = case_proposals(inputs.hits, inputs.claims, inputs.scores, config, subjects=subjects)
    with session_scope(engine) as session:
        return upsert_cases(session, seeded.workspace_id, run_id, proposals)


def cases(engine: Engine) -> list[InvestigationCase]:
    with session_scope(engine) as session:
        return list(session.scalars(select(InvestigationCase).order_by(InvestigationCase.id)))


def events(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(CaseEvent.case_id, CaseEvent.action, CaseEvent.actor).order_by(CaseEvent.id)
        ).all()
    return [tuple(r) for r in rows]


def links(engine: Engine, case_id: int) -> set[int]:
    with engine.connect() as connection:
        return set(
            connection.scalars(select(CaseClaim.claim_pk).where(CaseClaim.case_id == case_id))
        )
