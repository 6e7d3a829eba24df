"""Who is asking: a recipient's gateway token, as HTTP Basic (id + token) or a bearer header;
and how often: a rate limit per recipient, and one per client address on refused credentials.

Only token hashes are known here (threatroute/tokens.py); an unknown recipient, a token of a
recipient removed from the registry, a wrong or missing token all get the same 401.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from threatroute.streams.config import GatewaySettings
from threatroute.streams.gateway.store import Directory
from threatroute.tokens import token_hash

CHALLENGE = 'Basic realm="threatroute", charset="UTF-8"'


@dataclass
class Refused(Exception):
    """A request the gateway answers with an error status (401, 403, 404, 406, 429...)."""

    status: int
    title: str
    description: str = ""
    retry_after: int | None = None

    def headers(self) -> dict[str, str]:
        headers = {"WWW-Authenticate": CHALLENGE} if self.status == 401 else {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class Guard:
    def __init__(self, directory: Directory, settings: GatewaySettings) -> None:
        self.directory = directory
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_recipient = parse(settings.rate_limit)
        self._per_failure = parse(settings.auth_failure_limit)

    def identify(self, authorization: str | None, client: str) -> str:
        """The recipient id the credentials belong to; raises Refused otherwise."""
        if not self._limiter.test(self._per_failure, "refused", client):
            raise Refused(429, "Too many refused credentials", "try again later",
                          retry_after=self._per_failure.get_expiry())
        recipient = self._recipient(authorization or "")
        if recipient is None:
            self._limiter.hit(self._per_failure, "refused", client)
            raise Refused(401, "Unauthorized",
                          "give your recipient id and gateway token (HTTP Basic) or the token "
                          "as a bearer token")
        if not self._limiter.hit(self._per_recipient, "recipient", recipient):
            raise Refused(429, "Too many requests", f"rate limit {self._per_recipient}",
                          retry_after=self._per_recipient.get_expiry())
        return recipient

    def _recipient(self, authorization: str) -> str | None:
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return self.directory.recipient_by_hash(token_hash(credentials))
        if scheme.lower() != "basic" or not credentials:
            return None
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        recipient, separator, token = decoded.partition(":")
        record = self.directory.token_of(recipient) if separator else None
        return recipient if record is not None and record.matches(token) else None
