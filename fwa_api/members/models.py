"""What the member route answers: a member, their PHI only when the caller may see it, and
the cases about them."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from fwa_api.cases.models import CaseSummary


class MemberOut(BaseModel):
    member_id: str
    gender: str
    state: str | None
    date_of_death: dt.date | None
    phi_included: bool
    first_name: str | None
    last_name: str | None
    date_of_birth: dt.date | None
    cases: list[CaseSummary]
