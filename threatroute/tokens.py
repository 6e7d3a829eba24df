"""Gateway tokens: issue one, keep only its hash, check a presented one. Pure (no Kafka).

A token is 32 random bytes (256 bits, URL-safe base64). With that much entropy a plain
SHA-256 is the right hash: nothing can be guessed from it, and a deliberately slow KDF
(scrypt, argon2) would only make every request slower and hand attackers a CPU lever. The
gateway keeps `TokenRecord`s on the compacted `gateway.tokens` topic (key = recipient id);
issuing a new token for a recipient replaces its old hash, which rotates it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from threatroute import fields
from threatroute.errors import InvalidRecord

ALGORITHM = "sha256"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """Value on `gateway.tokens`: whose token, its hash, when it was issued."""

    recipient: str
    hash: str
    issued_at: str
    algorithm: str = ALGORITHM

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.hash, token_hash(token))

    def to_json(self) -> dict[str, Any]:
        return {"recipient": self.recipient, "hash": self.hash, "issued_at": self.issued_at,
                "algorithm": self.algorithm}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> TokenRecord:
        if not isinstance(value, Mapping) or value.get("algorithm", ALGORITHM) != ALGORITHM:
            raise InvalidRecord("not a token record of a known algorithm")
        digest = value.get("hash")
        if not isinstance(digest, str) or len(digest) != 64:
            raise InvalidRecord("hash is not a SHA-256 hex digest", "hash")
        return cls(fields.string(value.get("recipient")), digest,
                   fields.string(value.get("issued_at")))


def issue(recipient: str) -> tuple[str, TokenRecord]:
    """A new token and the record to store for it (the token itself is never stored)."""
    token = new_token()
    return token, TokenRecord(recipient, token_hash(token), fields.now())
