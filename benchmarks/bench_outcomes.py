"""Cost of `summarise` (run at every Prometheus scrape) over a large synthetic ledger.

    .venv/bin/python benchmarks/bench_outcomes.py [--alerts 1000000] [--recipients 1000]

Alerts are spread over 60 days and `--recipients` recipients (4 classifications, 5 feeds, half
owner rules); about 60% have feedback in a realistic mix of statuses. Prints the seconds of
one `summarise` with the per-recipient baseline (two passes) and with a fixed baseline start
(one pass); building the data is not timed.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from datetime import UTC, datetime, timedelta

from threatroute.outcomes import AlertFacts, AlertStatus, BaselineWindow, summarise

START = datetime(2026, 1, 1, tzinfo=UTC)
CLASSES = ("phishing", "c2-server", "infected-system", "scanner")
FEEDS = ("urlhaus", "feodo", "phishtank", "openphish", None)
STATUS_MIX = ("acknowledged", "in_progress", "remediated", "remediated", "remediated",
              "false_positive", "not_ours", "wont_fix")


def build(n: int, recipients: int,
          seed: int = 1) -> tuple[list[AlertFacts], dict[str, AlertStatus]]:
    rng = random.Random(seed)
    alerts: list[AlertFacts] = []
    statuses: dict[str, AlertStatus] = {}
    for i in range(n):
        recipient = f"hoster{i % recipients}"
        sent = START + timedelta(seconds=rng.randrange(60 * 86400))
        last = sent + timedelta(seconds=rng.randrange(10 * 86400))
        alert_id = f"{i:022d}"
        key = f"{rng.randrange(n // 2):032x}"
        rule = f"prefix 10.{i % 250}.0.0/16" if i % 2 else "subscription"
        facts = AlertFacts(alert_id, recipient, key, rng.choice(CLASSES), rng.choice(FEEDS), rule,
                           sent.isoformat(), last.isoformat())
        alerts.append(facts)
        if rng.random() < 0.6:
            status = rng.choice(STATUS_MIX)
            acked = sent + timedelta(seconds=rng.randrange(3 * 86400))
            updated = acked + timedelta(seconds=rng.randrange(86400))
            statuses[alert_id] = AlertStatus(
                alert_id, recipient, key, status, updated.isoformat(), acked.isoformat(),
                updated.isoformat() if status == "remediated" else None)
    return alerts, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=1000)
    args = parser.parse_args()
    alerts, statuses = build(args.alerts, args.recipients)
    now = START + timedelta(days=70)
    gc.collect()
    gc.freeze()  # the tables are long-lived in the stage too: keep the collector off them
    for label, window in (("per-recipient baseline", BaselineWindow()),
                          ("fixed baseline start", BaselineWindow(baseline_start=START))):
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            snapshot = summarise(alerts, statuses, now, window)
            best = min(best, time.perf_counter() - began)
        print(f"summarise {len(alerts):,} alerts, {len(statuses):,} statuses, {label}: "
              f"{best:.3f} s (best of 3); {len(snapshot.sent)} sent series")


if __name__ == "__main__":
    main()
