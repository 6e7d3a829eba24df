"""What a recipient said about an indicator, and what that means for the next sighting: pure.

The feedback stage accepts a status report for an alert; the match stage keeps the latest one
per (recipient, indicator key) as a `Verdict` and asks `judge` what it means when that
indicator is seen again for that recipient:

- `false_positive`: MUTED, nothing to that recipient for `FeedbackPolicy.false_positive_mute`
  after the report; a sighting after that is a FRESH alert (the old one was closed).
- `not_ours`: NOT_OURS, never again to that recipient, whatever the alert; the indicator goes
  to the next candidate owner instead (`matchers/reroute.py`).
- `remediated`: QUIET for sightings up to the remediation (no re-notification); a sighting at
  or after it (by the sighting's own time) is a recurrence, a new alert, as before.
- `wont_fix`: QUIET, sightings still aggregate in the ledger but are never re-notified.
- `acknowledged`, `in_progress`: NORMAL (the recipient still gets reminders of an indicator
  that stays active).

Statuses other than `not_ours` and `false_positive` speak about one alert: once a newer
alert (a recurrence, or a new one after the dedup window) replaced it, they no longer apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from threatroute.matchers.dedup import Action


@dataclass(frozen=True)
class FeedbackPolicy:
    false_positive_mute: timedelta = timedelta(days=30)  # how long a false positive stays quiet
    # how long a not_ours is kept ([state] alert_days, the verdicts topic's retention):
    # `corrections accept` makes it permanent in the registry
    not_ours_kept: timedelta = timedelta(days=180)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The latest accepted report of one recipient about one indicator (a routing-table value)."""

    recipient: str
    indicator_key: str
    alert_id: str  # the alert the report was about
    status: str  # one of threatroute.outcomes.STATUSES
    at: str  # when (canonical UTC ISO 8601, the status's updated_at)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Verdict:
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        return cls(**known)


class Gate(Enum):
    NORMAL = "normal"  # the recipient has no say here: dedup decides
    MUTED = "muted"  # reported a false positive, still within the mute time
    NOT_OURS = "not_ours"  # reported not ours: never again to this recipient
    QUIET = "quiet"  # remediated or wont_fix: aggregate, never re-notify
    FRESH = "fresh"  # a false positive whose mute ran out: forget the old alert, start anew

    @property
    def blocks(self) -> bool:
        """Whether nothing at all goes to the recipient for this sighting."""
        return self in (Gate.MUTED, Gate.NOT_OURS)


@dataclass(frozen=True, slots=True)
class Judgement:
    gate: Gate
    reason: str | None = None  # why the recipient is not (re-)notified, for explain and metrics
    remediated_at: str | None = None  # for dedup's recurrence rule

    def action(self, action: Action) -> Action:
        """The dedup action after this judgement: QUIET turns a re-notification into a repeat."""
        if self.gate is Gate.QUIET and action is Action.RENOTIFY:
            return Action.REPEAT
        return action


NORMAL = Judgement(Gate.NORMAL)


def judge(verdict: Verdict | None, current_alert_id: str | None, sighting: datetime,
          policy: FeedbackPolicy) -> Judgement:
    """What `verdict` means for a sighting (at its own time) of the indicator.

    `current_alert_id` is the alert the match stage's dedup state holds for the pair now
    (None when it holds none): reports about another alert only count if they are about the
    indicator rather than the alert (false_positive, not_ours).
    """
    if verdict is None:
        return NORMAL
    status = verdict.status
    if status == "not_ours":
        return Judgement(Gate.NOT_OURS, f"reported not ours at {verdict.at}")
    if status == "false_positive":
        until = datetime.fromisoformat(verdict.at) + policy.false_positive_mute
        if sighting < until:
            return Judgement(Gate.MUTED, f"reported a false positive at {verdict.at}; "
                                         f"muted until {until.isoformat()}")
        return Judgement(Gate.FRESH) if verdict.alert_id == current_alert_id else NORMAL
    if verdict.alert_id != current_alert_id:
        return NORMAL
    if status == "remediated":
        return Judgement(Gate.QUIET, f"reported remediated at {verdict.at}",
                         remediated_at=verdict.at)
    if status == "wont_fix":
        return Judgement(Gate.QUIET, f"reported wont_fix at {verdict.at}")
    return NORMAL


def merge(previous: Verdict | None, incoming: Verdict) -> Verdict:
    """The verdict to keep for a pair when a new report arrives.

    `not_ours` sticks (nothing is sent to that recipient again, so nothing can supersede it);
    otherwise the newer report wins, and a late report about an older alert does not replace
    one about a newer alert.
    """
    if previous is None:
        return incoming
    if previous.status == "not_ours":
        return previous
    if incoming.alert_id != previous.alert_id and incoming.at < previous.at:
        return previous
    return incoming


def obsolete(verdict: Verdict, current_alert_id: str | None, now: datetime,
             policy: FeedbackPolicy) -> bool:
    """Whether the table can forget `verdict`: it can no longer change any decision, or
    (a not_ours) it is older than the policy keeps it."""
    if verdict.status == "not_ours":
        return now >= datetime.fromisoformat(verdict.at) + policy.not_ours_kept
    if verdict.status == "false_positive":
        return now >= datetime.fromisoformat(verdict.at) + policy.false_positive_mute \
            and verdict.alert_id != current_alert_id
    return verdict.alert_id != current_alert_id


__all__ = ["NORMAL", "FeedbackPolicy", "Gate", "Judgement", "Verdict", "judge", "merge",
           "obsolete"]
