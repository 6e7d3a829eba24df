"""`threatroute bench`: the pipeline end to end on a realistic world, on one broker, in one run.

Prints indicators/s from `indicators.raw` to the alert topics with the stages fused in one
process (`run all`) and with each stage its own process, a bare confluent-kafka passthrough
of the same records and the ratio, raw-to-alert latency at a fixed offered load, and
records/s and peak RSS of every worker. The world is `threatroute.benchworld`'s.

How a throughput figure is taken: the workers start and drain a warm-up batch (startup,
data loading, index builds and state restore are not timed); they are then frozen
(SIGSTOP), the measured records are produced to `indicators.raw`, and the clock starts when
they are thawed (SIGCONT). It stops when every group the workers consume as (`run all`: the
fused chain's asn group, match and publish) has committed up to the end of its input, checked
in pipeline order (a stage commits only after its outputs are acknowledged, so the last
group's commit, publish's, means every alert is written to its recipient's topic).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from threatroute import topics
from threatroute.benchworld import World, build_world, indicators
from threatroute.streams.commands.base import DONE, command
from threatroute.streams.config import Config, TopicSpec
from threatroute.streams.kafka import broker
from threatroute.streams.kafka.admin import admin, ensure_topics
from threatroute.streams.kafka.clients import consumer_settings, producer_settings
from threatroute.streams.runtime.registry import import_registry

# each stage's group and the topic it consumes, in pipeline order; the last one's commit is the
# end: publish commits match.routed only with the alerts written to alerts.<recipient>
STAGES = (("asn", topics.RAW), ("geo", topics.ASN), ("hoster", topics.GEO),
          ("match", topics.ENRICHED), ("publish", topics.MATCH_ROUTED))
# `run all` consumes as the asn group (the fused chain), the match and the publish groups: the
# groups of geo and hoster need not move while it runs
FUSED = (STAGES[0], STAGES[3], STAGES[4])
WARMUP = 2_000


@dataclass(frozen=True)
class BenchOptions:
    count: int = 100_000
    recipients: int = 10_000
    rate: int = 5_000
    seconds: float = 20.0
    port: int = 9192
    bootstrap: str | None = None
    workdir: Path = Path(".threatroute/bench")
    separate: bool = True


@dataclass
class Throughput:
    """One timed drain: the rate end to end, each group's rate, each worker's peak RSS."""

    seconds: float
    records: int
    stages: dict[str, float] = field(default_factory=dict)      # group -> records/s
    rss: dict[str, int] = field(default_factory=dict)           # worker -> peak bytes
    start: dict[int, int] = field(default_factory=dict)         # raw offsets of the records

    @property
    def rate(self) -> float:
        return self.records / self.seconds


# -- Kafka probes -------------------------------------------------------------------------------

class Probe:
    """End offsets of the stage topics and committed offsets of the stage groups."""

    def __init__(self, config: Config) -> None:
        self.client = admin(config)
        self.partitions = {t: len(m.partitions) for t, m in
                           self.client.list_topics(timeout=30).topics.items()}

    def ends(self, topic: str) -> dict[int, int]:
        specs = {TopicPartition(topic, p): OffsetSpec.latest()
                 for p in range(self.partitions[topic])}
        futures = self.client.list_offsets(specs, request_timeout=30)
        return {tp.partition: f.result().offset for tp, f in futures.items()}

    def committed(self, group: str, topic: str) -> int:
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in range(self.partitions[topic])])
        result = self.client.list_consumer_group_offsets([request])[group].result()
        return sum(max(tp.offset, 0) for tp in result.topic_partitions)

    def lag(self, group: str, topic: str) -> tuple[int, int]:
        """(records behind the end, records committed)."""
        committed = self.committed(group, topic)
        return sum(self.ends(topic).values()) - committed, committed


def drain(probe: Probe, started: float, stages: tuple[tuple[str, str], ...] = STAGES,
          timeout: float = 1800.0) -> tuple[float, dict[str, float]]:
    """Seconds from `started` until every group of `stages` is at its input's end, and each
    group's records/s over the time it took that group."""
    first = {g: probe.lag(topics.group_id(g), t)[1] for g, t in stages}
    done_at: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for group, topic in stages:  # pipeline order: see the module docstring
            behind, committed = probe.lag(topics.group_id(group), topic)
            if behind == 0 and group not in done_at:
                done_at[group] = time.perf_counter() - started
                first[group] = committed - first[group]
            elif behind:
                done_at.pop(group, None)
                break
        if len(done_at) == len(stages):
            last = stages[-1][0]  # its commit: every alert is in alerts.<recipient>
            return done_at[last], {g: first[g] / max(done_at[g], 1e-3) for g, _ in stages}
        time.sleep(0.1)
    raise TimeoutError(f"the pipeline did not drain in {timeout:.0f}s")


def produce(config: Config, records: Iterable[tuple[str, bytes]]) -> int:
    producer = Producer(producer_settings(config, **{"linger.ms": 20}))
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topics.RAW, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the benchmark's records were not all acknowledged")
    return count


# -- workers ------------------------------------------------------------------------------------

class Workers:
    """`threatroute run ...` child processes, as an operator starts them."""

    def __init__(self, config: Config, world: World, stages: list[str], logs: Path) -> None:
        env = {**os.environ, "THREATROUTE_BOOTSTRAP": config.bootstrap}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for stage in stages:
            command = [sys.executable, "-m", "threatroute.streams.commands.cli", "run", stage,
                       "--metrics-port", "0", "--ipasn", str(world.ipasn),
                       "--geoip", str(world.geoip)]
            if world.asnames:
                command += ["--asnames", str(world.asnames)]
            log = (logs / f"{stage}.log").open("ab")
            self.processes["run " + stage] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def signal(self, signum: int) -> None:
        for process in self.processes.values():
            process.send_signal(signum)

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"`threatroute {name}` exited with {process.returncode}")

    def peak_rss(self) -> dict[str, int]:
        peaks = {}
        for name, process in self.processes.items():
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = int(line.split()[1]) * 1024
        return peaks

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def timed_drain(config: Config, probe: Probe, workers: Workers, world: World, count: int,
                seed: int, stages: tuple[tuple[str, str], ...]) -> Throughput:
    """Warm up, freeze the workers, produce `count` records, thaw them and time the drain."""
    produce(config, indicators(world, WARMUP, seed=seed + 1000))
    drain(probe, time.perf_counter(), stages)
    workers.check()
    workers.signal(signal.SIGSTOP)
    start = probe.ends(topics.RAW)
    try:
        produced = produce(config, indicators(world, count, seed=seed))
    finally:
        workers.signal(signal.SIGCONT)
    started = time.perf_counter()
    seconds, rates = drain(probe, started, stages)
    workers.check()
    return Throughput(seconds, produced, rates, workers.peak_rss(), start)


# -- passthrough and latency --------------------------------------------------------------------

def passthrough(config: Config, start: dict[int, int], count: int) -> float:
    """A bare confluent-kafka consume-produce-commit loop over the same records: records/s."""
    scratch = f"bench.passthrough.{uuid.uuid4().hex[:8]}"
    raw = config.topic(topics.RAW)
    ensure_topics(admin(config), [TopicSpec(scratch, raw.partitions, raw.replication)])
    consumer = Consumer(consumer_settings(config, f"bench-passthrough-{uuid.uuid4().hex[:8]}"))
    producer = Producer(producer_settings(config))
    consumer.assign([TopicPartition(topics.RAW, p, o) for p, o in start.items()])
    seen, started = 0, None
    try:
        while seen < count:
            messages = [m for m in consumer.consume(2000, timeout=1.0) if m.error() is None]
            if not messages:
                continue
            started = started or time.perf_counter()
            for message in messages:
                producer.produce(scratch, message.value(), message.key())
            producer.flush()
            last = {(m.topic(), m.partition()): m.offset() for m in messages}
            consumer.commit(offsets=[TopicPartition(t, p, (o or 0) + 1)
                                     for (t, p), o in last.items() if t and p is not None],
                            asynchronous=False)
            seen += len(messages)
        return seen / (time.perf_counter() - (started or time.perf_counter()))
    finally:
        consumer.close()
        admin(config).delete_topics([scratch])


@dataclass
class Latency:
    offered: float
    indicators: int
    alerts: int
    p50: float
    p99: float
    worst: float


def latency(config: Config, probe: Probe, world: World, recipient_topics: list[str], rate: int,
            seconds: float, seed: int) -> Latency:
    """Offer `rate` indicators/s for `seconds` to the running pipeline; time raw -> alert
    (produce call to the moment a recipient's consumer holds the alert)."""
    records = list(indicators(world, int(rate * seconds), seed=seed))
    sent: dict[bytes, float] = {}
    received: list[float] = []
    reader = Consumer({**config.kafka_settings(), "group.id": f"bench-latency-{uuid.uuid4()}",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                       "fetch.min.bytes": 1})
    reader.assign([TopicPartition(t, 0, OFFSET_END) for t in recipient_topics])
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for message in reader.consume(1000, timeout=0.1):
                key = message.key()
                if message.error() is None and key in sent:
                    received.append(time.time() - sent[key])

    thread = threading.Thread(target=read, name="bench-latency")
    thread.start()
    try:  # a failed run (a worker gone) must not leave the reader thread holding the process
        time.sleep(3)  # the reader has its 10,000 partitions' positions before anything is sent
        producer = Producer(producer_settings(config, **{"linger.ms": 1}))
        started = time.perf_counter()
        for n, (key, value) in enumerate(records):
            due = started + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent.setdefault(key.encode(), time.time())
            producer.produce(topics.RAW, value, key)
            producer.poll(0)
        producer.flush(60)
        offered = len(records) / (time.perf_counter() - started)
        drain(probe, time.perf_counter(), FUSED)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
        reader.close()
    if not received:
        raise RuntimeError("no alert arrived during the latency run")
    cuts = statistics.quantiles(received, n=100)
    return Latency(offered, len(records), len(received), cuts[49], cuts[98], max(received))


# -- the run ------------------------------------------------------------------------------------

def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def run(options: BenchOptions, base: Config) -> None:
    workdir = options.workdir.resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"building the world in {workdir / 'world'} ...", flush=True)
    world = build_world(workdir / "world", options.recipients)
    print(world.describe(), flush=True)
    state = workdir / f"broker-{options.port}"
    config = base.with_overrides(state_dir=state, broker_port=options.port,
                                 controller_port=options.port + 1,
                                 bootstrap=options.bootstrap or f"127.0.0.1:{options.port}",
                                 metrics_port=0)
    own_broker = options.bootstrap is None
    if own_broker:  # a fresh broker: nothing left from an earlier run changes the figures
        broker.stop(config)
        shutil.rmtree(state, ignore_errors=True)
        broker.start(config)
    try:
        _measure(options, config, world, logs)
    finally:
        if own_broker:
            broker.stop(config)
            shutil.rmtree(state, ignore_errors=True)


def _measure(options: BenchOptions, config: Config, world: World, logs: Path) -> None:
    ensure_topics(admin(config), config.topics)
    started = time.perf_counter()
    imported = import_registry(config, world.registry.read_text())
    print(f"imported {len(imported.upserts):,} recipients and created "
          f"{len(imported.topics_created):,} alert topics in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    probe = Probe(config)
    recipient_topics = sorted(t for t in AdminClient(config.kafka_settings()).list_topics(
        timeout=30).topics if topics.recipient_of(t, topics.ALERTS_PREFIX))

    print(f"\nfused: `threatroute run all`, {options.count:,} indicators ...", flush=True)
    workers = Workers(config, world, ["all"], logs)
    try:
        fused = timed_drain(config, probe, workers, world, options.count, seed=1,
                            stages=FUSED)
        alerts = sum(sum(probe.ends(t).values()) for t in recipient_topics)
        print(f"measuring latency at {options.rate:,} indicators/s offered for "
              f"{options.seconds:.0f}s ...", flush=True)
        lat = latency(config, probe, world, recipient_topics, options.rate, options.seconds,
                      seed=3)
    finally:
        workers.stop()
    print("bare confluent-kafka passthrough of the same records ...", flush=True)
    bare = passthrough(config, fused.start, options.count)

    separate = None
    if options.separate:
        print(f"separate processes: {', '.join(n for n, _ in STAGES)}, {options.count:,} "
              "indicators ...", flush=True)
        workers = Workers(config, world, [name for name, _ in STAGES], logs)
        try:
            separate = timed_drain(config, probe, workers, world, options.count, seed=2,
                                   stages=STAGES)
        finally:
            workers.stop()

    _report(options, fused, separate, bare, lat, alerts)


def _report(options: BenchOptions, fused: Throughput, separate: Throughput | None, bare: float,
            lat: Latency, alerts: int) -> None:
    print(f"\n== threatroute bench: {options.count:,} indicators, {options.recipients:,} "
          f"recipients, one broker ==")
    print(f"end to end, indicators.raw -> alert topics ({alerts:,} alert records in the run "
          "so far):")
    print(f"  fused, one process (run all): {fused.rate:10,.0f} indicators/s "
          f"({fused.seconds:.1f}s)")
    print("    per group, records/s (asn is the fused chain; publish counts alerts): "
          + ", ".join(f"{g} {r:,.0f}/s" for g, r in fused.stages.items()))
    print("    peak RSS: " + ", ".join(f"{w} {_mib(b)}" for w, b in fused.rss.items()))
    if separate:
        print(f"  separate processes:           {separate.rate:10,.0f} indicators/s "
              f"({separate.seconds:.1f}s)")
        print("    per stage, records/s (publish counts alerts): "
              + ", ".join(f"{g} {r:,.0f}/s" for g, r in separate.stages.items()))
        print("    peak RSS: " + ", ".join(f"{w} {_mib(b)}" for w, b in separate.rss.items()))
    print(f"  bare confluent-kafka passthrough: {bare:,.0f} records/s; fused/passthrough "
          f"{fused.rate / bare:.2f}" + (f", separate/passthrough {separate.rate / bare:.2f}"
                                        if separate else ""))
    print(f"latency raw -> alert, fused, {lat.offered:,.0f} indicators/s offered "
          f"({lat.indicators:,} indicators, {lat.alerts:,} alerts): p50 {lat.p50 * 1000:,.0f} ms,"
          f" p99 {lat.p99 * 1000:,.0f} ms, max {lat.worst * 1000:,.0f} ms")


def handle(args: argparse.Namespace, config: Config) -> int:
    run(BenchOptions(count=args.count, recipients=args.recipients, rate=args.rate,
                     seconds=args.seconds, port=args.port, bootstrap=args.bootstrap,
                     workdir=args.workdir, separate=not args.fused_only), config)
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "bench", handler=handle,
                     help="the pipeline end to end on a realistic world: indicators/s, "
                          "latency, RSS",
                     description=__doc__.split("\n\n")[0].split(": ", 1)[1]
                     + " Starts a broker of its own (fresh, removed afterwards) unless "
                     "--bootstrap names one.")
    parser.add_argument("--count", type=int, default=100_000,
                        help="indicators per timed run (default 100,000)")
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=5_000,
                        help="offered indicators/s of the latency run (default 5,000)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="length of the latency run (default 20)")
    parser.add_argument("--port", type=int, default=9192,
                        help="port of the benchmark's own broker (and port + 1)")
    parser.add_argument("--workdir", type=Path, default=Path(".threatroute/bench"),
                        help="world, logs and broker state (default .threatroute/bench)")
    parser.add_argument("--fused-only", action="store_true",
                        help="skip the run with each stage its own process")
