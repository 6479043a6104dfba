"""User keys: generation, hashing (HMAC-SHA256), the short prefix shown in listings, and
a key row as plain data (never the key or its hash)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from tokone.core.store.tables import ApiKey

KEY_RANDOM_CHARS = 48
VISIBLE_CHARS = 6


class KeyHasher:
    """Hashes keys with a server secret so a stolen database does not reveal usable keys."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def hash(self, key: str) -> str:
        """Hex HMAC-SHA256 of `key`."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()


def generate_key(prefix: str) -> str:
    """A new random key: `prefix` + 48 URL-safe characters."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(KEY_RANDOM_CHARS))


def visible_prefix(key: str, prefix: str) -> str:
    """What listings show of a key: its prefix and a few characters, e.g. `sk-Ab3xY9…`."""
    return key[: len(prefix) + VISIBLE_CHARS] + "…"


def key_info(key: ApiKey) -> dict[str, Any]:
    """A key row as plain data (never the key or its hash)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status,
        "models": [m for m in key.models.split(",") if m],
        "expires_at": key.expires_at,
    }
