"""API key secrets: generated at random, shown once, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "tdk"


def new_key() -> tuple[str, str]:
    """A new (key_id, secret). The secret embeds the key id so that lookup needs no scan."""
    key_id = secrets.token_hex(8)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(secret: str) -> str | None:
    """The key id inside a well-formed secret, or None."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 16:
        return None
    return parts[1]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_sha256: str) -> bool:
    """Constant-time comparison: timing reveals nothing about how much of a guess was right."""
    return hmac.compare_digest(hash_secret(secret), stored_sha256)


def matches_admin(secret: str, admin_secret: str | None) -> bool:
    if not admin_secret:
        return False
    return hmac.compare_digest(secret.encode(), admin_secret.encode())
