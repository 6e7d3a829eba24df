"""What recipients did about their alerts: feedback validation and the outcome figures.

Pure: no Kafka, no Prometheus. The feedback stage keeps one `AlertFacts` per ledger record
(`alert_facts`), folds each `feedback` record into the alert's `AlertStatus` with
`apply_feedback` (writing the result to the compacted `alerts.status` topic), and at every
scrape turns both tables into the figures of docs/metrics.md ("Outcomes") with `summarise`.

Feedback status transitions (anything else is rejected as `InvalidRecord`):

    (no status yet)  -> any status
    acknowledged     -> in_progress | remediated | false_positive | not_ours | wont_fix
    in_progress      -> remediated | false_positive | not_ours | wont_fix
    wont_fix         -> in_progress | remediated
    remediated, false_positive, not_ours: final. An indicator seen again after remediation
        is a recurrence, which the match stage sends as a NEW alert id.

The same status twice is rejected as a duplicate ("already <status>"). Times in a status are
the feedback's own `time`, clamped so that they are never earlier than the alert's `sent_at`
(a recipient's clock may be behind) nor earlier than the status's previous `updated_at` (so
time-to-remediate is never shorter than time-to-acknowledge).

Times are compared as strings: every stored time is canonical UTC ISO 8601
(`2026-01-02T03:04:05+00:00`, optionally with six fraction digits), which sorts
chronologically; only durations are parsed.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from threatroute import fields
from threatroute.errors import InvalidRecord

STATUSES = ("acknowledged", "in_progress", "remediated", "false_positive", "not_ours", "wont_fix")
# the indicator no longer counts as active for that recipient
CLOSED = frozenset({"remediated", "false_positive", "not_ours"})
TRANSITIONS: Mapping[str | None, frozenset[str]] = {
    None: frozenset(STATUSES),
    "acknowledged": frozenset({"in_progress", "remediated", "false_positive", "not_ours",
                               "wont_fix"}),
    "in_progress": frozenset({"remediated", "false_positive", "not_ours", "wont_fix"}),
    "wont_fix": frozenset({"in_progress", "remediated"}),
    "remediated": frozenset(),
    "false_positive": frozenset(),
    "not_ours": frozenset(),
}
SUBSCRIPTION = "subscription"  # the `rule` of an alert sent to a recipient that is not the owner
UNKNOWN_FEED = "unknown"
MAX_NOTE = fields.MAX_STRING
MAX_CLOCK_AHEAD = timedelta(minutes=5)  # feedback time this far past `now` is refused

# the feedback schema's patterns (deploy/schemas/feedback.schema.json)
_ALERT_ID = re.compile(r"[A-Za-z0-9_-]{22,256}")
_RECIPIENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?\+00:00")


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """The compact part of a ledger record the feedback stage keeps per alert."""

    alert_id: str
    recipient: str
    indicator_key: str
    classification: str
    feed: str | None
    rule: str  # extra.owner.rule when the recipient owns the indicator, else "subscription"
    sent_at: str  # first_seen of the alert
    last_seen: str


def alert_facts(alert: Mapping[str, Any]) -> AlertFacts:
    """The facts of one `alerts.ledger` value (threatroute.matchers.formats.alert_record).

    Raises `InvalidRecord` when the record lacks what the figures need. Repeated strings
    (recipient, classification, feed, rule) are interned: the stage holds up to ~1M of these.
    """
    if not isinstance(alert, Mapping):
        raise InvalidRecord("alert is not a JSON object")
    alert_id = _required_str(alert, "alert_id")
    recipient = _required_str(alert, "recipient")
    indicator_key = _required_str(alert, "indicator_key")
    indicator = alert.get("indicator")
    if not isinstance(indicator, Mapping):
        raise InvalidRecord("missing or not an object", "indicator")
    classification = _get(indicator, "classification", "type")
    if not isinstance(classification, str) or not classification:
        raise InvalidRecord("missing or not a string", "classification.type")
    feed = _get(indicator, "feed", "name")
    feed = sys.intern(feed) if isinstance(feed, str) and feed else None
    owner = _get(indicator, "extra", "owner")
    rule = SUBSCRIPTION
    if isinstance(owner, Mapping) and owner.get("id") == recipient:
        owner_rule = owner.get("rule")
        rule = owner_rule if isinstance(owner_rule, str) and owner_rule else "owner"
    sent_at = _canonical_time(alert.get("first_seen"), "first_seen")
    last_seen = max(_canonical_time(alert.get("last_seen"), "last_seen"), sent_at)
    return AlertFacts(alert_id, sys.intern(recipient), indicator_key,
                      sys.intern(classification), feed, sys.intern(rule), sent_at, last_seen)


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """Value of the compacted `alerts.status` topic (key: alert_id)."""

    alert_id: str
    recipient: str
    indicator_key: str
    status: str
    updated_at: str  # time of the latest accepted feedback
    acknowledged_at: str | None = None  # time of the FIRST feedback of any status
    remediated_at: str | None = None
    note: str | None = None  # the latest feedback's note

    def to_json(self) -> dict[str, Any]:
        """The topic value. `time` repeats `updated_at` for the match stage's remediation_fold,
        which reads `time` of remediated statuses to detect recurrences."""
        return {"alert_id": self.alert_id, "recipient": self.recipient,
                "indicator_key": self.indicator_key, "status": self.status,
                "updated_at": self.updated_at, "acknowledged_at": self.acknowledged_at,
                "remediated_at": self.remediated_at, "note": self.note,
                "time": self.updated_at}

    @classmethod
    def from_json(cls, value: Any) -> AlertStatus:
        """Inverse of `to_json`; ignores unknown fields, raises `InvalidRecord` if unusable."""
        if not isinstance(value, Mapping):
            raise InvalidRecord("status is not a JSON object")
        status = _required_str(value, "status")
        if status not in STATUSES:
            raise InvalidRecord(f"unknown status {status[:32]!r}", "status")
        optional = {}
        for name in ("acknowledged_at", "remediated_at", "note"):
            item = value.get(name)
            if item is not None and not isinstance(item, str):
                raise InvalidRecord("not a string", name)
            optional[name] = item
        return cls(_required_str(value, "alert_id"), _required_str(value, "recipient"),
                   _required_str(value, "indicator_key"), status,
                   _required_str(value, "updated_at"), **optional)


def apply_feedback(feedback: Any, facts: AlertFacts | None, current: AlertStatus | None,
                   now: datetime) -> AlertStatus:
    """Validate one decoded `feedback` record and return the alert's new status.

    `facts` is the ledger's record of `feedback["alert_id"]` (None when there is none) and
    `current` its status so far. Raises `InvalidRecord(reason, field)` for anything that must
    be dead-lettered and not counted: bad shape, unknown status, a time that cannot be parsed
    or lies more than 5 minutes ahead of `now`, an over-long note, an unknown alert, an alert
    sent to another recipient, or a transition the table in the module docstring forbids.
    """
    if not isinstance(feedback, Mapping):
        raise InvalidRecord("feedback is not a JSON object")
    alert_id = _required_str(feedback, "alert_id")
    if not _ALERT_ID.fullmatch(alert_id):
        raise InvalidRecord("not a valid alert id", "alert_id")
    recipient = _required_str(feedback, "recipient")
    if not _RECIPIENT.fullmatch(recipient):
        raise InvalidRecord("not a valid recipient id", "recipient")
    status = _required_str(feedback, "status")
    if status not in STATUSES:
        raise InvalidRecord(f"unknown status {status[:32]!r}; one of {', '.join(STATUSES)}",
                            "status")
    raw_time = _required_str(feedback, "time")
    try:
        time = fields.timestamp(raw_time)
    except InvalidRecord as exc:
        raise InvalidRecord(exc.reason, "time") from None
    if time > _iso(now + MAX_CLOCK_AHEAD):
        raise InvalidRecord(f"time {time} is in the future", "time")
    note = feedback.get("note")
    if note is not None:
        if not isinstance(note, str):
            raise InvalidRecord(f"expected a string, got {type(note).__name__}", "note")
        if len(note) > MAX_NOTE:
            raise InvalidRecord(f"note too long ({len(note)} characters, limit {MAX_NOTE})",
                                "note")
        note = note.strip() or None
    if facts is None or facts.alert_id != alert_id:
        raise InvalidRecord("unknown alert id", "alert_id")
    if facts.recipient != recipient:
        # never say whom it was sent to: the id is a capability, the recipient is not
        raise InvalidRecord(f"alert was not sent to recipient {recipient!r}", "recipient")
    previous = current.status if current is not None else None
    if status == previous:
        raise InvalidRecord(f"already {status}", "status")
    if status not in TRANSITIONS.get(previous, frozenset()):
        raise InvalidRecord(f"cannot go from {previous} to {status}", "status")
    # clamp: a recipient's clock may be behind ours, and a status never moves back in time
    floor = facts.sent_at if current is None else max(facts.sent_at, current.updated_at)
    at = max(time, floor)
    return AlertStatus(
        alert_id=alert_id, recipient=recipient, indicator_key=facts.indicator_key,
        status=status, updated_at=at,
        acknowledged_at=(current.acknowledged_at if current is not None else None) or at,
        remediated_at=at if status == "remediated" else
        (current.remediated_at if current is not None else None),
        note=note)



def match_report(status: AlertStatus, facts: AlertFacts | None, first: bool) -> dict[str, Any]:
    """An accepted status as the match stage acts on it (`match.feedback`, keyed by indicator
    key, so it reaches the partition holding the indicator's routing state). `first`: the
    alert's first report (it counts once as answered in the feed's trust)."""
    return {"alert_id": status.alert_id, "recipient": status.recipient,
            "indicator_key": status.indicator_key, "status": status.status,
            "at": status.updated_at, "note": status.note,
            "feed": facts.feed if facts is not None else None, "first": first}


def judge_report(sender: str, feedback: Any, facts: AlertFacts | None,
                 current: AlertStatus | None, now: datetime) -> AlertStatus:
    """Judge a report that arrived on `feedback.<sender>`: who sent it is the topic's
    recipient, never what the record says (the broker lets only `sender` write there).

    A report naming another recipient is refused; otherwise the sender becomes the report's
    recipient and `apply_feedback` refuses an alert id that was not sent to it (so an alert id
    read elsewhere is no capability), an unknown id, and everything else it checks.
    """
    if isinstance(feedback, Mapping):
        named = feedback.get("recipient")
        if named is not None and named != sender:
            raise InvalidRecord(f"report names recipient {str(named)[:64]!r} but arrived on "
                                f"the feedback topic of {sender!r}", "recipient")
        feedback = {**feedback, "recipient": sender}
    return apply_feedback(feedback, facts, current, now)


def judge_feedback(feedback: Any, key: str | None, ledger: Mapping[str, AlertFacts],
                   statuses: Mapping[str, AlertStatus], now: datetime,
                   sender: str | None = None) -> AlertStatus:
    """Judge one decoded feedback report against the ledger and the status table.

    `key`: the message key (when present it must be the report's alert id); `ledger` and
    `statuses`: the alert facts and current statuses of the partition that holds the alert,
    by alert id; `sender`: the recipient whose topic `feedback.<sender>` it arrived on
    (`judge_report`), None for the shared `feedback` topic. Returns the alert's new status
    (for `alerts.status`); raises `InvalidRecord` for a report to refuse.
    """
    alert_id = feedback.get("alert_id") if isinstance(feedback, Mapping) else None
    if key and isinstance(alert_id, str) and alert_id != key:
        raise InvalidRecord("message key is not the record's alert_id", "alert_id")
    facts = ledger.get(alert_id) if isinstance(alert_id, str) else None
    current = statuses.get(alert_id) if isinstance(alert_id, str) else None
    if sender is not None:
        return judge_report(sender, feedback, facts, current, now)
    return apply_feedback(feedback, facts, current, now)


HOURS = 3600.0
DURATION_BUCKETS = (300.0, 900.0, 3600.0, 4 * HOURS, 12 * HOURS, 24 * HOURS, 48 * HOURS,
                    7 * 24 * HOURS, 30 * 24 * HOURS)


@dataclass(frozen=True)
class Histogram:
    """Prometheus-style: `counts[i]` observations <= `buckets[i]` (cumulative); +Inf = count."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float


@dataclass(frozen=True)
class BaselineWindow:
    """Windows for the active-indicator figures: both `active_days` long; the baseline starts at
    `baseline_start`, or at each recipient's earliest alert when None."""

    active_days: float = 7.0
    baseline_start: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """The outcome figures at one moment (docs/metrics.md, "Outcomes").

    Which keys appear: `sent`, `open` (0 included) and every per-recipient gauge cover every
    (recipient, classification) / recipient with an alert; `feed_alerts` and
    `feed_false_positive_ratio` cover every feed (0.0 until a feed's alerts get feedback), so
    a ratio series does not appear and vanish; `by_status`, `not_ours` and the histograms
    only what has at least one alert, to keep series cardinality down; `reduction_ratio`
    only recipients with a non-zero baseline.
    """

    sent: dict[tuple[str, str], int]
    open: dict[tuple[str, str], int]
    by_status: dict[tuple[str, str, str], int]
    time_to_acknowledge: dict[str, Histogram]
    time_to_remediate: dict[str, Histogram]
    remediation_ratio: dict[str, float]
    feed_alerts: dict[str, int]
    feed_false_positive_ratio: dict[str, float]
    feed_answered: dict[str, int]  # alerts of the feed with any feedback
    feed_false_positives: dict[str, int]
    not_ours: dict[tuple[str, str], int]
    active_now: dict[str, int]
    active_baseline: dict[str, int]
    reduction_ratio: dict[str, float]


def summarise(alerts: Iterable[AlertFacts], statuses: Mapping[str, AlertStatus], now: datetime,
              window: BaselineWindow = BaselineWindow()) -> Snapshot:
    """All outcome figures over the ledger's `alerts` and their `statuses` (by alert id).

    Active indicators (the NCA's "12% drop in malicious domains"): a distinct indicator_key is
    active for a recipient in a window [a, b] if some alert for it has sent_at <= b and
    last_seen >= a, and that alert was not closed (status in CLOSED, closing at remediated_at
    for remediated, updated_at otherwise) before a. `active_now` uses [now - active_days, now];
    `active_baseline` uses [start, start + active_days]; `reduction_ratio` = 1 - now/baseline
    (negative when things got worse).

    Limits: the ledger keeps only first and last seen per alert, so an alert counts as seen
    throughout [first_seen, last_seen]. That is exact when active_days >= the match stage's
    dedup window (both 7 days by default): a longer gap between sightings starts a new alert,
    so every window of that length meeting the span holds a real sighting. With shorter
    windows it overcounts past windows. "Active in a window" means at any time in it, so an
    indicator remediated yesterday still counts in `active_now`; both windows use the same
    rule, so the ratio compares like with like. With a per-recipient start, closing times
    are taken to be >= sent_at (as `apply_feedback` guarantees), so nothing in the baseline
    was closed before it began.

    One pass, linear in the number of alerts; times are compared as strings and parsed only
    for durations (and once per change of a recipient's earliest alert).
    """
    span = timedelta(days=window.active_days)
    now_to, now_from = _iso(now), _iso(now - span)
    fixed_base = window.baseline_start is not None
    base_from = base_to = ""
    if window.baseline_start is not None:
        base_from, base_to = _iso(window.baseline_start), _iso(window.baseline_start + span)

    sent: defaultdict[tuple[str, str], int] = defaultdict(int)
    open_: defaultdict[tuple[str, str], int] = defaultdict(int)
    by_status: defaultdict[tuple[str, str, str], int] = defaultdict(int)
    feed_alerts: defaultdict[str | None, int] = defaultdict(int)
    feed_feedback: defaultdict[str | None, int] = defaultdict(int)
    feed_fp: defaultdict[str | None, int] = defaultdict(int)
    not_ours: defaultdict[tuple[str, str], int] = defaultdict(int)
    remediated_by: defaultdict[str, int] = defaultdict(int)
    # durations in seconds per recipient: appended here, sorted and bucketed once at the end
    ack: defaultdict[str, list[float]] = defaultdict(list)
    rem: defaultdict[str, list[float]] = defaultdict(list)
    parse = datetime.fromisoformat
    first: dict[str, list[str]] = {}  # recipient -> [earliest sent_at, that + active_days]
    base_candidates: list[tuple[str, str, str]] = []  # (recipient, sent_at, indicator_key)
    active_now: defaultdict[str, set[str]] = defaultdict(set)
    active_base: defaultdict[str, set[str]] = defaultdict(set)
    status_of = statuses.get

    for facts in alerts:
        recipient, sent_at = facts.recipient, facts.sent_at
        pair = (recipient, facts.classification)
        sent[pair] += 1
        feed_alerts[facts.feed] += 1
        state = status_of(facts.alert_id)
        closed_at = None
        if state is None:
            open_[pair] += 1
        else:
            status = state.status
            by_status[(recipient, facts.classification, status)] += 1
            feed_feedback[facts.feed] += 1
            acknowledged_at = state.acknowledged_at
            if acknowledged_at is not None:
                ack[recipient].append((parse(acknowledged_at) - parse(sent_at)).total_seconds())
            if status in CLOSED:
                closed_at = state.updated_at
                if status == "remediated":
                    remediated_by[recipient] += 1
                    if state.remediated_at is not None:
                        closed_at = state.remediated_at
                        rem[recipient].append((parse(closed_at) - parse(sent_at)).total_seconds())
                elif status == "false_positive":
                    feed_fp[facts.feed] += 1
                else:
                    not_ours[(recipient, facts.rule)] += 1
        if (facts.last_seen >= now_from and sent_at <= now_to
                and (closed_at is None or closed_at >= now_from)):
            active_now[recipient].add(facts.indicator_key)
        if fixed_base:
            if (facts.last_seen >= base_from and sent_at <= base_to
                    and (closed_at is None or closed_at >= base_from)):
                active_base[recipient].add(facts.indicator_key)
            continue
        # per-recipient baseline: its end only moves earlier, so an alert past the current end
        # is out for good; the candidates are checked against the final end after the loop
        bounds = first.get(recipient)
        if bounds is None:
            bounds = first[recipient] = [sent_at, _plus(sent_at, span)]
        elif sent_at < bounds[0]:
            bounds[0], bounds[1] = sent_at, _plus(sent_at, span)
        if sent_at <= bounds[1]:
            base_candidates.append((recipient, sent_at, facts.indicator_key))
    for recipient, sent_at, key in base_candidates:
        if sent_at <= first[recipient][1]:
            active_base[recipient].add(key)

    sent_by: defaultdict[str, int] = defaultdict(int)
    for (recipient, _), n in sent.items():
        sent_by[recipient] += n
    # alerts without feed.name are labelled "unknown" (merged with a feed of that name, if any)
    per_feed: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # alerts, fb, fp
    for feed, n in feed_alerts.items():
        counts = per_feed[feed or UNKNOWN_FEED]
        counts[0] += n
        counts[1] += feed_feedback.get(feed, 0)
        counts[2] += feed_fp.get(feed, 0)
    recipients = sorted(sent_by)
    now_counts = {r: len(active_now.get(r, ())) for r in recipients}
    base_counts = {r: len(active_base.get(r, ())) for r in recipients}
    return Snapshot(
        sent=dict(sent),
        open={pair: open_.get(pair, 0) for pair in sent},
        by_status=dict(by_status),
        time_to_acknowledge={r: _histogram(values) for r, values in ack.items()},
        time_to_remediate={r: _histogram(values) for r, values in rem.items()},
        remediation_ratio={r: remediated_by.get(r, 0) / sent_by[r] for r in recipients},
        feed_alerts={feed: alerts_n for feed, (alerts_n, _, _) in per_feed.items()},
        feed_false_positive_ratio={feed: fp / feedback if feedback else 0.0
                                   for feed, (_, feedback, fp) in per_feed.items()},
        feed_answered={feed: feedback for feed, (_, feedback, _) in per_feed.items()},
        feed_false_positives={feed: fp for feed, (_, _, fp) in per_feed.items()},
        not_ours=dict(not_ours),
        active_now=now_counts,
        active_baseline=base_counts,
        reduction_ratio={r: 1.0 - now_counts[r] / base for r, base in base_counts.items()
                         if base > 0},
    )


def _histogram(seconds: list[float]) -> Histogram:
    """Prometheus buckets of one recipient's durations (a value equal to a bound is in it)."""
    seconds.sort()
    # negative durations only come from statuses not made by apply_feedback: count them as 0
    total = sum(seconds[bisect_left(seconds, 0.0):])
    counts = tuple(bisect_right(seconds, bound) for bound in DURATION_BUCKETS)
    return Histogram(DURATION_BUCKETS, counts, len(seconds), total)


def _plus(stamp: str, span: timedelta) -> str:
    return (datetime.fromisoformat(stamp) + span).isoformat()


def _iso(moment: datetime) -> str:
    """Canonical UTC text of an aware (or naive, taken as UTC) datetime, comparable as a string."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _get(record: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(name)
    return record


def _required_str(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        raise InvalidRecord("missing", name)
    if not isinstance(value, str) or not value:
        raise InvalidRecord(f"expected a non-empty string, got {type(value).__name__}", name)
    return value


def _canonical_time(value: Any, name: str) -> str:
    if isinstance(value, str) and _CANONICAL_TIME.fullmatch(value):
        return value  # the match stage's own form: no parsing on the hot path
    if value is None:
        raise InvalidRecord("missing", name)
    try:
        return fields.timestamp(value)
    except InvalidRecord as exc:
        raise InvalidRecord(exc.reason, name) from None


__all__ = [
    "CLOSED",
    "DURATION_BUCKETS",
    "HOURS",
    "STATUSES",
    "TRANSITIONS",
    "AlertFacts",
    "AlertStatus",
    "BaselineWindow",
    "Histogram",
    "Snapshot",
    "alert_facts",
    "apply_feedback",
    "judge_feedback",
    "summarise",
]
