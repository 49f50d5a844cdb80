"""AES-256-GCM field encryption: round trip, tamper and relocation detection, key ids."""

from __future__ import annotations

import base64

import pytest

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
