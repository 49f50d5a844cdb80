"""Member PHI through the store: transparent decryption, plaintext in development, rotation."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from fwa_pipeline.domain.enrich import members_needing_age, members_needing_death_date
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.claims import read_members
from fwa_pipeline.store.crypto import DecryptionError, FieldCipher, generate_key
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import Member, PhiAuditEvent, Workspace
from fwa_pipeline.store.pii import (
    cipher_from_settings,
    decrypt_member_frame,
    encrypt_member_frame,
    get_member,
    members_frame,
    rotate_keys,
)

PEOPLE = pd.DataFrame(
    {
        "member_id": [f"M{i:03d}" for i in range(7)],
        "first_name": ["Ana", "Ben", "Cleo", "Dev", "Eve", "Finn", "Gus"],
        "last_name": ["Alvarez", "Brown", "Chen", "Dutta", "Evans", "Fox", "Grey"],
        "date_of_birth": [
            "1950-01-02",
            "1961-02-03",
            "1972-03-04",
            "1983-04-05",
            "1994-05-06",
            "2005-06-07",
            "2016-07-08",
        ],
        "gender": list("FMFMFMU"),
        # Unknown (alive) for most; Finn's is a date of death like any date of a person: PHI.
        "date_of_death": [None, None, None, None, None, "2024-01-15", None],
    }
)


def _settings(base: Settings, keys: str) -> Settings:
    return base.model_copy(update={"encryption_key": SecretStr(keys)})


def _store(engine: Engine, cipher: FieldCipher | None, frame: pd.DataFrame) -> int:
    with session_scope(engine) as session:
        workspace = Workspace(name="acme")
        session.add(workspace)
        session.flush()
        stored = encrypt_member_frame(frame, cipher, workspace.id)
        session.add_all(
            Member(workspace_id=workspace.id, **row) for row in stored.to_dict(orient="records")
        )
        return workspace.id


def test_phi_is_encrypted_at_rest_and_decrypted_on_read(
    sqlite_engine: Engine, settings: Settings
) -> None:
    cipher = cipher_from_settings(settings)
    ws = _store(sqlite_engine, cipher, PEOPLE)
    with sqlite_engine.connect() as conn:
        raw = conn.execute(select(Member.first_name, Member.date_of_birth)).all()
        deaths = dict(conn.execute(select(Member.member_id, Member.date_of_death)).all())
    assert all(v.startswith("v1:") for row in raw for v in row)
    assert deaths.pop("M005").startswith("v1:test1:")
    assert set(deaths.values()) == {None}  # no date of death known: nothing to seal
    with session_scope(sqlite_engine) as session:
        ana = get_member(session, cipher, ws, "M000")
        finn = get_member(session, cipher, ws, "M005")
    assert ana is not None and finn is not None
    assert (ana.first_name, ana.last_name, ana.date_of_birth, ana.date_of_death) == (
        "Ana",
        "Alvarez",
        dt.date(1950, 1, 2),
        None,
    )
    assert finn.date_of_death == dt.date(2024, 1, 15)
    frame = members_frame(sqlite_engine, cipher, ws)
    assert sorted(frame["first_name"]) == sorted(PEOPLE["first_name"])
    assert frame.set_index("member_id")["date_of_death"].to_dict()["M005"] == dt.date(2024, 1, 15)
    assert "date_of_death" not in members_frame(sqlite_engine, cipher, ws, with_phi=False)


def test_members_as_the_parser_types_them_round_trip(settings: Settings) -> None:
    cipher = cipher_from_settings(settings)
    dates = pd.to_datetime(PEOPLE["date_of_birth"]).dt.date
    deaths = [dt.date.fromisoformat(d) if pd.notna(d) else None for d in PEOPLE["date_of_death"]]
    parsed = PEOPLE.astype(pd.ArrowDtype(pa.string())).assign(
        date_of_birth=pd.Series(dates, dtype=pd.ArrowDtype(pa.date32())),
        date_of_death=pd.Series(deaths, dtype=pd.ArrowDtype(pa.date32())),
    )
    stored = encrypt_member_frame(parsed, cipher, 7)
    assert parsed["first_name"].tolist() == PEOPLE["first_name"].tolist()  # not modified
    assert stored["pii_key_id"].unique().tolist() == ["test1"]
    assert not set(stored["date_of_birth"]) & set(PEOPLE["date_of_birth"])
    assert stored["date_of_death"].isna().tolist() == PEOPLE["date_of_death"].isna().tolist()
    assert stored["date_of_death"].dropna().str.startswith("v1:").all()
    back = decrypt_member_frame(stored, cipher, 7)
    assert back["last_name"].tolist() == PEOPLE["last_name"].tolist()
    assert back["date_of_birth"].tolist() == dates.tolist()
    assert back["date_of_death"].tolist() == deaths
    plaintext = encrypt_member_frame(parsed, None, 7)
    assert plaintext["date_of_birth"].tolist() == PEOPLE["date_of_birth"].tolist()
    assert plaintext["date_of_death"].dropna().tolist() == ["2024-01-15"]


def test_row_swap_is_detected(sqlite_engine: Engine, settings: Settings) -> None:
    cipher = cipher_from_settings(settings)
    ws = _store(sqlite_engine, cipher, PEOPLE)
    with session_scope(sqlite_engine) as session:
        a = session.get(Member, (ws, "M000"))
        b = session.get(Member, (ws, "M001"))
        a.first_name, b.first_name = b.first_name, a.first_name
    with session_scope(sqlite_engine) as session, pytest.raises(DecryptionError, match="M000"):
        get_member(session, cipher, ws, "M000")


def test_plaintext_in_development_then_rotation_encrypts_it(
    sqlite_engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    no_key = _settings(settings, "")
    ws = _store(sqlite_engine, cipher_from_settings(no_key), PEOPLE)
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(Member.pii_key_id)).scalars().all() == [None] * len(PEOPLE)
    report = rotate_keys(sqlite_engine, settings, batch_size=3)
    assert report["rotated"] == len(PEOPLE)
    assert report["from"] == {"plaintext": len(PEOPLE)}
    cipher = cipher_from_settings(settings)
    assert members_frame(sqlite_engine, cipher, ws)["last_name"].tolist() == sorted(
        PEOPLE["last_name"]
    )
    with sqlite_engine.connect() as conn:
        assert "Alvarez" not in str(conn.execute(select(Member.last_name)).scalars().all())
        assert "2024-01-15" not in str(conn.execute(select(Member.date_of_death)).scalars().all())
        assert conn.execute(select(PhiAuditEvent.action)).scalars().first() == "rotate"
    assert members_frame(sqlite_engine, cipher, ws)["date_of_death"].dropna().tolist() == [
        dt.date(2024, 1, 15)
    ]
    assert not any("Alvarez" in r.getMessage() for r in caplog.records)


def test_rotation_with_mixed_key_ids_is_resumable(
    sqlite_engine: Engine, settings: Settings
) -> None:
    old_key, new_key = generate_key("old"), generate_key("new")
    old = _settings(settings, old_key)
    ws = _store(sqlite_engine, cipher_from_settings(old), PEOPLE.iloc[:4])
    # Half the members were written under "old"; a later batch arrives while "new" is active.
    both = _settings(settings, f"{new_key},{old_key}")
    cipher = cipher_from_settings(both)
    with session_scope(sqlite_engine) as session:
        later = encrypt_member_frame(PEOPLE.iloc[4:], cipher, ws)
        session.add_all(Member(workspace_id=ws, **row) for row in later.to_dict(orient="records"))

    # An interrupted rotation: the first batch commits, then the process dies.
    calls = {"n": 0}
    original = FieldCipher.encrypt

    def dying_encrypt(self: FieldCipher, *args: object, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] > 3 * 2:  # two members (three columns each), then a crash
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    FieldCipher.encrypt = dying_encrypt  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            rotate_keys(sqlite_engine, both, batch_size=2)
    finally:
        FieldCipher.encrypt = original  # type: ignore[method-assign]

    with sqlite_engine.connect() as conn:
        kids = conn.execute(select(Member.pii_key_id)).scalars().all()
    assert kids.count("new") == 3 + 2  # 3 written under new + the committed first batch
    report = rotate_keys(sqlite_engine, both, batch_size=2)
    assert report["rotated"] == 2
    with sqlite_engine.connect() as conn:
        assert set(conn.execute(select(Member.pii_key_id)).scalars()) == {"new"}
    # Once everything is on "new", the old key can be retired.
    only_new = FieldCipher({"new": both.encryption_keys["new"]})
    assert len(members_frame(sqlite_engine, only_new, ws)) == len(PEOPLE)


def test_rotation_without_a_key_is_refused(sqlite_engine: Engine, settings: Settings) -> None:
    with pytest.raises(ValueError, match="no key to rotate to"):
        rotate_keys(sqlite_engine, _settings(settings, ""))


def test_a_run_decrypts_only_the_birth_dates_its_rules_need(
    sqlite_engine: Engine, settings: Settings
) -> None:
    cipher = cipher_from_settings(settings)
    ws = _store(sqlite_engine, cipher, PEOPLE)
    cpt = pd.DataFrame(
        {"cpt_code": ["59400", "99213"], "min_age": [12, None], "max_age": [None, None]}
    )
    medical = pd.DataFrame(
        {
            "member_id": ["M001", "M002", "M002", None],
            "cpt_code": ["59400", "99213", "59400", "59400"],
        }
    )
    needing = members_needing_age(medical, cpt)
    assert needing == {"M001", "M002"}  # only codes with an age bound need an age

    members = read_members(sqlite_engine, cipher, ws, birth_dates_of=needing)

    births = members.set_index("member_id")["date_of_birth"]
    assert births[["M001", "M002"]].tolist() == [
        pd.Timestamp("1961-02-03"),
        pd.Timestamp("1972-03-04"),
    ]
    assert births.drop(["M001", "M002"]).isna().all()
    assert members["gender"].notna().all()  # what every rule may read is still there
    # The dates of death the after-death rules compare with, decrypted.
    deaths = members.set_index("member_id")["date_of_death"]
    assert deaths.dropna().to_dict() == {"M005": pd.Timestamp("2024-01-15")}


def test_a_run_decrypts_only_the_dates_of_death_an_enabled_rule_needs(
    sqlite_engine: Engine, settings: Settings
) -> None:
    cipher = cipher_from_settings(settings)
    ws = _store(sqlite_engine, cipher, PEOPLE)
    claims = {
        "medical": pd.DataFrame({"member_id": ["M001", None]}),
        "pharmacy": pd.DataFrame({"member_id": ["M005"]}),
    }
    both = {"RULE-MED-006", "RULE-RX-008"}
    assert members_needing_death_date(claims, both) == {"M001", "M005"}
    # Fill after death disabled: the pharmacy claims' members need no date of death.
    assert members_needing_death_date(claims, {"RULE-MED-006"}) == {"M001"}

    def deaths(needing: set[str]) -> dict[str, pd.Timestamp]:
        members = read_members(sqlite_engine, cipher, ws, death_dates_of=needing)
        return members.set_index("member_id")["date_of_death"].dropna().to_dict()

    assert deaths(members_needing_death_date(claims, both)) == {"M005": pd.Timestamp("2024-01-15")}
    assert deaths(members_needing_death_date(claims, {"RULE-MED-006"})) == {}
