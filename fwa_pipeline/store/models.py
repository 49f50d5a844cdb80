"""The relational model: one schema for SQLite (embedded default) and PostgreSQL (production).

Claims carry a surrogate ``id`` because the data contract stores rows that break its rules
(duplicate claim ids included) and lets the pipeline's quality gate decide what to do with them.
Everything downstream (hits, scores, case links) points at that surrogate and also keeps the
payer's ``claim_id`` for display and export.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fwa_pipeline.compute.shards import bucket_of

# JSONB on PostgreSQL, JSON (text) on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(14, 2, asdecimal=False)
# The leading key column of a table whose rows belong to one workspace and go with it.
WorkspaceKey = Annotated[
    int, mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
]


def _member_bucket(context: DefaultExecutionContext) -> int:
    """A row's ``member_bucket`` when an insert does not give it (bulk loads compute it for a
    whole frame at once, see ``store.bulk``)."""
    member_id = context.get_current_parameters().get("member_id")
    return int(bucket_of(pd.Series([member_id], dtype=object))[0])


# The bucket of the row's member (``compute.shards.bucket_of``): a shard of a run reads its rows
# by a range of buckets, through an index.
MemberBucket = Annotated[int, mapped_column(SmallInteger, default=_member_bucket)]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}  # noqa: RUF012


class TZDateTime(DateTime):
    """Timezone-aware timestamps on both engines."""

    def __init__(self) -> None:
        super().__init__(timezone=True)


# --------------------------------------------------------------------------- workspaces, batches


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    needs_reprocessing: Mapped[bool] = mapped_column(Boolean, default=False)
    last_pipeline_run_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime())
    last_pipeline_run_id: Mapped[str | None] = mapped_column(String(64))


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))  # cli | api
    landed_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    # {file name: rows landed}
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # Set when a pipeline run has consumed this batch.
    processed_run_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_batches_workspace_landed", "workspace_id", "landed_at"),)


# --------------------------------------------------------------------------- reference data


class Provider(Base):
    __tablename__ = "providers"

    workspace_id: Mapped[WorkspaceKey]
    provider_id: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    provider_type: Mapped[str] = mapped_column(String(16))
    specialty: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(2))
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusion_date: Mapped[dt.date | None] = mapped_column(Date)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))


class Member(Base):
    """A plan member. ``first_name``, ``last_name``, ``date_of_birth`` and ``date_of_death`` (NULL
    while none is known) hold encryption tokens (see ``store.crypto``) unless ``pii_key_id`` is
    NULL, which records plaintext stored in development without a key so that ``fwa keys
    rotate`` can encrypt it later."""

    __tablename__ = "members"

    # No foreign keys, as on the claim tables (migration 0003): their per-row triggers cost
    # about 2 s of a 200,000-member COPY.
    workspace_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_name: Mapped[str] = mapped_column(Text)
    last_name: Mapped[str] = mapped_column(Text)
    date_of_birth: Mapped[str] = mapped_column(Text)
    pii_key_id: Mapped[str | None] = mapped_column(String(16))
    gender: Mapped[str] = mapped_column(String(1))
    state: Mapped[str | None] = mapped_column(String(2))
    date_of_death: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    member_bucket: Mapped[MemberBucket]

    __table_args__ = (Index("ix_members_pii_key_id", "pii_key_id"),)


class CptReference(Base):
    __tablename__ = "cpt_reference"

    workspace_id: Mapped[WorkspaceKey]
    cpt_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(300))
    minutes_per_unit: Mapped[float | None] = mapped_column(Float)
    mue_limit: Mapped[int | None] = mapped_column(Integer)
    gender: Mapped[str | None] = mapped_column(String(1))
    min_age: Mapped[int | None] = mapped_column(Integer)
    max_age: Mapped[int | None] = mapped_column(Integer)
    em_level: Mapped[int | None] = mapped_column(Integer)


class NcciEdit(Base):
    __tablename__ = "ncci_edits"

    workspace_id: Mapped[WorkspaceKey]
    column1_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    column2_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    modifier_allowed: Mapped[bool] = mapped_column(Boolean, default=False)


class NdcReference(Base):
    __tablename__ = "ndc_reference"

    workspace_id: Mapped[WorkspaceKey]
    ndc_code: Mapped[str] = mapped_column(String(11), primary_key=True)
    drug_name: Mapped[str | None] = mapped_column(String(200))
    dea_schedule: Mapped[int | None] = mapped_column(Integer)
    mme_factor: Mapped[float | None] = mapped_column(Float)
    strength_per_unit: Mapped[float | None] = mapped_column(Float)
    max_daily_quantity: Mapped[float | None] = mapped_column(Float)


# --------------------------------------------------------------------------- claims

# A claim's processing status, derived per batch (never stored on the claim row, whose every
# UPDATE rewrote the row and its indexes): pending until a run consumes its batch
# (``batches.processed_run_id``), then held if that run's quality gate held it back
# (``held_claims``), else processed. The ``claim_status`` view (migration 0002) answers it in SQL.
CLAIM_STATUSES = ("pending", "processed", "held")


class _ClaimRow:
    """The columns both claim tables start with (``sort_order``: a mixin's columns would
    otherwise come after the table's own, unlike the migrations')."""

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True, sort_order=-1)
    # No foreign keys on the claim tables: their per-row triggers halved COPY throughput, and
    # the loader creates the workspace and batch rows in the same transaction as the claims.
    workspace_id: Mapped[int] = mapped_column(Integer, sort_order=-1)
    batch_id: Mapped[int] = mapped_column(Integer, sort_order=-1)
    claim_id: Mapped[str] = mapped_column(String(64), sort_order=-1)
    member_id: Mapped[str | None] = mapped_column(String(64), sort_order=-1)
    member_bucket: Mapped[MemberBucket]


class MedicalClaim(_ClaimRow, Base):
    __tablename__ = "medical_claims"

    provider_id: Mapped[str | None] = mapped_column(String(10))
    service_date: Mapped[dt.date | None] = mapped_column(Date)
    cpt_code: Mapped[str | None] = mapped_column(String(5))
    modifier: Mapped[str | None] = mapped_column(String(2))
    diagnosis_code: Mapped[str | None] = mapped_column(String(8))
    units: Mapped[int | None] = mapped_column(Integer)
    place_of_service: Mapped[str | None] = mapped_column(String(2))
    amount_billed: Mapped[float | None] = mapped_column(Money)
    amount_paid: Mapped[float | None] = mapped_column(Money)

    __table_args__ = (
        Index("ix_medical_claims_ws_claim", "workspace_id", "claim_id"),
        # A run reads its batches' claims (a small batch must not scan the workspace).
        Index("ix_medical_claims_ws_batch", "workspace_id", "batch_id"),
        Index("ix_medical_claims_ws_provider_date", "workspace_id", "provider_id", "service_date"),
        Index("ix_medical_claims_ws_member", "workspace_id", "member_id"),
        # A shard reads its members' claims (a range of buckets).
        Index("ix_medical_claims_ws_bucket", "workspace_id", "member_bucket"),
    )


class PharmacyClaim(_ClaimRow, Base):
    __tablename__ = "pharmacy_claims"

    prescriber_id: Mapped[str | None] = mapped_column(String(10))
    pharmacy_id: Mapped[str | None] = mapped_column(String(10))
    fill_date: Mapped[dt.date | None] = mapped_column(Date)
    ndc_code: Mapped[str | None] = mapped_column(String(11))
    quantity: Mapped[float | None] = mapped_column(Float)
    days_supply: Mapped[int | None] = mapped_column(Integer)
    refill_number: Mapped[int | None] = mapped_column(Integer)
    amount_billed: Mapped[float | None] = mapped_column(Money)
    amount_paid: Mapped[float | None] = mapped_column(Money)

    __table_args__ = (
        Index("ix_pharmacy_claims_ws_claim", "workspace_id", "claim_id"),
        Index("ix_pharmacy_claims_ws_batch", "workspace_id", "batch_id"),
        Index("ix_pharmacy_claims_ws_member", "workspace_id", "member_id"),
        Index("ix_pharmacy_claims_ws_pharmacy", "workspace_id", "pharmacy_id"),
        Index("ix_pharmacy_claims_ws_prescriber", "workspace_id", "prescriber_id"),
        Index("ix_pharmacy_claims_ws_bucket", "workspace_id", "member_bucket"),
    )


class HeldClaim(Base):
    """A claim the quality gate of ``run_id`` held back (under ``skip_invalid``). Rows of a
    workspace are replaced when a run reprocesses their claims."""

    __tablename__ = "held_claims"

    workspace_id: Mapped[WorkspaceKey]
    claim_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    claim_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64))
    # The error issue types that held it, comma-separated.
    reason: Mapped[str] = mapped_column(String(200))


class ClaimLabel(Base):
    """Ground truth shipped with a batch (``labels.csv``): which claims plant which scheme."""

    __tablename__ = "claim_labels"

    workspace_id: Mapped[WorkspaceKey]
    claim_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))


# --------------------------------------------------------------------------- pipeline output


class StoreIdentity(Base):
    """This store's id (one row, made by its migration): the pipeline tags the Dagster runs it
    launches with it, and the ending sensor records only runs of its own store."""

    __tablename__ = "store_identity"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[str] = mapped_column(String(36))

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)


class PipelineRun(Base):
    """One pipeline execution, as the run records it (``runs.ledger`` is its only writer)."""

    __tablename__ = "pipeline_runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    job_name: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    force_reprocess: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime())
    config_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    quality_report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"planned": step keys fixed as the run starts, "done": those finished}, and one line per
    # failed step for its requester: the run writes both as it goes (``runs.ledger``).
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    errors: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default=text("'[]'"))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)

    __table_args__ = (Index("ix_pipeline_runs_ws_created", "workspace_id", "created_at"),)


class PipelineRequest(Base):
    """A request from another process (the API, the assistant) for a pipeline run; a Dagster
    sensor picks queued rows up and launches them. Its id is the job id the API hands out."""

    __tablename__ = "pipeline_requests"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    force_reprocess: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str | None] = mapped_column(String(100))
    requested_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    # queued | launched | failed | canceled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # The quality mode asked for this run only (None: the workspace's configuration decides).
    quality_mode: Mapped[str | None] = mapped_column(String(16))
    # The enqueue's Idempotency-Key (released after the retention window) and a hash of its body.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_pipeline_requests_status", "status"),
        Index("ux_pipeline_requests_idempotency", "workspace_id", "idempotency_key", unique=True),
    )


class WorkspaceConfig(Base):
    """One version of a workspace's pipeline configuration (quality, scoring, rules): the full
    validated document, never updated. Runs that do not override it apply the newest version
    and record its number in their config snapshot."""

    __tablename__ = "workspace_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    note: Mapped[str] = mapped_column(String(500))

    __table_args__ = (
        UniqueConstraint("workspace_id", "version"),
        CheckConstraint("version >= 1", name="positive_version"),
    )


class RuleHit(Base):
    """One rule on one claim. A hit on a provider or member is stored once per claim it rests on,
    with the subject named, so exports list every claim behind an entity-level finding."""

    __tablename__ = "rule_hits"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(32))
    rule_version: Mapped[str] = mapped_column(String(16))
    claim_type: Mapped[str] = mapped_column(String(10))  # medical | pharmacy
    claim_pk: Mapped[int] = mapped_column(BigInteger)
    claim_id: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(
        String(16)
    )  # claim|provider|pharmacy|prescriber|member
    subject_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_rule_hits_ws_claim", "workspace_id", "claim_type", "claim_pk"),
        # The cases citing a rule: its hits' claims, read from the index alone.
        Index("ix_rule_hits_ws_rule_claim", "workspace_id", "rule_id", "claim_type", "claim_pk"),
        Index("ix_rule_hits_ws_subject", "workspace_id", "subject_type", "subject_id"),
    )


class ClaimScore(Base):
    __tablename__ = "claim_scores"

    workspace_id: Mapped[WorkspaceKey]
    claim_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    claim_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(10))
    hit_count: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_claim_scores_ws_claim_id", "workspace_id", "claim_id"),)


CASE_STATUSES = ("open", "under_review", "escalated", "closed")
RISK_LEVELS = ("low", "medium", "high", "critical")
# What the investigator who closed a case found; the first two confirm the finding.
DISPOSITIONS = ("confirmed_fraud", "confirmed_waste_abuse", "no_issue", "insufficient_evidence")


class InvestigationCase(Base):
    __tablename__ = "investigation_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_number: Mapped[str] = mapped_column(String(16), unique=True)  # CASE-000123
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(64))
    risk_score: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(10))
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flagged_billed: Mapped[float] = mapped_column(Money, default=0)
    flagged_paid: Mapped[float] = mapped_column(Money, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    assignee: Mapped[str | None] = mapped_column(String(100))
    # Set when the case is closed (DISPOSITIONS), cleared when it reopens.
    disposition: Mapped[str | None] = mapped_column(String(24))
    amount_recovered: Mapped[float | None] = mapped_column(Money)
    run_id: Mapped[str] = mapped_column(String(64))  # the run that last scored it
    # Fingerprint of the evidence the case was last built from: a closed case is not reopened
    # by the same evidence.
    evidence_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)

    claims: Mapped[list[CaseClaim]] = relationship(
        back_populates="case", cascade="all, delete-orphan"
    )
    history: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="CaseEvent.id"
    )

    __table_args__ = (
        Index("ix_investigation_cases_ws_level", "workspace_id", "risk_level", "status"),
        Index("ix_investigation_cases_ws_assignee", "workspace_id", "assignee"),  # a queue
        # The queue's first page in each order (scanned backwards for the descending ones).
        Index("ix_investigation_cases_ws_score", "workspace_id", "risk_score", "id"),
        Index(
            "ix_investigation_cases_ws_status_score", "workspace_id", "status", "risk_score", "id"
        ),
        Index("ix_investigation_cases_ws_paid", "workspace_id", "flagged_paid", "id"),
        Index("ix_investigation_cases_ws_created", "workspace_id", "created_at", "id"),
        # One open case per subject; closed ones may accumulate.
        Index(
            "uq_investigation_cases_open_subject",
            "workspace_id",
            "subject_type",
            "subject_id",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
    )


class CaseClaim(Base):
    __tablename__ = "case_claims"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("investigation_cases.id", ondelete="CASCADE"), primary_key=True
    )
    claim_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    claim_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(64))

    case: Mapped[InvestigationCase] = relationship(back_populates="claims")

    # From a claim to its cases, from the index alone (the cases citing a rule, from its hits).
    __table_args__ = (Index("ix_case_claims_claim", "claim_type", "claim_pk", "case_id"),)


class CaseEvent(Base):
    """Append-only case history: opened, rescored, status changes, assignments, notes."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("investigation_cases.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  # "pipeline:<run_id>" or a token name
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)

    case: Mapped[InvestigationCase] = relationship(back_populates="history")


# --------------------------------------------------------------------------- assistant


class ChatSession(Base):
    __tablename__ = "chat_sessions"

    session_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(200))
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("investigation_cases.id", ondelete="SET NULL")
    )
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow, onupdate=utcnow)
    # A pipeline run the assistant proposed and the user has yet to confirm in the next message:
    # how it would run, and until when a confirmation is taken (both None: nothing pending).
    pending_run_force_reprocess: Mapped[bool | None] = mapped_column(Boolean)
    pending_run_expires_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime())

    messages: Mapped[list[ChatMessage]] = relationship(
        back_populates="session", cascade="all, delete-orphan", order_by="ChatMessage.id"
    )

    __table_args__ = (Index("ix_chat_sessions_ws_updated", "workspace_id", "updated_at"),)


class ChatMessage(Base):
    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.session_id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    sources_cited: Mapped[list[Any]] = mapped_column(default=list)
    model_used: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[str | None] = mapped_column(String(8))
    # Both messages of an exchange whose answer was degraded (a fallback, not the model's
    # answer): kept for reading, never replayed to the model as history.
    degraded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)

    session: Mapped[ChatSession] = relationship(back_populates="messages")


# --------------------------------------------------------------------------- access and audit

ROLES = ("viewer", "investigator", "admin")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # HMAC-SHA256 of the token under FWA_SECRET_KEY (``hmac-sha256``), or, for a token not used
    # since hashes were keyed, its plain SHA-256 (``sha256``, re-hashed on first use). The token
    # itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash_scheme: Mapped[str] = mapped_column(String(16), server_default="sha256")
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    workspaces: Mapped[list[Any]] = mapped_column(default=list)  # workspace names
    created_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(TZDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(TZDateTime())  # to about a minute


class WebSession(Base):
    """A browser's sign-in where Redis is not configured: keyed by a hash of the cookie's value
    (a copy of the table signs nobody in), holding the token's identity, never the token."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column()
    # When the session ends unless used again (idle) or at all (the cap); expired rows are purged.
    expires_at: Mapped[dt.datetime] = mapped_column(TZDateTime(), index=True)


class PhiAuditEvent(Base):
    """Who read or changed which member's PHI; never the PHI itself."""

    __tablename__ = "phi_audit_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(TZDateTime(), default=utcnow, server_default=func.now())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))  # read | write | rotate
    workspace_id: Mapped[int | None] = mapped_column(Integer)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # allowed | denied | error

    __table_args__ = (Index("ix_phi_audit_events_at", "at"),)


__all__ = [
    "CASE_STATUSES",
    "CLAIM_STATUSES",
    "DISPOSITIONS",
    "RISK_LEVELS",
    "ROLES",
    "ApiToken",
    "Base",
    "Batch",
    "CaseClaim",
    "CaseEvent",
    "ChatMessage",
    "ChatSession",
    "ClaimLabel",
    "ClaimScore",
    "CptReference",
    "HeldClaim",
    "InvestigationCase",
    "MedicalClaim",
    "Member",
    "NcciEdit",
    "NdcReference",
    "PharmacyClaim",
    "PhiAuditEvent",
    "PipelineRequest",
    "PipelineRun",
    "Provider",
    "RuleHit",
    "Workspace",
    "WorkspaceConfig",
]
