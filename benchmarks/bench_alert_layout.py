"""What the alert topics' layout costs a transactional producer, on a real broker.

    .venv/bin/python benchmarks/bench_alert_layout.py [--port 9292] [--topics 10000]
        [--records 60000]

Starts a broker of its own (fresh state under .threatroute/, removed afterwards), creates
`--topics` one-partition topics (as `recipients import` does for alert topics) and one topic
of 12 partitions, then produces the same records (200-byte alerts spread evenly over the
recipients) in transactions committed every 100 ms (the match stage's COMMIT_INTERVAL) to:
  - one topic per recipient (today's layout: alerts.<recipient>);
  - one partitioned topic keyed by recipient (a routed-alerts topic);
and the per-recipient topics without a transaction (idempotent producer). Prints records/s
of each. Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from threatroute.streams.config import TopicSpec, load_config
from threatroute.streams.kafka import broker
from threatroute.streams.kafka.admin import admin, ensure_topics

COMMIT_SECONDS = 0.1
VALUE = b"x" * 200


def producer_for(bootstrap: str, transactional: bool) -> Producer:
    settings = {"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3,
                "queue.buffering.max.messages": 1_000_000, "enable.idempotence": True}
    if transactional:
        settings["transactional.id"] = f"bench-layout-{uuid.uuid4()}"
    producer = Producer(settings)
    if transactional:
        producer.init_transactions(30)
    return producer


def produce(producer: Producer, names: list[str], keyed: str | None, count: int,
            transactional: bool) -> float:
    """records/s producing `count` records round-robin over recipients `names`: to the topic
    of each, or (keyed) to topic `keyed` with the recipient as key."""
    if transactional:
        producer.begin_transaction()
    started = last_commit = time.perf_counter()
    for i in range(count):
        name = names[i % len(names)]
        while True:
            try:
                if keyed:
                    producer.produce(keyed, VALUE, name.encode())
                else:
                    producer.produce(name, VALUE, b"indicator")
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
        if transactional and time.perf_counter() - last_commit >= COMMIT_SECONDS:
            producer.commit_transaction(60)
            producer.begin_transaction()
            last_commit = time.perf_counter()
    if transactional:
        producer.commit_transaction(60)
    else:
        assert producer.flush(60) == 0
    return count / (time.perf_counter() - started)


def sharded(bootstrap: str, names: list[str], count: int, shards: int) -> float:
    """records/s of `shards` transactional producers in threads, each producing to its own
    share of the recipients' topics (librdkafka sends one partition per ProduceRequest,
    librdkafka#1700, with at most 5 in flight per idempotent producer and broker)."""
    producers = [producer_for(bootstrap, True) for _ in range(shards)]
    work = [(p, names[i::shards]) for i, p in enumerate(producers)]
    for producer, share in work:  # warm-up, one after the other
        produce(producer, share, None, min(count, 20_000) // shards, True)
    started = time.perf_counter()
    threads = [threading.Thread(target=produce, args=(p, share, None, count // shards, True))
               for p, share in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count // shards * shards / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9292)
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--shards", type=int, nargs="*", default=[4, 16])
    args = parser.parse_args()
    state = Path(".threatroute") / f"bench-layout-{args.port}"
    config = load_config(None, state_dir=state.resolve(), broker_port=args.port,
                         controller_port=args.port + 1, bootstrap=f"127.0.0.1:{args.port}")
    shutil.rmtree(state, ignore_errors=True)
    broker.start(config)
    try:
        names = [f"alerts.bench{i:05d}" for i in range(args.topics)]
        began = time.perf_counter()
        ensure_topics(admin(config), [TopicSpec(n, 1, 1) for n in names]
                      + [TopicSpec("routed.bench", 12, 1)], align_configs=False)
        print(f"created {args.topics:,} one-partition topics in "
              f"{time.perf_counter() - began:.0f}s (load {os.getloadavg()[0]:.1f})")
        bootstrap = config.bootstrap
        for shards in args.shards:
            rate = sharded(bootstrap, names, args.records, shards)
            print(f"one topic per recipient, transactions, {shards} producers (recipients "
                  f"sharded between them): {rate:,.0f} records/s (load "
                  f"{os.getloadavg()[0]:.1f})", flush=True)
        for label, keyed, transactional in (
                ("one topic per recipient, transactions", None, True),
                ("one 12-partition topic keyed by recipient, transactions", "routed.bench", True),
                ("one topic per recipient, no transaction", None, False)):
            # warm-up with the same producer: its metadata knows every topic when timed
            producer = producer_for(bootstrap, transactional)
            produce(producer, names, keyed, min(args.records, 20_000), transactional)
            rate = produce(producer, names, keyed, args.records, transactional)
            print(f"{label}: {rate:,.0f} records/s (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    finally:
        broker.stop(config)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
