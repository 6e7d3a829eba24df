"""Feedback that acts, as the match stage's pure decisions: what to send and what to remember.

`FeedbackRouting` holds, per input partition of the match stage, the tables the feedback
rules need and returns every change as an `Emit` (topic, key, value, partition) for the stage
to produce inside its transaction; it never touches Kafka.

- `verdicts` (changelog `match.verdicts`, key `recipient|indicator key`): the latest report of
  each recipient about each indicator (`matchers/verdicts.py`).
- `watched` (changelog `match.watch`, key alert id): owner alerts kept for escalation and
  rerouting, with the indicator (`matchers/escalation.py`).
- `counts` (changelog `match.trust`, key `feed|partition`): feedback per feed on this
  partition's indicators; every worker reads all partitions of it to learn each feed's trust.

Inputs: `route` for each enriched record (screening, the verdict gates, dedup on the
sighting's own time, watching new owner alerts), `on_feedback` for each accepted report (from
`match.feedback`, keyed by indicator key, so it arrives on the partition that holds the
indicator's state), and `tick` for escalations. Each returns the records to produce; the
dedup states of the partition (`match.state`) are updated in place and their changelog
records are among them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from threatroute import topics
from threatroute.matchers.dedup import Action, AlertState, DedupPolicy, decide, new_alert_id
from threatroute.matchers.escalation import (
    CLOSED,
    LEVELS,
    Watched,
    escalate,
    escalation_alert,
    finished,
    open_for,
)
from threatroute.matchers.formats import alert_record
from threatroute.matchers.hygiene import sighting_time
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.reroute import correction, reroute
from threatroute.matchers.rules import RoutingRules
from threatroute.matchers.screen import screen
from threatroute.matchers.suppression import SuppressionList
from threatroute.matchers.trust import FeedCounts, FeedTrust
from threatroute.matchers.verdicts import Gate, Judgement, Verdict, judge, merge, obsolete

VERDICTS, WATCH, TRUST = topics.MATCH_VERDICTS, topics.MATCH_WATCH, topics.MATCH_TRUST
# an owner alert that can never escalate is watched only this long, for a reroute at once after
# a not_ours; later, a not_ours still routes the next sighting to the next owner
REROUTE_WATCH = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Emit:
    """One record to produce. `alert`: render for the recipient's format (its topic)."""

    topic: str
    key: str
    value: Mapping[str, Any] | None
    partition: int | None = None
    alert: bool = False


def pair(recipient: str, key: str) -> str:
    return f"{recipient}|{key}"


@dataclass
class Routed:
    """What routing one record produced: records to produce, and what happened (`counts`:
    dedup actions, screening reasons, withheld reasons), for the stage's figures."""

    emits: list[Emit] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


class FeedbackRouting:
    """The per-partition tables of the feedback rules, and the decisions over them."""

    def __init__(self, rules: RoutingRules, suppressions: SuppressionList | None = None) -> None:
        self.rules = rules
        self.suppressions = suppressions if suppressions is not None else SuppressionList()
        self.verdicts: dict[int, dict[str, Verdict]] = {}
        self.watched: dict[int, dict[str, Watched]] = {}
        self.counts: dict[int, dict[str, FeedCounts]] = {}
        self._not_owners: dict[int, dict[str, frozenset[str]]] = {}
        self.trust = FeedTrust(policy=rules.trust)
        self.events: Counter[str] = Counter()  # rerouted, escalated, corrections, muted, ...

    # -- tables ---------------------------------------------------------------------------
    def restore(self, partition: int, verdicts: Mapping[str, Any], watched: Mapping[str, Any],
                counts: Mapping[str, Any]) -> None:
        """Load one partition's tables from their changelogs' JSON values (counts by feed)."""
        self.verdicts[partition] = {k: Verdict.from_json(v) for k, v in verdicts.items()}
        self.watched[partition] = {k: Watched.from_json(v) for k, v in watched.items()}
        self.counts[partition] = {k: FeedCounts.from_json(v) for k, v in counts.items()}
        index: dict[str, set[str]] = {}
        for v in self.verdicts[partition].values():
            if v.status == "not_ours":
                index.setdefault(v.indicator_key, set()).add(v.recipient)
        self._not_owners[partition] = {k: frozenset(ids) for k, ids in index.items()}

    def drop(self, partition: int) -> None:
        for table in (self.verdicts, self.watched, self.counts, self._not_owners):
            table.pop(partition, None)

    def learn(self, all_counts: Mapping[str, Any]) -> None:
        """Rebuild feed trust from every partition's counts (`match.trust` read whole: keys
        `feed`, values carrying the counts; see `trust_value`)."""
        self.trust = FeedTrust.from_rows(all_counts.values(), self.rules.trust)

    # -- routing a sighting ------------------------------------------------------------------
    def not_owners(self, partition: int, key: str) -> frozenset[str]:
        return self._not_owners.get(partition, {}).get(key, frozenset())

    def judge(self, partition: int, recipient: str, key: str, state: AlertState | None,
              sighting: datetime) -> Judgement:
        verdict = self.verdicts.get(partition, {}).get(pair(recipient, key))
        return judge(verdict, state.alert_id if state else None, sighting, self.rules.feedback)

    def watch(self, partition: int, state: AlertState, record: Mapping[str, Any],
              now: datetime) -> list[Emit]:
        """Start watching a new owner alert (for escalation and a possible reroute)."""
        ctype = str((record.get("classification") or {}).get("type", ""))
        item = Watched(state.alert_id, state.recipient, state.indicator_key, ctype,
                       now.replace(microsecond=0).isoformat(),
                       record if isinstance(record, dict) else dict(record))
        self.watched.setdefault(partition, {})[item.alert_id] = item
        return [Emit(WATCH, item.alert_id, item.to_json(), partition)]

    def route(self, partition: int, record: Mapping[str, Any], key: str, index: MatchIndex,
              states: MutableMapping[str, AlertState],
              remediated_at: Callable[[str], str | None], now: datetime,
              policy: DedupPolicy) -> Routed:
        """Route one enriched record (keyed `key`) at `now`.

        Screening first (suppression, hygiene, feed trust: `matchers/screen.py`); then the
        index, routing around recipients that said not ours; then per recipient its verdict
        (muted, quiet, fresh) and dedup on the sighting's own time. `states` (this partition's
        dedup states by `pair`) is updated in place. Raises what the index raises on a record
        it cannot route (the stage refuses that record).
        """
        out = Routed()
        now = now.replace(microsecond=0)
        screened = screen(record, now, self.suppressions, self.rules.hygiene, self.trust)
        if screened.dropped is not None:
            out.counts[screened.dropped] += 1  # suppressed, offline, expired
            return out
        record = dict(screened.record)
        not_owners = self.not_owners(partition, key)
        if not_owners:  # routed around them: withheld (departed recipients aside)
            out.counts["not_ours"] += sum(rid in index.policies for rid in not_owners)
        matches = index.match(record, not_owners)
        # dedup and recurrence go by when the indicator was seen, not when we got to it
        sighting = sighting_time(record, now)
        sent_at = now.isoformat()
        for match in matches:
            rid = match.recipient_id
            name = pair(rid, key)
            previous = states.get(name)
            judgement = self.judge(partition, rid, key, previous, sighting)
            if judgement.gate.blocks:
                out.counts[judgement.gate.value] += 1  # muted, not_ours
                continue
            if judgement.gate is Gate.FRESH:
                previous = None
            remediated = judgement.remediated_at or (
                remediated_at(previous.alert_id) if previous else None)
            action, state = decide(previous, rid, key, sighting, policy, remediated)
            quieted = judgement.action(action)
            if quieted is not action:  # remediated or wont_fix: no re-notification
                out.counts["quiet"] += 1
                action = quieted
                if previous is not None:
                    state = replace(state, last_notified=previous.last_notified)
            states[name] = state
            alert = alert_record(state, action, record, match.reasons, sent_at)
            out.emits += [Emit(topics.MATCH_STATE, name, state.to_json(), partition),
                          Emit(topics.LEDGER, state.alert_id, alert)]
            if action.notifies:
                out.emits.append(Emit(topics.alerts_topic(rid), key, alert, alert=True))
            if action in (Action.NEW, Action.RECURRENCE) and match.reasons[0].startswith(
                    "owner"):
                out.emits += self.watch(partition, state, record, now)
            out.counts[action.value] += 1
        return out

    # -- feedback ------------------------------------------------------------------------------
    def on_feedback(self, partition: int, report: Mapping[str, Any], index: MatchIndex,
                    states: dict[str, AlertState], formats: Callable[[str], str],
                    now: datetime) -> list[Emit]:
        """Apply one accepted report (`match.feedback` value) and return what to produce.

        The report carries alert_id, recipient, indicator_key, status, at, note, feed and
        `first` (whether it is the alert's first report, for the feed's answered count).
        """
        recipient, key = str(report["recipient"]), str(report["indicator_key"])
        status, alert_id = str(report["status"]), str(report["alert_id"])
        out: list[Emit] = []
        incoming = Verdict(recipient, key, alert_id, status, str(report["at"]), report.get("note"))
        verdicts = self.verdicts.setdefault(partition, {})
        kept = merge(verdicts.get(pair(recipient, key)), incoming)
        if kept != verdicts.get(pair(recipient, key)):
            verdicts[pair(recipient, key)] = kept
            out.append(Emit(VERDICTS, pair(recipient, key), kept.to_json(), partition))
        feed = report.get("feed")
        if isinstance(feed, str) and feed:
            counts = self.counts.setdefault(partition, {})
            counts[feed] = counts.get(feed, FeedCounts()).counted(status, bool(report.get("first")))
            out.append(Emit(TRUST, f"{feed}|{partition}",
                            trust_value(feed, partition, counts[feed]), partition))
        watched = self.watched.get(partition, {})
        item = watched.get(alert_id)
        if status == "not_ours":
            not_owners = self._not_owners.setdefault(partition, {})
            not_owners[key] = not_owners.get(key, frozenset()) | {recipient}
            if item is not None:
                out += self._reroute(partition, item, kept, index, states, formats, now)
        if item is not None:
            item = item.reported(status)
            if status in CLOSED or finished(item, self.rules.escalation):
                del watched[alert_id]
                out.append(Emit(WATCH, alert_id, None, partition))
            else:
                watched[alert_id] = item
                out.append(Emit(WATCH, alert_id, item.to_json(), partition))
        return out

    def _reroute(self, partition: int, item: Watched, verdict: Verdict, index: MatchIndex,
                 states: dict[str, AlertState], formats: Callable[[str], str],
                 now: datetime) -> list[Emit]:
        key = item.indicator_key
        excluded = self.not_owners(partition, key)
        decision = reroute(item.indicator, index.ownership, item.recipient, excluded,
                           verdict.note)
        owner_rule = str(((item.indicator.get("extra") or {}).get("owner") or {}).get(
            "rule", "owner"))
        stamp = now.replace(microsecond=0).isoformat()
        out: list[Emit] = []
        found = correction(item.indicator, item.recipient, owner_rule, key, verdict.at,
                           decision, verdict.note)
        if found is not None:
            out.append(Emit(topics.CORRECTIONS, found.id, found.to_json()))
            self.events["corrections"] += 1
        target = decision.owner
        if target is None or target.id not in index.policies \
                or index.blocked(target.id, item.indicator, target.id) is not None:
            self.events["reroute_nowhere"] += 1
            return out
        if states.get(pair(target.id, key)) is not None:
            return out  # it already has an alert for this indicator
        record = dict(item.indicator)
        extra = dict(record.get("extra") or {})
        extra["owner"] = {**target.to_json(), "rerouted_from": item.recipient}
        record["extra"] = extra
        state = AlertState(new_alert_id(), target.id, key, item.sent_at, stamp, stamp, 1)
        states[pair(target.id, key)] = state
        alert = alert_record(state, Action.NEW, record, (decision.reason,), stamp)
        alert["notification"] = "reroute"
        self.events["rerouted"] += 1
        out += [Emit(topics.MATCH_STATE, pair(target.id, key), state.to_json(), partition),
                Emit(topics.LEDGER, state.alert_id, alert),
                Emit(topics.alerts_topic(target.id), key, alert, alert=True)]
        out += self.watch(partition, state, record, now)
        return out

    # -- time ---------------------------------------------------------------------------------
    def tick(self, now: datetime, index: MatchIndex,
             states: Mapping[int, Mapping[str, AlertState]] | None = None) -> list[Emit]:
        """Escalations due at `now` on every owned partition, and housekeeping."""
        out: list[Emit] = []
        policy = self.rules.escalation
        for partition, watched in self.watched.items():
            for alert_id, item in list(watched.items()):
                if open_for(item, now) > self.rules.state.watch:  # never closed: forgotten
                    del watched[alert_id]
                    out.append(Emit(WATCH, alert_id, None, partition))
                    continue
                if policy.deadline(item.classification) is None:
                    if open_for(item, now) > REROUTE_WATCH:
                        del watched[alert_id]
                        out.append(Emit(WATCH, alert_id, None, partition))
                    continue
                if item.recipient not in index.policies:
                    # its owner left the registry (or the registry is not read yet): nobody
                    # is waited for; kept, in case it comes back, until closed or aged out
                    continue
                step = escalate(item, now, policy, index.subscribers,
                                _tlp_allows(index, item))
                if step is None:
                    continue
                for rid in step.recipients:
                    alert = escalation_alert(item, step.level, rid, new_alert_id(), now, policy)
                    out += [Emit(topics.LEDGER, alert["alert_id"], alert),
                            Emit(topics.alerts_topic(rid), item.indicator_key, alert, alert=True)]
                    self.events["escalated"] += 1
                    self.events[f"escalated_{LEVELS[step.level - 1]}"] += 1
                if finished(step.watched, policy):
                    del watched[alert_id]
                    out.append(Emit(WATCH, alert_id, None, partition))
                else:
                    watched[alert_id] = step.watched
                    out.append(Emit(WATCH, alert_id, step.watched.to_json(), partition))
        if states is not None:
            out += self._forget(now, states)
        return out

    def _forget(self, now: datetime, states: Mapping[int, Mapping[str, AlertState]]
                ) -> list[Emit]:
        """Tombstone verdicts that can no longer change a decision (or, a not_ours, are
        older than it is kept)."""
        out: list[Emit] = []
        for partition, verdicts in self.verdicts.items():
            held = states.get(partition, {})
            for name, v in list(verdicts.items()):
                current = held.get(name)
                if obsolete(v, current.alert_id if current else None, now, self.rules.feedback):
                    del verdicts[name]
                    out.append(Emit(VERDICTS, name, None, partition))
                    if v.status == "not_ours":
                        self._forget_not_owner(partition, v.indicator_key, v.recipient)
        return out

    def _forget_not_owner(self, partition: int, key: str, recipient: str) -> None:
        not_owners = self._not_owners.get(partition, {})
        left = not_owners.get(key, frozenset()) - {recipient}
        if left:
            not_owners[key] = left
        else:
            not_owners.pop(key, None)

    def sizes(self) -> dict[str, int]:
        """Rows held per table, over every owned partition (the stage's table-rows gauge)."""
        return {VERDICTS: sum(map(len, self.verdicts.values())),
                WATCH: sum(map(len, self.watched.values())),
                TRUST: sum(map(len, self.counts.values()))}


def _tlp_allows(index: MatchIndex, item: Watched) -> Callable[[str], bool]:
    """Escalations go by subscription and TLP, not by the recipient's routine filters."""
    def allowed(rid: str) -> bool:
        return index.blocked(rid, item.indicator, item.recipient, tlp_only=True) is None
    return allowed


def trust_value(feed: str, partition: int, counts: FeedCounts) -> dict[str, Any]:
    """The `match.trust` value: one partition's counts for one feed."""
    return {"feed": feed, "partition": partition, **counts.to_json()}


__all__ = ["TRUST", "VERDICTS", "WATCH", "Emit", "FeedbackRouting", "Routed", "pair",
           "trust_value"]
