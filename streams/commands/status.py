"""`threatroute status`: the operator's one look at a running pipeline.

What it shows, read from the brokers (nothing from the stages themselves, so it works whatever
runs where): the brokers reached and the controller; each stage's consumer group with its state
and members (client, host, assigned partitions); the lag of every topic partition a group
reads; records/s per group, from its committed offsets sampled `--interval` seconds apart (and
the input rate from the end offsets); dead letters written in the last hour on
`indicators.invalid` and `feedback.invalid` (the offsets at an hour ago, by timestamp, to the
end; transaction markers take offsets too, so it is an upper bound for transactional writers);
and how many recipients the registry holds. `--json` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from threatroute import topics
from threatroute.streams.commands.base import DONE, command
from threatroute.streams.config import Config

STAGES = {"asn": topics.RAW, "geo": topics.ASN, "hoster": topics.GEO, "match": topics.ENRICHED,
          "publish": topics.MATCH_ROUTED, "feedback": topics.FEEDBACK}
DEAD_LETTERS = (topics.INVALID, topics.FEEDBACK_INVALID)
TIMEOUT = 10.0
Slot = tuple[str, int]


@dataclass
class Member:
    client_id: str
    host: str
    partitions: list[str]


@dataclass
class Lag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here (it starts at the beginning)
    end: int
    lag: int


@dataclass
class Group:
    stage: str
    group: str
    state: str
    members: list[Member] = field(default_factory=list)
    lag: list[Lag] = field(default_factory=list)
    total_lag: int = 0
    records_per_second: float = 0.0  # committed offsets moved, per second of the interval
    input_per_second: float = 0.0    # end offsets of the topics it reads moved, per second


@dataclass
class Status:
    cluster_id: str | None
    controller: int | None
    brokers: list[str]
    recipients: int | None
    dead_letters_last_hour: dict[str, int]
    interval_seconds: float
    groups: list[Group]


def lags(committed: Mapping[Slot, int], ends: Mapping[Slot, int], starts: Mapping[Slot, int]
         ) -> list[Lag]:
    """Lag per partition of what a group reads: end minus its committed offset, or minus the
    start of the log where it never committed."""
    rows = []
    for slot in sorted(set(committed) | set(ends)):
        end = ends.get(slot, 0)
        position = committed.get(slot)
        behind = end - (position if position is not None and position >= 0
                        else starts.get(slot, 0))
        rows.append(Lag(slot[0], slot[1], position, end, max(0, behind)))
    return rows


def rate(before: Mapping[Slot, int], after: Mapping[Slot, int], seconds: float) -> float:
    """Offsets moved per second between two samples (partitions absent before start at 0)."""
    if seconds <= 0:
        return 0.0
    moved = sum(max(0, after[s] - max(before.get(s, 0), 0)) for s in after if after[s] >= 0)
    return round(moved / seconds, 1)


def dead_letter_count(ends: Mapping[Slot, int], hour_ago: Mapping[Slot, int]) -> int:
    """Records from the first offset at or after an hour ago to the end; a partition with
    nothing that recent (offset -1) has none."""
    return sum(end - hour_ago[s] for s, end in ends.items() if hour_ago.get(s, -1) >= 0)


class Probe:
    """The admin reads `status` needs; one AdminClient for all of them."""

    def __init__(self, config: Config) -> None:
        from confluent_kafka.admin import AdminClient

        self.config = config
        self.admin = AdminClient(config.kafka_settings())

    def cluster(self) -> tuple[str | None, int | None, list[str]]:
        described = self.admin.describe_cluster(request_timeout=TIMEOUT).result()
        controller = described.controller.id if described.controller else None
        brokers = [f"{n.id}@{n.host}:{n.port}" for n in described.nodes]
        return described.cluster_id, controller, sorted(brokers)

    def groups(self) -> list[str]:
        """The stages' groups first, then every other group of the pipeline found."""
        listed = self.admin.list_consumer_groups(request_timeout=TIMEOUT).result()
        found = sorted(g.group_id for g in listed.valid
                       if g.group_id.startswith(topics.GROUP_PREFIX))
        stages = [topics.group_id(stage) for stage in STAGES]
        return stages + [g for g in found if g not in stages]

    def describe(self, groups: list[str]) -> dict[str, tuple[str, list[Member]]]:
        futures = self.admin.describe_consumer_groups(groups, request_timeout=TIMEOUT)
        described = {}
        for group, future in futures.items():
            info = future.result()
            members = [Member(m.client_id, m.host, sorted(
                f"{tp.topic}[{tp.partition}]" for tp in (m.assignment.topic_partitions or [])))
                for m in info.members]
            described[group] = (info.state.name.lower(), members)
        return described

    def committed(self, group: str) -> dict[Slot, int]:
        from confluent_kafka import ConsumerGroupTopicPartitions

        futures = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT)
        result = futures[group].result()
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}

    def partitions(self, names: Iterable[str]) -> list[Slot]:
        metadata = self.admin.list_topics(timeout=TIMEOUT).topics
        return [(name, p) for name in names if name in metadata
                for p in metadata[name].partitions]

    def offsets(self, slots: Iterable[Slot], spec: Any) -> dict[Slot, int]:
        from confluent_kafka import TopicPartition

        slots = list(slots)
        if not slots:
            return {}
        futures = self.admin.list_offsets({TopicPartition(t, p): spec for t, p in slots},
                                          request_timeout=TIMEOUT)
        return {(tp.topic, tp.partition): future.result().offset
                for tp, future in futures.items()}

    def recipients(self) -> int | None:
        from threatroute.streams.runtime.registry import read_registry

        return len(read_registry(self.config))


def gather(config: Config, interval: float) -> Status:
    from confluent_kafka.admin import OffsetSpec

    probe = Probe(config)
    cluster_id, controller, brokers = probe.cluster()
    names = probe.groups()
    described = probe.describe(names)
    first = {group: probe.committed(group) for group in names}
    read = {group: {t for t, _ in first[group]} for group in names}
    for stage, source in STAGES.items():
        read[topics.group_id(stage)].add(source)
    slots = probe.partitions(set().union(*read.values()))
    ends_before = probe.offsets(slots, OffsetSpec.latest())
    started = time.monotonic()
    time.sleep(interval)
    second = {group: probe.committed(group) for group in names}
    ends = probe.offsets(slots, OffsetSpec.latest())
    seconds = time.monotonic() - started
    starts = probe.offsets(slots, OffsetSpec.earliest())
    stage_of = {topics.group_id(stage): stage for stage in STAGES}
    groups = []
    for name in names:
        state, members = described.get(name, ("unknown", []))
        mine = {s: e for s, e in ends.items() if s[0] in read[name]}
        rows = lags(second[name], mine, starts)
        groups.append(Group(
            stage_of.get(name, name.removeprefix(topics.GROUP_PREFIX)), name, state, members,
            rows, sum(r.lag for r in rows), rate(first[name], second[name], seconds),
            rate({s: e for s, e in ends_before.items() if s in mine}, mine, seconds)))
    dead_slots = probe.partitions(DEAD_LETTERS)
    hour_ago = probe.offsets(dead_slots, OffsetSpec.for_timestamp(
        int((time.time() - 3600) * 1000)))
    dead_ends = probe.offsets(dead_slots, OffsetSpec.latest())
    dead = {topic: dead_letter_count({s: e for s, e in dead_ends.items() if s[0] == topic},
                                     hour_ago) for topic in DEAD_LETTERS}
    return Status(cluster_id, controller, brokers, probe.recipients(), dead, round(seconds, 2),
                  groups)


def render(status: Status) -> str:
    lines = [f"brokers     {len(status.brokers)} reached: {', '.join(status.brokers)} "
             f"(controller {status.controller}, cluster {status.cluster_id})",
             f"recipients  {status.recipients}",
             "dead letters in the last hour: " + ", ".join(
                 f"{topic} {count}" for topic, count in status.dead_letters_last_hour.items()),
             "",
             f"{'stage':10} {'group':28} {'state':12} {'members':>7} {'lag':>9} "
             f"{'records/s':>10} {'input/s':>9}"]
    for group in status.groups:
        lines.append(f"{group.stage:10} {group.group:28} {group.state:12} "
                     f"{len(group.members):>7} {group.total_lag:>9} "
                     f"{group.records_per_second:>10} {group.input_per_second:>9}")
        for member in group.members:
            lines.append(f"    member {member.client_id} on {member.host}: "
                         f"{', '.join(member.partitions) or 'no partitions'}")
        for row in group.lag:
            if row.lag:
                committed = "none" if row.committed is None or row.committed < 0 \
                    else row.committed
                lines.append(f"    {row.topic}[{row.partition}] committed {committed} "
                             f"end {row.end} lag {row.lag}")
    lines.append(f"(rates over {status.interval_seconds}s; partitions with no lag not listed)")
    return "\n".join(lines)


def show(args: argparse.Namespace, config: Config) -> int:
    status = gather(config, args.interval)
    print(json.dumps(asdict(status), indent=2) if args.json else render(status))
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "status", handler=show, kafka=True,
                     help="the pipeline at a glance: stages, lag, rates, dead letters, brokers",
                     description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    parser.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                        help="how long to watch offsets move for the rates (default 2)")
