"""Field-level encryption of PHI: AES-256-GCM with a random 96-bit nonce per value.

A stored value is a versioned token ``v1:<key id>:<base64url(nonce | ciphertext | tag)>``. The
associated data binds the ciphertext to its table, column, row key and key id, so a token copied
into another row or column (or relabelled with another key id) fails authentication instead of
decrypting to the wrong person's data.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fwa_pipeline.settings import KEY_BYTES

TOKEN_VERSION = "v1"
NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A token could not be decrypted for the place it was read from. Never carries plaintext."""


def generate_key(key_id: str | None = None) -> str:
    """A new key in the ``KEYID:BASE64`` form ``FWA_ENCRYPTION_KEY`` expects."""
    kid = key_id or "k" + dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    if not kid.isalnum() or len(kid) > 16:
        raise ValueError("key id must be alphanumeric and at most 16 characters")
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def is_token(value: str) -> bool:
    return value.startswith(TOKEN_VERSION + ":")


def _aad(table: str, column: str, row_key: str, kid: str) -> bytes:
    return f"fwa:{TOKEN_VERSION}|{table}|{column}|{row_key}|{kid}".encode()


class FieldCipher:
    """Encrypts under the active key; decrypts under any configured key (rotation window)."""

    def __init__(self, keys: dict[str, bytes], active_key_id: str | None = None) -> None:
        if not keys:
            raise ValueError("FieldCipher needs at least one key")
        self.active_key_id = active_key_id or next(iter(keys))
        if self.active_key_id not in keys:
            raise ValueError(f"active key id {self.active_key_id!r} is not configured")
        self._aeads = {kid: AESGCM(material) for kid, material in keys.items()}

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._aeads)

    def encrypt(self, plaintext: str, *, table: str, column: str, row_key: str) -> str:
        kid = self.active_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[kid].encrypt(
            nonce, plaintext.encode(), _aad(table, column, row_key, kid)
        )
        return f"{TOKEN_VERSION}:{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, table: str, column: str, row_key: str) -> str:
        where = f"{table}.{column} of row {row_key!r}"
        version, _, rest = token.partition(":")
        kid, _, payload = rest.partition(":")
        if version != TOKEN_VERSION or not kid or not payload:
            raise DecryptionError(f"{where}: not an encryption token of version {TOKEN_VERSION}")
        aead = self._aeads.get(kid)
        if aead is None:
            raise DecryptionError(
                f"{where}: encrypted under key id {kid!r}, which is not configured"
            )
        try:
            blob = base64.urlsafe_b64decode(payload.encode())
            plaintext = aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(table, column, row_key, kid)
            )
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError(
                f"{where}: authentication failed (tampered, or moved from another row or column)"
            ) from exc
        return plaintext.decode()

    @staticmethod
    def key_id_of(token: str) -> str | None:
        if not is_token(token):
            return None
        return token.split(":", 2)[1]
