"""How long the stateful stages remember, and which rows are past it: pure, no Kafka.

Every table a stage holds in memory is also a compacted changelog; a row past its window is
tombstoned through that changelog (inside the stage's transaction), so compaction removes it
from the topic and a restarted worker no longer restores it. The windows (`[state]` in the
configuration, with `[match] dedup_window_hours` and `[feedback] false_positive_mute_hours`):

- dedup states (`match.state`): unseen for the dedup window (matchers/dedup.py `expired`);
- remediation times the match stage reads from `alerts.status`: a remediated alert's state
  has not been seen since before its remediation, so after one dedup window that state is
  expired and nothing can ask about it (`stale_remediations`);
- ledger and status rows (`alerts.ledger`, `alerts.status`, the feedback stage's share): no
  sighting and no report for `alerts` (`expired_alerts`); feedback on such an alert is refused
  as unknown, as the topics' own retention would do anyway;
- verdicts (`match.verdicts`): with their alert, a false positive after its mute, a not_ours
  `alerts` after it was reported (matchers/verdicts.py `obsolete`);
- watched owner alerts (`match.watch`): open longer than `watch` (matchers/acting.py).

Times are canonical UTC ISO 8601 strings, compared as strings (threatroute/outcomes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from threatroute.outcomes import AlertFacts, AlertStatus


@dataclass(frozen=True)
class StateWindows:
    """`[state]`: how often the stages look for expired rows, and how long rows are kept."""

    every: timedelta = timedelta(minutes=10)  # a table may hold expired rows this much longer
    alerts: timedelta = timedelta(days=180)  # ledger, status, not_ours: the topics' retention
    watch: timedelta = timedelta(days=30)  # owner alerts watched for escalation


def _iso(moment: datetime) -> str:
    """`moment` in the canonical form stored times use (second precision sorts correctly
    against stored times with or without a fraction)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def last_event(facts: AlertFacts | None, status: AlertStatus | None) -> str:
    """When anything last happened to an alert: last sighting or latest report."""
    times = [t for t in (facts.last_seen if facts else None,
                         status.updated_at if status else None) if t]
    return max(times) if times else ""


def expired_alerts(ledger: Mapping[str, AlertFacts], statuses: Mapping[str, AlertStatus],
                   now: datetime, window: timedelta) -> list[str]:
    """Alert ids (of one partition's ledger and status rows) with no sighting and no report
    for longer than `window` before `now`: both rows go together, so a report that comes
    after is refused as unknown rather than judged against half the facts."""
    cutoff = _iso(now - window)
    return [alert_id for alert_id in {*ledger, *statuses}
            if last_event(ledger.get(alert_id), statuses.get(alert_id)) < cutoff]


def stale_remediations(remediated: Mapping[str, str | None], now: datetime,
                       dedup_window: timedelta) -> list[str]:
    """Alert ids whose remediation (time by alert id) is older than the dedup window: the
    alert's dedup state was last seen before that time, so it has expired too, and a sighting
    now starts a new alert whatever the remediation said."""
    cutoff = _iso(now - dedup_window)
    return [alert_id for alert_id, at in remediated.items() if not at or at < cutoff]


__all__ = ["StateWindows", "expired_alerts", "last_event", "stale_remediations"]
