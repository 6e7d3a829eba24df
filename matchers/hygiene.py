"""Alert hygiene: what is not worth an alert however it routes, and when a sighting happened.

- A feed entry whose `status` says the thing is gone (`offline`, as abuse.ch and PhishTank
  mark dead URLs and C2s) is not alerted: there is nothing left to take down.
- An entry past its validity is not alerted: its own `valid_until` (STIX `valid_until`, kept
  as `extra.stix.valid_until` by the STIX parser, or `extra.valid_until`), or the feed's expiry
  (`HygienePolicy.feed_expiry`: how long a feed's entries stay valid after `time.source`).
- A sighting's time is its own (`time.source`, else `time.observation`), never later than when
  the pipeline handles it: recurrence and dedup are judged on when the thing was seen, not on
  when a delayed feed got processed.

Pure: the match stage counts what `stale` returns per kind, and `explain` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# `status` values (lower-cased) that mean the indicator is no longer live
OFFLINE_STATUSES = frozenset({"offline", "down", "dead", "inactive", "removed", "taken down",
                              "takendown", "unreachable", "sinkholed"})
VALID_UNTIL_FIELDS = ("valid_until", "stix.valid_until")  # under `extra`


@dataclass(frozen=True)
class HygienePolicy:
    feed_expiry: Mapping[str, timedelta] = field(default_factory=dict)  # feed name -> validity
    default_expiry: timedelta | None = None  # for feeds not listed; None: entries never expire


@dataclass(frozen=True, slots=True)
class Stale:
    """Why a record is not alerted: `kind` is a metric label, `detail` for people."""

    kind: str  # "offline" | "expired"
    detail: str


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def sighting_time(record: Mapping[str, Any], received: datetime) -> datetime:
    """When the indicator was seen: `time.source`, else `time.observation`, else `received`;
    never later than `received` (a feed whose clock runs ahead does not see the future)."""
    times = record.get("time") or {}
    for name in ("source", "observation"):
        moment = _parse(times.get(name))
        if moment is not None:
            return min(moment, received)
    return received


def valid_until(record: Mapping[str, Any]) -> datetime | None:
    extra = record.get("extra") or {}
    for name in VALID_UNTIL_FIELDS:
        value = extra.get(name)
        if value is None and "." in name:  # nested form: {"stix": {"valid_until": ...}}
            parent, child = name.split(".", 1)
            nested = extra.get(parent)
            value = nested.get(child) if isinstance(nested, Mapping) else None
        moment = _parse(value)
        if moment is not None:
            return moment
    return None


def stale(record: Mapping[str, Any], now: datetime, policy: HygienePolicy) -> Stale | None:
    """Why `record` should not be alerted at `now`, or None if it should be routed."""
    status = record.get("status")
    if isinstance(status, str) and status.strip().lower() in OFFLINE_STATUSES:
        return Stale("offline", f"the feed marks it {status.strip().lower()}")
    until = valid_until(record)
    if until is not None and until <= now:
        return Stale("expired", f"valid until {until.isoformat()}")
    feed = (record.get("feed") or {}).get("name")
    expiry = policy.feed_expiry.get(feed, policy.default_expiry) if feed else \
        policy.default_expiry
    if expiry is not None:
        seen = sighting_time(record, now)
        if seen + expiry <= now:
            return Stale("expired", f"seen {seen.isoformat()}; feed {feed or '(unnamed)'} "
                                    f"entries expire after {_hours(expiry)}")
    return None


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g}h"


__all__ = ["OFFLINE_STATUSES", "HygienePolicy", "Stale", "sighting_time", "stale", "valid_until"]
