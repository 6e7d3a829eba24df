"""Routing one enriched record: whom to alert, what the ledger records, which states change.

Pure: the match stage looks up the alert states of the record's input partition and the
remediation times, calls `route`, and carries the result to Kafka (states to its changelog,
every alert to the ledger, notifying ones to `alerts.<recipient>`). Tested without a broker.

For each recipient the index matches, `decide` (matchers/dedup.py) turns the sighting and
the alert state kept for (recipient, indicator key) into an action: NEW, REPEAT (ledger only),
RENOTIFY or RECURRENCE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from threatroute.matchers.dedup import Action, AlertState, DedupPolicy, decide, expired
from threatroute.matchers.formats import alert_record
from threatroute.matchers.index import Match, MatchIndex

__all__ = ["Delivery", "expired_keys", "route", "route_matches", "state_key"]


def state_key(recipient: str, indicator_key: str) -> str:
    """The key of an alert state (the match changelog's key): `<recipient>|<indicator key>`."""
    return f"{recipient}|{indicator_key}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one match: the state to keep under `key`, the ledger record (`alert`),
    and whether the alert goes to the recipient (`notifies`: not for a REPEAT)."""

    recipient: str
    key: str
    action: Action
    state: AlertState
    alert: dict[str, Any]

    @property
    def notifies(self) -> bool:
        return self.action.notifies


def route(record: Mapping[str, Any], indicator_key: str, index: MatchIndex,
          states: Mapping[str, AlertState], remediated_at: Callable[[str], str | None],
          now: datetime, policy: DedupPolicy) -> list[Delivery]:
    """Route `record` (keyed `indicator_key`) at `now`.

    `states`: the alert states of the record's partition by `state_key`; `remediated_at(alert
    id)`: when its recipient reported that alert remediated, if it did. Raises whatever the
    index raises on a record it cannot route (the stage refuses that record).
    """
    return list(route_matches(record, indicator_key, index.match(record), states,
                              remediated_at, now, policy))


def route_matches(record: Mapping[str, Any], indicator_key: str, matches: list[Match],
                  states: Mapping[str, AlertState], remediated_at: Callable[[str], str | None],
                  now: datetime, policy: DedupPolicy) -> Iterator[Delivery]:
    """`route` for matches already found (explain and tests use the index separately)."""
    now = now.replace(microsecond=0)
    sent_at = now.isoformat()
    for match in matches:
        key = state_key(match.recipient_id, indicator_key)
        previous = states.get(key)
        remediated = remediated_at(previous.alert_id) if previous else None
        action, state = decide(previous, match.recipient_id, indicator_key, now, policy,
                               remediated)
        yield Delivery(match.recipient_id, key, action, state,
                       alert_record(state, action, record, match.reasons, sent_at))


def expired_keys(states: Mapping[str, AlertState], now: datetime,
                 policy: DedupPolicy) -> list[str]:
    """The keys of states not seen for longer than the dedup window (to tombstone)."""
    return [key for key, state in states.items() if expired(state, now, policy)]
