"""Bounded state: the match and feedback stages' memory over millions of indicators, most of
them seen once and then quiet, and a fixed set that keeps being seen.

    .venv/bin/python benchmarks/bench_state.py [--indicators 3000000] [--active 10000]
        [--days 60] [--dedup-hours 24] [--alert-days 2] [--watch-days 2] [--every 200000]

Runs the real stage code in process, on a simulated clock: `MatchStage.process` over batches of
enriched records (2,000 a batch, `--active-share` of them sightings of the active set, the rest
indicators never seen before), `MatchStage.expire` and `escalate` (the periodic work) every
simulated `[state] expiry_seconds`, and the feedback stage's share of the ledger fed with the
ledger records the match stage produces (as its follower would read them) and expired by
`FeedbackStage.expire`. The changelog records the stages produce are dropped instead of sent:
what is measured is the state the workers hold, not Kafka's buffers (bounded by librdkafka's
queue settings either way). No broker is needed: the tables start empty (as on a fresh
partition) instead of being restored.

Prints, every `--every` records: simulated day, rows of match.state, the rules' tables,
the feedback stage's ledger share, RSS of this process, and records/s. Once the windows
(dedup, alert_days, watch_days) have turned over, every figure stays flat.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from threatroute import topics
from threatroute.expiry import StateWindows
from threatroute.matchers.escalation import EscalationPolicy
from threatroute.matchers.index import MatchIndex
from threatroute.outcomes import alert_facts
from threatroute.record import indicator_key
from threatroute.registry import load_registry
from threatroute.streams.config import load_config
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.step import Input, Step
from threatroute.streams.runtime.tables import Tables
from threatroute.streams.stages.feedback import FeedbackStage
from threatroute.streams.stages.match import MatchStage

PARTITIONS = 6
BATCH = 2000
SPACE = 4096  # addresses per recipient: recipient r owns 11.0.0.0 + r * 4096, a /20
STRIDE = 2654435761  # odd, not a multiple of 5: i -> address is one-to-one below 4,096,000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def registry(recipients: int) -> str:
    lines = ["recipients:"]
    for r in range(recipients):
        base = (11 << 24) + r * SPACE
        prefix = f"{base >> 24}.{base >> 16 & 255}.{base >> 8 & 255}.0/20"
        lines.append(f"  - {{id: h{r}, name: H{r}, owns: {{prefixes: [{prefix}]}}, "
                     "tlp_clearance: amber}")
    return "\n".join(lines) + "\n"


def record(i: int, recipients: int, seen: datetime) -> tuple[bytes, dict]:
    """Indicator i (a distinct address for every i), seen at `seen`, with its key."""
    address = (11 << 24) + (i * STRIDE) % (recipients * SPACE)
    stamp = seen.replace(microsecond=0).isoformat()
    ip = f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"
    value = {"classification": {"taxonomy": "malicious-code", "type": "infected-system"},
             "tlp": "GREEN", "source": {"ip": ip},
             "feed": {"name": "bench", "accuracy": 90},
             "time": {"source": stamp, "observation": stamp}}
    return indicator_key(value).encode(), value


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def stages(args: argparse.Namespace, clock: Clock) -> tuple[MatchStage, FeedbackStage]:
    """The real stages, with their tables holding every partition from empty (no broker)."""
    base = load_config()
    rules = replace(base.rules, escalation=EscalationPolicy({}), state=StateWindows(
        every=timedelta(minutes=args.expiry_minutes), alerts=timedelta(days=args.alert_days),
        watch=timedelta(days=args.watch_days)))
    config = replace(base, rules=rules, dedup_window_hours=args.dedup_hours)
    Tables.check_partitions = lambda self, inputs: PARTITIONS  # type: ignore[method-assign]
    metrics = Metrics()
    match = MatchStage(config, metrics, clock=clock)
    feedback = FeedbackStage(config, metrics, clock=clock)
    match.routing.index = MatchIndex.build(load_registry(registry(args.recipients)),
                                           default_tlp=config.default_tlp)
    for stage in (match, feedback):
        stage.tables.owned.update(range(PARTITIONS))
        for table in stage.tables.tables.values():
            table.rows.update({p: {} for p in range(PARTITIONS)})
    for p in range(PARTITIONS):
        match.acting.restore(p, {}, {}, {})
    return match, feedback


def follow_ledger(feedback: FeedbackStage, step: Step) -> None:
    """The ledger records of a batch, as the feedback stage's follower applies them."""
    for output in step.outputs:
        if output.topic == topics.LEDGER and isinstance(output.value, dict):
            key = str(output.key)
            partition = zlib.crc32(key.encode()) % PARTITIONS
            feedback.ledger.rows[partition][key] = alert_facts(output.value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--indicators", type=int, default=3_000_000,
                        help="distinct indicators, each seen once (besides the active set)")
    parser.add_argument("--active", type=int, default=10_000, help="indicators seen throughout")
    parser.add_argument("--active-share", type=float, default=0.1,
                        help="share of records that are sightings of the active set")
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--days", type=float, default=60.0, help="simulated days of the run")
    parser.add_argument("--dedup-hours", type=float, default=24.0)
    parser.add_argument("--alert-days", type=float, default=2.0)
    parser.add_argument("--watch-days", type=float, default=2.0)
    parser.add_argument("--expiry-minutes", type=float, default=60.0,
                        help="simulated minutes between expiry runs")
    parser.add_argument("--every", type=int, default=200_000, help="print every N records")
    args = parser.parse_args()
    if args.indicators + args.active > args.recipients * SPACE:
        parser.error("more indicators than the recipients' address space")

    clock = Clock()
    match, feedback = stages(args, clock)
    rng = random.Random(7)
    total = int(args.indicators / (1 - args.active_share))
    tick = timedelta(days=args.days) / total
    expire_every = timedelta(minutes=args.expiry_minutes)
    next_expiry = T0 + expire_every
    fresh = args.active  # indicators 0..active-1 are the active set
    done, started, next_print = 0, time.perf_counter(), 0
    print(f"# {args.indicators:,} indicators seen once + {args.active:,} active "
          f"({args.active_share:.0%} of records), {args.recipients:,} recipients, "
          f"{args.days:g} simulated days; dedup {args.dedup_hours:g} h, alerts "
          f"{args.alert_days:g} d, watch {args.watch_days:g} d, expiry every "
          f"{args.expiry_minutes:g} min")
    print(f"{'records':>10} {'day':>6} {'match.state':>11} {'verdicts':>8} {'watch':>7} "
          f"{'ledger':>8} {'status':>6} {'rss MiB':>8} {'records/s':>9}")
    while fresh < args.active + args.indicators:
        inputs = []
        for _ in range(BATCH):
            if rng.random() < args.active_share:
                i = rng.randrange(args.active)
            elif fresh < args.active + args.indicators:
                i, fresh = fresh, fresh + 1
            else:
                break
            key, value = record(i, args.recipients, clock.now)
            raw = json.dumps(value).encode()
            inputs.append(Input(key, value, raw, topics.ENRICHED,
                                zlib.crc32(key) % PARTITIONS))
            clock.now += tick
        step = Step(clock.now)
        match.process(inputs, step)
        if step.refused:  # the figures mean nothing unless every record is routed
            raise SystemExit(f"refused: {step.refused[0].reason}")
        if clock.now >= next_expiry:
            match.expire(step)
            match.escalate(step)
            feedback.expire(step)
            next_expiry = clock.now + expire_every
        follow_ledger(feedback, step)
        match.changes()  # the changelog records: produced, in the stage, with the batch
        feedback.changes()
        match.committed(step)
        done += len(inputs)
        if done >= next_print:
            next_print += args.every
            gc.collect()
            sizes = {**match.table_sizes(), **feedback.table_sizes()}
            day = (clock.now - T0) / timedelta(days=1)
            print(f"{done:>10,} {day:>6.1f} {sizes[topics.MATCH_STATE]:>11,} "
                  f"{sizes[topics.MATCH_VERDICTS]:>8,} {sizes[topics.MATCH_WATCH]:>7,} "
                  f"{sizes[topics.LEDGER]:>8,} {sizes[topics.STATUS]:>6,} "
                  f"{rss_mib():>8.0f} {done / (time.perf_counter() - started):>9,.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
