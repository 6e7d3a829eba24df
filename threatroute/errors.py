"""One root exception for the project, with subclasses that carry context."""

from __future__ import annotations


class ThreatrouteError(Exception):
    """Root of every error threatroute raises on purpose."""


class InvalidRecord(ThreatrouteError):
    """A record (or one field of it) failed validation.

    `reason` is the operator-facing sentence that goes into the dead-letter record;
    `field` names the IntelMQ field at fault when there is one.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class ConfigError(ThreatrouteError):
    """Configuration or a data file is unusable; says which setting or file."""
