"""The per-recipient outcome table (`threatroute report`, the end of `make demo`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute.outcomes import AlertStatus
from threatroute.report import Row, duration, recipient_table, render_table

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)
SINCE = T0 + timedelta(hours=2)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def alert(aid, rid, key, first, last, notification="new", **extra):
    return {"alert_id": aid, "recipient": rid, "indicator_key": key, "first_seen": first,
            "last_seen": last, "notification": notification, "count": 1, **extra}


def status(aid, rid, key, state, acked, remediated=None):
    return AlertStatus(aid, rid, key, state, remediated or acked, acked, remediated)


def test_counts_median_time_to_remediate_escalations_and_reduction():
    ledger = [
        alert("a1", "h1", "k1", at(0), at(0)),            # remediated after 10 minutes
        alert("a2", "h1", "k2", at(0), at(0)),            # remediated after 30 minutes
        alert("a3", "h1", "k3", at(0), at(130)),          # acknowledged, still seen: live after
        alert("a4", "h1", "k1", at(150), at(150), "recurrence"),  # back after remediation
        alert("b1", "h2", "k4", at(0), at(0)),            # never answered, escalated twice
        alert("e1", "up", "k4", at(0), at(61), "escalation",
              escalation={"original_recipient": "h2", "level": 1}),
        alert("e2", "cert", "k4", at(0), at(121), "escalation",
              escalation={"original_recipient": "h2", "level": 2}),
    ]
    statuses = {"a1": status("a1", "h1", "k1", "remediated", at(2), at(10)),
                "a2": status("a2", "h1", "k2", "remediated", at(3), at(30)),
                "a3": status("a3", "h1", "k3", "acknowledged", at(5))}
    rows = {r.recipient: r for r in recipient_table(ledger, statuses, SINCE)}
    assert rows["h1"] == Row("h1", 4, 3, 2, 1200.0, 0, 3, 2)
    assert rows["h1"].reduction == 1 - 2 / 3
    assert rows["h2"] == Row("h2", 1, 0, 0, None, 1, 1, 0)
    assert rows["h2"].reduction == 1.0
    # escalations count for whoever received them, but are not on their network
    assert rows["up"] == Row("up", 1, 0, 0, None, 0, 0, 0) and rows["up"].reduction is None
    text = render_table(list(rows.values()))
    assert text[2].split() == ["cert", "1", "0", "0", "-", "0", "-", "-"]
    assert text[3].split() == ["h1", "4", "3", "2", "20m", "0", "3", "->", "2", "33%"]
    assert text[-1].split() == ["all", "4", "recipients", "7", "3", "2", "1", "4", "->", "2",
                                "50%"]


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (None, 42, 600, 9000, 3 * 86400)] == \
        ["-", "42s", "10m", "2.5h", "3.0d"]
