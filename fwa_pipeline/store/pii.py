"""Member PHI through the store: encrypted on write, decrypted on read, re-encrypted on rotation.

Encrypted columns hold ``crypto`` tokens; ``members.pii_key_id`` names the key of a row's tokens,
or is NULL for plaintext stored in development without a key (one warning is logged), which
``fwa keys rotate`` later encrypts. Dates are encrypted as their ISO text; a date of death that is
not known stays NULL.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from itertools import compress
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session

from fwa_pipeline.settings import Environment, Settings
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import Member, PhiAuditEvent

log = logging.getLogger(__name__)

TABLE = "members"
PHI_COLUMNS = ("first_name", "last_name", "date_of_birth", "date_of_death")
DATE_COLUMNS = ("date_of_birth", "date_of_death")
_warned_plaintext = False


def cipher_from_settings(settings: Settings) -> FieldCipher | None:
    """The configured cipher, or None (development only: PHI is then stored in plaintext)."""
    global _warned_plaintext
    keys = settings.encryption_keys
    if keys:
        return FieldCipher(keys)
    if settings.environment is Environment.production:  # Settings refuses this already.
        raise RuntimeError("no encryption key configured in production")
    if not _warned_plaintext:
        log.warning(
            "FWA_ENCRYPTION_KEY is empty: member PHI is stored in plaintext "
            "(development only; run `fwa keys rotate` once a key is set)"
        )
        _warned_plaintext = True
    return None


def row_key(workspace_id: int, member_id: str) -> str:
    return f"{workspace_id}/{member_id}"


def encrypt_member_frame(
    members: pd.DataFrame, cipher: FieldCipher | None, workspace_id: int
) -> pd.DataFrame:
    """``members`` (not modified) with the PHI columns as tokens and ``pii_key_id`` set.

    The dates may be dates or ISO strings; they are stored as their ISO strings, and a missing
    date of death as NULL.
    """
    dates = {column: _iso(members[column]) for column in DATE_COLUMNS}
    if cipher is None:
        return members.assign(**dates, pii_key_id=None)
    keys = [row_key(workspace_id, m).encode() for m in members["member_id"].astype(str).tolist()]
    plaintexts = {column: members[column] for column in PHI_COLUMNS} | dates
    tokens = {
        column: pd.arrays.ArrowExtensionArray(_sealed(cipher, column, values, keys))
        for column, values in plaintexts.items()
    }
    return members.assign(**tokens, pii_key_id=cipher.active_key_id)


def _iso(dates: pd.Series) -> pd.Series:
    """``dates`` as ISO text (missing stays missing)."""
    if isinstance(dates.dtype, pd.ArrowDtype) and pa.types.is_date(dates.dtype.pyarrow_dtype):
        # The parser's dates: Arrow writes them as ISO text, at C speed.
        return dates.astype(pd.ArrowDtype(pa.string()))
    if pd.api.types.is_string_dtype(dates) or dates.isna().all():
        return dates
    return pd.to_datetime(dates).dt.strftime("%Y-%m-%d")


def _sealed(
    cipher: FieldCipher, column: str, values: pd.Series, keys: list[bytes]
) -> pa.LargeStringArray | pa.Array:
    """The tokens of ``values`` (``keys`` their row keys), nulls where a value is missing."""
    present = values.notna().to_numpy()
    if present.all():
        return cipher.encrypt_many(_utf8(values), table=TABLE, column=column, row_keys=keys)
    tokens = cipher.encrypt_many(
        _utf8(values[present]), table=TABLE, column=column, row_keys=list(compress(keys, present))
    )
    return pc.replace_with_mask(pa.nulls(len(values), pa.large_string()), pa.array(present), tokens)


def _utf8(values: pd.Series) -> list[bytes]:
    """The values as text, UTF-8 encoded by Arrow rather than one Python call a value."""
    return pc.cast(pa.array(values.astype(str)), pa.large_binary()).to_pylist()


def decrypt_member_frame(
    members: pd.DataFrame, cipher: FieldCipher | None, workspace_id: int
) -> pd.DataFrame:
    """The inverse of :func:`encrypt_member_frame`; plaintext rows pass through."""
    out = members.copy()
    encrypted = out["pii_key_id"].notna()
    if encrypted.any():
        if cipher is None:
            raise ValueError("member PHI is encrypted but no FWA_ENCRYPTION_KEY is configured")
        for column in PHI_COLUMNS:
            sealed = (encrypted & out[column].notna()).to_numpy()
            keys = [row_key(workspace_id, m) for m in out.loc[sealed, "member_id"].astype(str)]
            out.loc[sealed, column] = cipher.decrypt_many(
                out.loc[sealed, column].tolist(), table=TABLE, column=column, row_keys=keys
            )
    for column in DATE_COLUMNS:
        parsed = pd.to_datetime(out[column], format="%Y-%m-%d")
        out[column] = parsed.dt.date.astype(object).where(parsed.notna(), None)
    return out.drop(columns=["pii_key_id"])


@dataclass(frozen=True)
class MemberRecord:
    workspace_id: int
    member_id: str
    first_name: str
    last_name: str
    date_of_birth: dt.date
    gender: str
    state: str | None
    date_of_death: dt.date | None


def get_member(
    session: Session, cipher: FieldCipher | None, workspace_id: int, member_id: str
) -> MemberRecord | None:
    """One member with PHI decrypted (callers audit the read: see ``audit_phi``)."""
    row = session.get(Member, (workspace_id, member_id))
    if row is None:
        return None
    values = {c: getattr(row, c) for c in PHI_COLUMNS}
    if row.pii_key_id is not None:
        if cipher is None:
            raise ValueError("member PHI is encrypted but no FWA_ENCRYPTION_KEY is configured")
        key = row_key(workspace_id, member_id)
        values = {
            c: None if v is None else cipher.decrypt(v, table=TABLE, column=c, row_key=key)
            for c, v in values.items()
        }
    died = values["date_of_death"]
    return MemberRecord(
        workspace_id=workspace_id,
        member_id=member_id,
        first_name=values["first_name"],
        last_name=values["last_name"],
        date_of_birth=dt.date.fromisoformat(values["date_of_birth"]),
        gender=row.gender,
        state=row.state,
        date_of_death=None if died is None else dt.date.fromisoformat(died),
    )


def members_frame(
    engine: Engine, cipher: FieldCipher | None, workspace_id: int, *, with_phi: bool = True
) -> pd.DataFrame:
    """A workspace's members as a DataFrame, PHI decrypted when ``with_phi`` (else without the
    PHI columns)."""
    columns: list[Any] = [Member.member_id, Member.gender, Member.state]
    if with_phi:
        columns += [getattr(Member, c) for c in PHI_COLUMNS] + [Member.pii_key_id]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(Member.workspace_id == workspace_id)).all()
    frame = pd.DataFrame(rows, columns=[c.key for c in columns])
    if with_phi and not frame.empty:
        frame = decrypt_member_frame(frame, cipher, workspace_id)
    return frame


def rotate_keys(engine: Engine, settings: Settings, *, batch_size: int = 1000) -> dict[str, Any]:
    """Re-encrypt every member row not yet under the active key (plaintext rows included).

    Each batch commits on its own, so an interrupted rotation resumes where it stopped; rows are
    selected by key id, never by position. Plaintext only ever lives in memory.
    """
    cipher = cipher_from_settings(settings)
    if cipher is None:
        raise ValueError("FWA_ENCRYPTION_KEY is empty: there is no key to rotate to")
    active = cipher.active_key_id
    stale = or_(Member.pii_key_id.is_(None), Member.pii_key_id != active)
    rotated = 0
    per_key: dict[str, int] = {}
    after: tuple[int, str] = (-1, "")
    while True:
        with session_scope(engine) as session:
            batch = session.scalars(
                select(Member)
                .where(
                    stale,
                    or_(
                        Member.workspace_id > after[0],
                        and_(Member.workspace_id == after[0], Member.member_id > after[1]),
                    ),
                )
                .order_by(Member.workspace_id, Member.member_id)
                .limit(batch_size)
            ).all()
            if not batch:
                break
            for member in batch:
                key = row_key(member.workspace_id, member.member_id)
                old_kid = member.pii_key_id or "plaintext"
                values: dict[str, str | None] = {}
                for column in PHI_COLUMNS:
                    value = getattr(member, column)
                    if value is None:  # no date of death: nothing to seal
                        values[column] = None
                        continue
                    if member.pii_key_id is not None:
                        value = cipher.decrypt(value, table=TABLE, column=column, row_key=key)
                    values[column] = cipher.encrypt(value, table=TABLE, column=column, row_key=key)
                session.execute(
                    update(Member)
                    .where(
                        Member.workspace_id == member.workspace_id,
                        Member.member_id == member.member_id,
                    )
                    .values(pii_key_id=active, **values)
                )
                per_key[old_kid] = per_key.get(old_kid, 0) + 1
            session.add(
                PhiAuditEvent(
                    actor="cli:keys-rotate",
                    action="rotate",
                    resource_type="members",
                    resource_id=None,
                    outcome="allowed",
                )
            )
            rotated += len(batch)
            after = (batch[-1].workspace_id, batch[-1].member_id)
    return {"active_key_id": active, "rotated": rotated, "from": per_key}
