"""Per-recipient outcome table: what each recipient was sent and did, and what changed.

Pure: `threatroute report` (and the end of `make demo`) reads the alert ledger and the status
table and calls `recipient_table`. One row per recipient with an alert:

- alerts: distinct alerts in the ledger (each alert id once, however often re-notified),
- acknowledged: alerts with any feedback; remediated: alerts whose status is `remediated`,
- median time to remediate: from the alert's first sighting to the reported remediation,
- escalated: the recipient's alerts escalated to its upstream or the CERT (counted by
  indicator; the escalation alerts themselves count for whoever received them),
- live before / after `since`: distinct indicators on its network seen before `since` and
  seen at or after it (escalations received are not on its network), and the reduction
  1 - after / before (the NCA programme's "12% drop" figure, over the two windows).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from threatroute.outcomes import AlertStatus


@dataclass(frozen=True, slots=True)
class Row:
    recipient: str
    alerts: int
    acknowledged: int
    remediated: int
    median_remediate_seconds: float | None
    escalated: int
    live_before: int
    live_after: int

    @property
    def reduction(self) -> float | None:
        return 1 - self.live_after / self.live_before if self.live_before else None


def recipient_table(ledger: Iterable[Mapping[str, Any]], statuses: Mapping[str, AlertStatus],
                    since: datetime) -> list[Row]:
    """The rows, by recipient id. `ledger`: the latest ledger record of every alert."""
    cut = since.isoformat()
    alerts: defaultdict[str, int] = defaultdict(int)
    answered: defaultdict[str, int] = defaultdict(int)
    remediated: defaultdict[str, int] = defaultdict(int)
    seconds: defaultdict[str, list[float]] = defaultdict(list)
    escalated: defaultdict[str, set[str]] = defaultdict(set)
    before: defaultdict[str, set[str]] = defaultdict(set)
    after: defaultdict[str, set[str]] = defaultdict(set)
    for alert in ledger:
        rid, key = str(alert.get("recipient")), str(alert.get("indicator_key"))
        alerts[rid] += 1
        status = statuses.get(str(alert.get("alert_id")))
        if status is not None:
            answered[rid] += 1
            if status.status == "remediated":
                remediated[rid] += 1
                if status.remediated_at:
                    seconds[rid].append((datetime.fromisoformat(status.remediated_at)
                                         - datetime.fromisoformat(alert["first_seen"]))
                                        .total_seconds())
        if alert.get("notification") == "escalation":
            original = (alert.get("escalation") or {}).get("original_recipient")
            if original:
                escalated[str(original)].add(key)
            continue
        if str(alert.get("first_seen", "")) < cut:
            before[rid].add(key)
        if str(alert.get("last_seen", "")) >= cut:
            after[rid].add(key)
    return [Row(rid, alerts[rid], answered[rid], remediated[rid],
                statistics.median(seconds[rid]) if seconds[rid] else None,
                len(escalated.get(rid, ())), len(before.get(rid, ())), len(after.get(rid, ())))
            for rid in sorted(alerts)]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h" if seconds < 172800 else f"{seconds / 86400:.1f}d"


def render_table(rows: list[Row]) -> list[str]:
    """The rows as aligned text, with a totals line."""
    head = (f"{'recipient':24} {'alerts':>6} {'acked':>6} {'remed.':>6} {'median TTR':>10} "
            f"{'escal.':>6} {'live before -> after':>21} {'reduction':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        live = f"{r.live_before} -> {r.live_after}" if r.live_before or r.live_after else "-"
        lines.append(f"{r.recipient:24} {r.alerts:6d} {r.acknowledged:6d} {r.remediated:6d} "
                     f"{duration(r.median_remediate_seconds):>10} {r.escalated:6d} {live:>21} "
                     f"{_percent(r.reduction):>9}")
    total = Row("all", sum(r.alerts for r in rows), sum(r.acknowledged for r in rows),
                sum(r.remediated for r in rows), None, sum(r.escalated for r in rows),
                sum(r.live_before for r in rows), sum(r.live_after for r in rows))
    lines += ["-" * len(head),
              f"{'all ' + str(len(rows)) + ' recipients':24} {total.alerts:6d} "
              f"{total.acknowledged:6d} {total.remediated:6d} {'':>10} {total.escalated:6d} "
              f"{f'{total.live_before} -> {total.live_after}':>21} "
              f"{_percent(total.reduction):>9}"]
    return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


__all__ = ["Row", "duration", "recipient_table", "render_table"]
