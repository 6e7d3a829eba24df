"""End-to-end throughput of the enrichment chain against a real broker, next to a bare
consume-and-produce passthrough measured the same way in the same run.

    .venv/bin/threatroute broker start          # or point --bootstrap at a cluster
    .venv/bin/python benchmarks/bench_pipeline.py --count 100000

Produces COUNT synthetic indicators to indicators.raw, then times (a) a passthrough stage that
only decodes and re-encodes each record (the floor: Kafka plus JSON), and (b) the asn, geo and
hoster stages in one process, fused as `run all` runs them and then as three threads, each
time until indicators.enriched holds COUNT new records. Prints records/s and the ratios.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from threatroute import topics
from threatroute.enrichers.databuild import build_demo_data
from threatroute.record import indicator_key, normalise_indicator
from threatroute.streams.config import load_config
from threatroute.streams.kafka.admin import admin, ensure_topics
from threatroute.streams.kafka.clients import AckedProducer, consumer_settings
from threatroute.streams.kafka.transactions import AfterAcknowledgement
from threatroute.streams.runtime.loop import DeadLetters, run_stage
from threatroute.streams.runtime.step import BaseStage, Input, Output, Step
from threatroute.streams.runtime.supervisor import run_stages

PREFIXES = ["192.0.2", "198.51.100", "203.0.113", "198.18.4", "100.64.9"]


def indicators(count: int) -> Iterable[tuple[str, bytes]]:
    rng = random.Random(7)
    for i in range(count):
        record = normalise_indicator({
            "classification": {"type": rng.choice(["c2-server", "phishing", "scanner"])},
            "source": {"ip": f"{rng.choice(PREFIXES)}.{rng.randrange(1, 255)}",
                       "port": 1024 + i % 60000},
            "feed": {"name": "bench", "accuracy": 90}, "tlp": "GREEN"})
        yield indicator_key(record), json.dumps(record).encode()


def ends(bootstrap: str, topic: str) -> int:
    return sum(_watermarks(bootstrap, topic).values())


def wait_for(bootstrap: str, topic: str, target: int, started: float) -> float:
    """Seconds from `started` until `topic` holds `target` records (one probe, polled gently
    so that measuring costs the measured process next to nothing)."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        partitions = [TopicPartition(topic, p)
                      for p in probe.list_topics(topic, timeout=10).topics[topic].partitions]
        while sum(probe.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions) < target:
            time.sleep(0.2)
        return time.perf_counter() - started
    finally:
        probe.close()


class Passthrough(BaseStage):
    """Decode and re-encode: what every stage pays before doing any work of its own."""

    name, subscription, dead_letter_topic = "passthrough", (topics.RAW,), topics.INVALID

    def __init__(self, sink: str, group: str) -> None:
        self.sink, self.group = sink, group

    def process(self, inputs: list[Input], step: Step) -> None:
        for item in inputs:
            step.send(Output(self.sink, item.key, item.record))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    data = build_demo_data(Path(tempfile.mkdtemp()) / "data")
    config = load_config(bootstrap=args.bootstrap, ipasn=data.ipasn, asnames=data.asnames,
                         geoip=data.mmdb, metrics_port=0)
    ensure_topics(admin(config), config.topics)
    scratch = f"bench.passthrough.{uuid.uuid4().hex[:8]}"
    client = AdminClient({"bootstrap.servers": config.bootstrap})
    raw = config.topic("indicators.raw")
    client.create_topics([NewTopic(scratch, raw.partitions, raw.replication)])[scratch].result()

    # the chain's groups start from where they are: drain what is already there first
    stop = threading.Event()
    names = ("asn", "geo", "hoster")
    chain = threading.Thread(target=run_stages, args=(config, names, stop),
                             kwargs={"fuse": False})
    chain.start()
    time.sleep(3)
    base_enriched = ends(config.bootstrap, "indicators.enriched")
    while True:
        time.sleep(1)
        now = ends(config.bootstrap, "indicators.enriched")
        if now == base_enriched:
            break
        base_enriched = now
    stop.set()
    chain.join()

    start_raw = _watermarks(config.bootstrap, "indicators.raw")
    producer = Producer({"bootstrap.servers": config.bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10000, "compression.type": "lz4",
                         "queue.buffering.max.messages": 1_000_000})
    for key, value in indicators(args.count):
        producer.produce("indicators.raw", value, key)
        producer.poll(0)
    producer.flush()

    # (a) passthrough from the same start offsets, its own group, through the one loop
    group = f"bench-passthrough-{uuid.uuid4().hex[:8]}"
    _rewind(config.bootstrap, group, start_raw)
    consumer = Consumer(consumer_settings(config, group))
    stop = threading.Event()
    started = time.perf_counter()
    worker = threading.Thread(target=run_stage, args=(
        Passthrough(scratch, group), consumer, AfterAcknowledgement(AckedProducer(config)),
        DeadLetters(topics.INVALID, "passthrough"), stop))
    worker.start()
    passthrough = wait_for(config.bootstrap, scratch, args.count, started)
    stop.set()
    worker.join()

    # (b) the chain in one process: fused (what `run all` does), then as three threads
    rates = {}
    for fuse in (True, False):
        target = ends(config.bootstrap, "indicators.enriched") + args.count
        _rewind(config.bootstrap, topics.group_id("asn"), start_raw)
        # lone geo and hoster start at the end of their inputs, as after a drained run
        for stage, topic in (("geo", topics.ASN), ("hoster", topics.GEO)):
            _rewind(config.bootstrap, topics.group_id(stage), _watermarks(config.bootstrap, topic),
                    topic)
        stop = threading.Event()
        started = time.perf_counter()
        chain = threading.Thread(target=run_stages, args=(config, names, stop),
                                 kwargs={"fuse": fuse})
        chain.start()
        rates[fuse] = args.count / wait_for(config.bootstrap, "indicators.enriched", target,
                                            started)
        stop.set()
        chain.join()
    client.delete_topics([scratch])

    bare = args.count / passthrough
    print(f"{args.count} indicators, broker {config.bootstrap}")
    print(f"  passthrough (consume, decode, encode, produce, commit): {bare:9,.0f} records/s")
    print(f"  asn+geo+hoster fused, one process (run all):           {rates[True]:9,.0f} records/s"
          f"  (passthrough/chain {bare / rates[True]:.2f})")
    print(f"  asn, geo, hoster as three threads, one process:        {rates[False]:9,.0f} records/s"
          f"  (passthrough/chain {bare / rates[False]:.2f})")
    return 0


def _rewind(bootstrap: str, group: str, offsets: dict[int, int], topic: str = topics.RAW
            ) -> None:
    """Put a group at `offsets` of `topic` (where the benchmark's records start)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o)
                                 for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def _watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
