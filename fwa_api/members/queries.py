"""A member read from the store, None for one not in the workspace. The only query of the API
that returns member PHI, and only when asked to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fwa_api.cases.models import CaseSummary
from fwa_api.members.models import MemberOut
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.models import InvestigationCase, Member
from fwa_pipeline.store.pii import get_member


def member(
    session: Session,
    cipher: FieldCipher | None,
    workspace_id: int,
    member_id: str,
    *,
    with_phi: bool,
) -> MemberOut | None:
    """A member and the cases about them; name and dates of birth and death decrypted only
    ``with_phi`` (else null, and never decrypted). The caller audits the read."""
    phi: dict[str, Any] = {
        "first_name": None,
        "last_name": None,
        "date_of_birth": None,
        "date_of_death": None,
    }
    if with_phi:
        record = get_member(session, cipher, workspace_id, member_id)
        if record is None:
            return None
        gender, state = record.gender, record.state
        phi = {k: getattr(record, k) for k in phi}
    else:
        row = session.get(Member, (workspace_id, member_id))
        if row is None:
            return None
        gender, state = row.gender, row.state
    cases = session.scalars(
        select(InvestigationCase)
        .where(
            InvestigationCase.workspace_id == workspace_id,
            InvestigationCase.subject_type == "member",
            InvestigationCase.subject_id == member_id,
        )
        .order_by(InvestigationCase.risk_score.desc(), InvestigationCase.id)
    )
    return MemberOut(
        member_id=member_id,
        gender=gender,
        state=state,
        phi_included=with_phi,
        cases=[CaseSummary.of(c) for c in cases],
        **phi,
    )
