"""`threatroute report`: one line per recipient: alerts, answered, remediated, median time to
remediate, escalated, and live indicators before and after a moment (the reduction figure).

Reads the alert ledger and the status table whole (threatroute/report.py computes the rows).
For a deployment's day-to-day figures the remediation dashboard is the place; this is the
table an operator prints for a review, and the one `make demo` ends with.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from threatroute import fields, topics
from threatroute.errors import InvalidRecord
from threatroute.outcomes import AlertStatus
from threatroute.report import recipient_table, render_table
from threatroute.streams.commands.base import DONE, command
from threatroute.streams.config import Config


def statuses_of(rows: dict[str, Any]) -> dict[str, AlertStatus]:
    out = {}
    for key, value in rows.items():
        try:
            out[key] = AlertStatus.from_json(value)
        except InvalidRecord:  # not readable: the feedback stage would not count it either
            continue
    return out


def run(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka.latest import read_latest

    since = datetime.fromisoformat(fields.timestamp(args.since)) if args.since else \
        datetime.now(UTC) - timedelta(days=config.active_days)
    ledger = [v for v in read_latest(config, topics.LEDGER).values() if isinstance(v, dict)]
    if args.sent_from:  # only alerts sent since then (canonical UTC strings compare in order)
        start = fields.timestamp(args.sent_from)
        ledger = [a for a in ledger if str(a.get("sent_at") or a.get("first_seen", "")) >= start]
    if args.recipients:
        wanted = set(args.recipients.split(","))
        ledger = [a for a in ledger if a.get("recipient") in wanted]
    rows = recipient_table(ledger, statuses_of(read_latest(config, topics.STATUS)), since)
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "reduction": row.reduction}))
        return DONE
    print(f"live indicators: seen before {since.isoformat()} -> seen since")
    print("\n".join(render_table(rows)))
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "report", handler=run, kafka=True,
                     help="per recipient: alerts, answered, remediated, time to remediate, "
                          "escalated, reduction",
                     description="One line per recipient from the alert ledger and the status "
                                 "table: alerts, acknowledged (any feedback), remediated, "
                                 "median time to remediate, its alerts escalated, and the "
                                 "indicators on its network seen before --since and since "
                                 "(the reduction figure).")
    parser.add_argument("--since", metavar="TIME",
                        help="ISO 8601 moment splitting before / after (default: [metrics] "
                             "active_days ago)")
    parser.add_argument("--from", dest="sent_from", metavar="TIME",
                        help="only alerts sent since this ISO 8601 moment")
    parser.add_argument("--recipients", metavar="ID,...", help="only these recipients")
    parser.add_argument("--json", action="store_true", help="one JSON object per recipient")
