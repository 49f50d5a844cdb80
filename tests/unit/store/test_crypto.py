"""AES-256-GCM field encryption: round trip, tamper and relocation detection, key ids."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import fwa_pipeline.store.crypto as crypto
from fwa_pipeline.settings import parse_encryption_keys
from fwa_pipeline.store.crypto import DecryptionError, FieldCipher, generate_key

WHERE = {"table": "members", "column": "first_name", "row_key": "1/M001"}


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher(parse_encryption_keys(generate_key("k1")))


def test_round_trip_and_fresh_nonce_per_value(cipher: FieldCipher) -> None:
    a = cipher.encrypt("Maria", **WHERE)
    b = cipher.encrypt("Maria", **WHERE)
    assert a != b  # random nonce: equal plaintexts do not leak equality
    assert a.startswith("v1:k1:")
    assert "Maria" not in a
    assert cipher.decrypt(a, **WHERE) == cipher.decrypt(b, **WHERE) == "Maria"


def test_encrypt_many_writes_v1_tokens_bound_to_their_rows() -> None:
    keys = parse_encryption_keys(generate_key("k1"))
    cipher = FieldCipher(keys)
    plaintexts, rows = ["Maria", "Maria", "", "Zoë"], ["1/M001", "1/M002", "1/M003", "2/M001"]
    tokens = cipher.encrypt_many(
        [p.encode() for p in plaintexts],
        table="members",
        column="first_name",
        row_keys=[r.encode() for r in rows],
    ).to_pylist()
    nonces = set()
    for token, plaintext, row in zip(tokens, plaintexts, rows, strict=True):
        # The v1 format read independently: what tokens stored by earlier versions are too.
        version, kid, payload = token.split(":")
        blob = base64.urlsafe_b64decode(payload)
        aad = f"fwa:v1|members|first_name|{row}|k1".encode()
        assert (version, kid) == ("v1", "k1")
        assert AESGCM(keys["k1"]).decrypt(blob[:12], blob[12:], aad).decode() == plaintext
        assert cipher.decrypt(token, **{**WHERE, "row_key": row}) == plaintext
        nonces.add(blob[:12])
    assert len(nonces) == len(tokens)  # a fresh nonce per value
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.decrypt(tokens[0], **{**WHERE, "row_key": rows[1]})  # rows swapped
    assert len(cipher.encrypt_many([], table="members", column="first_name", row_keys=[])) == 0
    with pytest.raises(ValueError, match="one row key per plaintext"):
        cipher.encrypt_many([b"a", b"b"], table="members", column="first_name", row_keys=[b"1/M"])


def test_decrypt_many_checks_every_value_as_decrypt_does() -> None:
    keys = parse_encryption_keys(f"{generate_key('new')},{generate_key('old')}")
    cipher, old = FieldCipher(keys), FieldCipher(keys, active_key_id="old")
    where = {"table": "members", "column": "date_of_birth"}
    rows = ["1/M001", "1/M002", "1/M003", "2/M001"]
    plaintexts = ["1960-01-31", "", "Zoë", "1999-12-01"]
    tokens = [
        (old if i % 2 else cipher).encrypt(p, **where, row_key=r)  # both keys of a rotation
        for i, (p, r) in enumerate(zip(plaintexts, rows, strict=True))
    ]
    assert cipher.decrypt_many(tokens, **where, row_keys=rows) == plaintexts
    assert cipher.decrypt_many([], **where, row_keys=[]) == []
    with pytest.raises(ValueError, match="one row key per token"):
        cipher.decrypt_many(tokens, **where, row_keys=rows[:1])

    prefix, payload = tokens[2].rsplit(":", 1)
    blob = bytearray(base64.urlsafe_b64decode(payload))
    blob[-1] ^= 1
    tampered = f"{prefix}:{base64.urlsafe_b64encode(bytes(blob)).decode()}"
    swapped = [tokens[1], tokens[0], *tokens[2:]]
    failures = {
        "tampered": ([*tokens[:2], tampered, tokens[3]], rows, "authentication failed"),
        "rows swapped": (swapped, rows, "authentication failed"),
        "other workspace": (tokens, [*rows[:3], "3/M001"], "authentication failed"),
        "relabelled key id": (
            [tokens[0].replace("v1:new:", "v1:old:"), *tokens[1:]],
            rows,
            "authentication failed",
        ),
        "unknown key id": (
            [*tokens[:2], tokens[2].replace("v1:new:", "v1:gone:"), tokens[3]],
            rows,
            "'gone', which is not configured",
        ),
        "not a token": (["1960-01-31", *tokens[1:]], rows, "not an encryption token"),
    }
    for what, (values, keys_of, message) in failures.items():
        with pytest.raises(DecryptionError, match=message) as info:
            cipher.decrypt_many(values, **where, row_keys=keys_of)
        assert not any(p and p in str(info.value) for p in plaintexts), what
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.decrypt_many(tokens, table="members", column="first_name", row_keys=rows)


def test_tampered_ciphertext_fails(cipher: FieldCipher) -> None:
    token = cipher.encrypt("Maria", **WHERE)
    prefix, payload = token.rsplit(":", 1)
    blob = bytearray(base64.urlsafe_b64decode(payload))
    blob[-1] ^= 1
    forged = f"{prefix}:{base64.urlsafe_b64encode(bytes(blob)).decode()}"
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.decrypt(forged, **WHERE)


@pytest.mark.parametrize(
    "moved",
    [
        {"row_key": "1/M002"},  # swapped into another member's row
        {"row_key": "2/M001"},  # same member id, other workspace
        {"column": "last_name"},  # moved to another column
        {"table": "providers"},
    ],
)
def test_ciphertext_moved_elsewhere_fails(cipher: FieldCipher, moved: dict[str, str]) -> None:
    token = cipher.encrypt("Maria", **WHERE)
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(token, **{**WHERE, **moved})
    assert "Maria" not in str(info.value)


def test_relabelled_key_id_fails() -> None:
    keys = parse_encryption_keys(f"{generate_key('new')},{generate_key('old')}")
    cipher = FieldCipher(keys)
    old = FieldCipher(keys, active_key_id="old").encrypt("Maria", **WHERE)
    assert cipher.decrypt(old, **WHERE) == "Maria"  # any configured key decrypts
    relabelled = old.replace("v1:old:", "v1:new:")
    with pytest.raises(DecryptionError):
        cipher.decrypt(relabelled, **WHERE)


def test_unknown_key_id_is_named(cipher: FieldCipher) -> None:
    other = FieldCipher(parse_encryption_keys(generate_key("gone")))
    with pytest.raises(DecryptionError, match="'gone', which is not configured"):
        cipher.decrypt(other.encrypt("x", **WHERE), **WHERE)


def test_generated_key_parses_and_first_is_active() -> None:
    keys = parse_encryption_keys(f"{generate_key('a1')}, {generate_key('b2')}")
    assert list(keys) == ["a1", "b2"]
    assert all(len(v) == 32 for v in keys.values())
    assert FieldCipher(keys).active_key_id == "a1"


@pytest.mark.parametrize("bad", ["nocolon", "k1:", "k-1:" + "A" * 44, "k1:%%%"])
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="encryption key"):
        parse_encryption_keys(bad)


def test_a_generated_key_is_named_to_the_second_so_two_made_the_same_day_differ(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    times = iter(
        [
            dt.datetime(2026, 11, 26, 9, 0, 0, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 26, 9, 0, 1, tzinfo=dt.UTC),
        ]
    )

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return next(times)

    monkeypatch.setattr(crypto.dt, "datetime", Clock)
    first, second = generate_key(), generate_key()
    assert [first.split(":")[0], second.split(":")[0]] == ["k20261126090000", "k20261126090001"]
    # Both in one FWA_ENCRYPTION_KEY, as a rotation has them.
    assert list(parse_encryption_keys(f"{second},{first}")) == [
        "k20261126090001",
        "k20261126090000",
    ]
