"""Escalation when nobody acts: pure rules over the owner alerts the match stage watches.

Per classification the owner has `acknowledge_within` to answer an alert. An owner alert
still unanswered (no feedback, or `wont_fix`) is escalated once per level, each to recipients
other than the owner:

    level 1 "upstream": after 1 x acknowledge_within, to those subscribed to the indicator's
                        ASN (the owner's upstream ISP);
    level 2 "cert":     after 2 x acknowledge_within, to those subscribed to its country (the
                        national CERT).

A level with nobody to tell is passed over (the next still waits for its own time). Any
acknowledgement (`acknowledged`, `in_progress`) or closing status stops the ladder; a later
`wont_fix` restarts it where it was. Each escalation is a new alert (its own id, so its
recipient can answer it) marked `escalation`, naming the original recipient and how long the
alert has been open; never its alert id, which is the owner's capability.

Time is whatever clock the caller passes (`now`): the stage ticks with its own clock, tests
with a fake one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

LEVELS = ("upstream", "cert")  # level n escalates to LEVELS[n - 1]
STOPS = frozenset({"acknowledged", "in_progress", "remediated", "false_positive", "not_ours"})
CLOSED = frozenset({"remediated", "false_positive", "not_ours"})


@dataclass(frozen=True)
class EscalationPolicy:
    acknowledge_within: Mapping[str, timedelta] = field(default_factory=dict)  # per type
    default: timedelta | None = None  # for types not listed; None: never escalate them

    def deadline(self, classification: str) -> timedelta | None:
        return self.acknowledge_within.get(classification, self.default)


@dataclass(frozen=True, slots=True)
class Watched:
    """An owner alert the match stage watches (table value, key: alert id)."""

    alert_id: str
    recipient: str  # the owner it was sent to
    indicator_key: str
    classification: str
    sent_at: str  # canonical UTC
    indicator: Mapping[str, Any]  # the enriched record, to put in the escalation
    status: str | None = None  # the owner's latest report
    level: int = 0  # escalation levels done
    escalated_to: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        # spelled out, the indicator not deep-copied (dataclasses.asdict would): records are
        # not changed once made, and this runs per owner alert
        return {"alert_id": self.alert_id, "recipient": self.recipient,
                "indicator_key": self.indicator_key, "classification": self.classification,
                "sent_at": self.sent_at,
                "indicator": self.indicator if isinstance(self.indicator, dict)
                else dict(self.indicator),
                "status": self.status, "level": self.level, "escalated_to": list(self.escalated_to)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Watched:
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        known["escalated_to"] = tuple(known.get("escalated_to") or ())
        return cls(**known)

    @property
    def asn(self) -> int | None:
        asn = (self.indicator.get("source") or {}).get("asn")
        return int(asn) if asn is not None else None

    @property
    def country(self) -> str | None:
        cc = ((self.indicator.get("source") or {}).get("geolocation") or {}).get("cc")
        return str(cc) if cc else None

    def reported(self, status: str) -> Watched:
        """This alert after the owner reported `status`."""
        return replace(self, status=status)


def open_for(watched: Watched, now: datetime) -> timedelta:
    return now - datetime.fromisoformat(watched.sent_at)


def due(watched: Watched, now: datetime, policy: EscalationPolicy) -> int | None:
    """The next level (1-based) to escalate `watched` to at `now`, or None."""
    if watched.status in STOPS or watched.level >= len(LEVELS):
        return None
    deadline = policy.deadline(watched.classification)
    if deadline is None:
        return None
    level = watched.level + 1
    return level if open_for(watched, now) >= deadline * level else None


def finished(watched: Watched, policy: EscalationPolicy) -> bool:
    """Whether the stage can stop watching: closed by the owner, or nothing left to escalate
    (a closed alert is no longer needed for a reroute either)."""
    if watched.status in CLOSED:
        return True
    return watched.level >= len(LEVELS) or policy.deadline(watched.classification) is None


@dataclass(frozen=True, slots=True)
class Escalation:
    """One escalation step: who is told, and the watched alert's state afterwards."""

    level: int
    recipients: tuple[str, ...]
    watched: Watched  # with `level` and `escalated_to` advanced


def escalate(watched: Watched, now: datetime, policy: EscalationPolicy,
             subscribers: Callable[[str, Any], Iterable[str]],
             allowed: Callable[[str], bool]) -> Escalation | None:
    """The escalation due at `now`, if any.

    `subscribers(kind, key)` lists recipients subscribed to an ASN (`"asn"`, int) or a
    country (`"country"`, code); `allowed(recipient)` applies that recipient's own filters
    (TLP, classifications, confidence) to the indicator. The owner and anyone already told
    are left out.
    """
    level = due(watched, now, policy)
    if level is None:
        return None
    kind, key = ("asn", watched.asn) if LEVELS[level - 1] == "upstream" else \
        ("country", watched.country)
    told = {watched.recipient, *watched.escalated_to}
    chosen: list[str] = []
    if key is not None:
        for rid in subscribers(kind, key):
            if rid not in told and rid not in chosen and allowed(rid):
                chosen.append(rid)
    after = replace(watched, level=level, escalated_to=watched.escalated_to + tuple(chosen))
    return Escalation(level, tuple(chosen), after)


def escalation_alert(watched: Watched, level: int, recipient: str, alert_id: str,
                     now: datetime, policy: EscalationPolicy) -> dict[str, Any]:
    """The alert record (ledger and recipient topic) of one escalation to `recipient`."""
    hours = open_for(watched, now).total_seconds() / 3600
    deadline = policy.deadline(watched.classification) or timedelta(0)
    kind = LEVELS[level - 1]
    state = "answered wont_fix" if watched.status == "wont_fix" else "did not acknowledge"
    why = (f"escalation ({kind}): {watched.recipient} {state} a {watched.classification} alert "
           f"open for {_span(hours * 3600)} (acknowledge within "
           f"{_span(deadline.total_seconds(), exact=True)})")
    via = (f"subscribed asn {watched.asn}" if kind == "upstream"
           else f"subscribed country {watched.country}")
    stamp = now.replace(microsecond=0).isoformat()
    return {
        "alert_id": alert_id,
        "recipient": recipient,
        "indicator_key": watched.indicator_key,
        "notification": "escalation",
        "indicator": dict(watched.indicator),
        "reasons": [why, via],
        "first_seen": watched.sent_at,
        "last_seen": stamp,
        "count": 1,
        "recurrence": False,
        "sent_at": stamp,
        "escalation": {
            "level": level,
            "kind": kind,
            "original_recipient": watched.recipient,
            "open_since": watched.sent_at,
            "open_hours": round(hours, 1),
            "owner_status": watched.status,
        },
    }


def _span(seconds: float, exact: bool = False) -> str:
    """A duration for people: hours (as the policy states them: `exact`), minutes or seconds
    when short (a test's or a demo's times)."""
    if seconds >= 3600:
        return f"{seconds / 3600:g}h" if exact else f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m" if seconds >= 120 else f"{seconds:.0f}s"


__all__ = ["LEVELS", "Escalation", "EscalationPolicy", "Watched", "due", "escalate",
           "escalation_alert", "finished", "open_for"]
