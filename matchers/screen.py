"""Before matching: what is not alerted at all, and the confidence the rest is routed with.

One pure function shared by the match stage and `threatroute explain`, in this order:
1. the operator's suppression list (`suppressed`),
2. hygiene: the feed says offline (`offline`), or the entry's validity ran out (`expired`),
3. feed trust: the record's `feed.accuracy` becomes the confidence learned from feedback
   (`FeedTrust`); the feed's own figure is kept in `extra.trust.feed_accuracy` with the reason,
   so a recipient and `explain` see both. Recipients' `min_confidence` then applies to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from threatroute.matchers.hygiene import HygienePolicy, stale
from threatroute.matchers.suppression import SuppressionList
from threatroute.matchers.trust import FeedTrust, Trust

DROP_KINDS = ("suppressed", "offline", "expired")  # metric labels


@dataclass(frozen=True, slots=True)
class Screened:
    record: Mapping[str, Any]  # to route (confidence adjusted); the input when nothing changed
    dropped: str | None = None  # one of DROP_KINDS
    why: str | None = None  # for people: explain, logs
    trust: Trust | None = None  # the feed's trust when it changed the confidence


def screen(record: Mapping[str, Any], now: datetime, suppressions: SuppressionList,
           hygiene: HygienePolicy, trust: FeedTrust) -> Screened:
    """Whether `record` is routed at `now`, and with which confidence."""
    hit = suppressions.match(record, now)
    if hit is not None:
        return Screened(record, "suppressed", hit.explain())
    gone = stale(record, now, hygiene)
    if gone is not None:
        return Screened(record, gone.kind, gone.detail)
    confidence, learned = trust.confidence(record)
    if learned is None:
        return Screened(record)
    feed = dict(record.get("feed") or {})
    original = feed.get("accuracy")
    feed["accuracy"] = confidence
    extra = dict(record.get("extra") or {})
    extra["trust"] = {"feed_accuracy": 100.0 if original is None else original,
                      "factor": round(learned.factor, 4), "why": learned.explain()}
    return Screened({**record, "feed": feed, "extra": extra}, trust=learned,
                    why=f"confidence {confidence:g} ({learned.explain()})")


__all__ = ["DROP_KINDS", "Screened", "screen"]
