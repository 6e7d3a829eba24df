"""Dedup, re-notify and recurrence for one (recipient, indicator): a pure state machine.

The match stage keeps one `AlertState` per (recipient, indicator key) in a Kafka-backed table
and asks `decide` what a new sighting means:

- no state, or state expired (not seen for longer than the dedup window): a NEW alert;
- seen again inside the window: a REPEAT, aggregated (count, last_seen) in the ledger only;
- still seen `renotify` after the last notification: RENOTIFY, the same alert sent again;
- seen again after the recipient reported it remediated: a RECURRENCE, a new alert flagged
  as such (the old one was closed).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any


class Action(Enum):
    NEW = "new"
    REPEAT = "repeat"
    RENOTIFY = "renotify"
    RECURRENCE = "recurrence"

    @property
    def notifies(self) -> bool:
        """Whether this action sends an alert to the recipient's topic."""
        return self is not Action.REPEAT


@dataclass(frozen=True)
class DedupPolicy:
    window: timedelta = timedelta(days=7)  # forget an indicator not seen for this long
    renotify: timedelta = timedelta(days=1)  # remind a recipient of one still active


@dataclass(frozen=True)
class AlertState:
    """What the match stage remembers about one alert; also its changelog value."""

    alert_id: str
    recipient: str
    indicator_key: str
    first_seen: str
    last_seen: str
    last_notified: str
    count: int
    recurrence: bool = False

    def to_json(self) -> dict[str, Any]:
        # spelled out: dataclasses.asdict deep-copies, and this runs per alert
        return {"alert_id": self.alert_id, "recipient": self.recipient,
                "indicator_key": self.indicator_key, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "last_notified": self.last_notified,
                "count": self.count, "recurrence": self.recurrence}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AlertState:
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        return cls(**known)


def new_alert_id() -> str:
    """Random and unguessable: the id is also the capability to give feedback on the alert.
    Never begins with "-", which a command line (`threatroute tail ... ID`, kcat) would take
    for an option (one id in 64; 127 random bits remain)."""
    while (alert_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return alert_id


def decide(state: AlertState | None, recipient: str, indicator_key: str, now: datetime,
           policy: DedupPolicy, remediated_at: str | None = None) -> tuple[Action, AlertState]:
    """The action for a sighting at `now` and the state to store afterwards.

    `remediated_at` is when the recipient reported the alert in `state` remediated, if it did
    (the caller looks it up by `state.alert_id`, so a recurrence's new alert starts clean).
    """
    stamp = now.isoformat()
    if state is not None and remediated_at and datetime.fromisoformat(remediated_at) <= now:
        fresh = AlertState(new_alert_id(), recipient, indicator_key, stamp, stamp, stamp, 1,
                           recurrence=True)
        return Action.RECURRENCE, fresh
    if state is None or now - datetime.fromisoformat(state.last_seen) > policy.window:
        return Action.NEW, AlertState(new_alert_id(), recipient, indicator_key, stamp, stamp,
                                      stamp, 1)
    seen = replace(state, last_seen=max(state.last_seen, stamp), count=state.count + 1)
    if now - datetime.fromisoformat(state.last_notified) >= policy.renotify:
        return Action.RENOTIFY, replace(seen, last_notified=stamp)
    return Action.REPEAT, seen


def expired(state: AlertState, now: datetime, policy: DedupPolicy) -> bool:
    """Whether `state` was last seen longer than the dedup window before `now` (a sighting
    would start a new alert anyway, so the state can be forgotten)."""
    return state.last_seen < (now - policy.window).isoformat()
