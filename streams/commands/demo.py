"""`threatroute demo world|round-two|answer`: the story `make demo` tells (deploy/demo.sh).

- `world --out DIR`: the demo world (enrichers/demoworld.py: 48 hosters, an upstream, a
  national CERT) as files: the registry, the suppression list, the first round of
  indicators, enrichment data for its networks, and a configuration with short times
  (acknowledge within seconds, not hours) so escalation happens while you watch.
- `round-two --out DIR`: the next sightings, timed now.
- `answer --out DIR`: the simulated recipients read their alerts and answer them (each
  alert once): most remediate, hoster-07 reports false positives, hoster-12 says not ours,
  hoster-23 never answers. The answers go where a recipient's own would.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threatroute import fields, topics
from threatroute.enrichers.demoworld import World, answer, build_world
from threatroute.streams.commands.base import DONE, actions, command
from threatroute.streams.config import DEFAULT_CONFIG, Config

META = "world.json"
ANSWERED = "answered.json"
# the story's times: seconds, so the demo shows an escalation within a minute or two
ACKNOWLEDGE_SECONDS = 30.0
RENOTIFY_SECONDS = 40.0
TICK_SECONDS = 2.0


def _load(out: Path) -> World:
    meta = json.loads((out / META).read_text())
    return build_world(datetime.fromisoformat(meta["now"]), meta["tag"])


def demo_config(template: str, out: Path, data: Any, ack_seconds: float,
                renotify_seconds: float) -> str:
    """The configuration `template` (TOML text) with the story's data, suppression list and
    short times; comments and everything else kept."""
    import tomlkit

    doc = tomlkit.parse(template)
    doc["data"].update({"ipasn": str(data.ipasn), "asnames": str(data.asnames),
                        "geoip": str(data.mmdb)})
    doc["hygiene"]["suppressions"] = str(out / "suppressions.yaml")
    hours = ack_seconds / 3600
    doc["escalation"]["tick_seconds"] = TICK_SECONDS
    doc["escalation"]["acknowledge_within_hours"] = {
        "c2-server": hours, "malware-distribution": hours}
    doc["match"]["renotify_hours"] = renotify_seconds / 3600
    return tomlkit.dumps(doc)


def world(args: argparse.Namespace, config: Config) -> int:
    from threatroute.enrichers.databuild import build_demo_data

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    w = build_world(now, args.tag)
    (out / META).write_text(json.dumps({"tag": args.tag, "now": now.isoformat()}))
    (out / ANSWERED).unlink(missing_ok=True)
    (out / "registry.yaml").write_text(w.registry_yaml())
    (out / "suppressions.yaml").write_text(w.suppressions_yaml())
    _jsonl(out / "round-1.jsonl", w.round_one)
    data = build_demo_data(out / "data", w.networks)
    template = Path(os.environ.get("THREATROUTE_CONFIG") or DEFAULT_CONFIG).read_text()
    (out / "threatroute.toml").write_text(demo_config(template, out, data, args.ack_seconds,
                                                      args.renotify_seconds))
    print(f"{len(w.registry)} recipients in {out / 'registry.yaml'}; "
          f"{len(w.round_one)} indicators in {out / 'round-1.jsonl'}; "
          f"configuration {out / 'threatroute.toml'} (c2-server alerts acknowledged within "
          f"{args.ack_seconds:g}s, or escalated)")
    return DONE


def round_two(args: argparse.Namespace, config: Config) -> int:
    out = Path(args.out)
    records = _load(out).round_two(datetime.now(UTC).replace(microsecond=0))
    _jsonl(out / "round-2.jsonl", records)
    print(f"{len(records)} indicators in {out / 'round-2.jsonl'}")
    return DONE


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def received(config: Config, recipients: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every alert on each recipient's topic, as the recipient reads it."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from threatroute.streams.kafka.clients import decode
    from threatroute.streams.kafka.replay import read_to_end, replay_consumer

    consumer = replay_consumer(config)
    try:
        found = consumer.list_topics(timeout=30).topics
        start = [TopicPartition(name, p, OFFSET_BEGINNING) for name in
                 (topics.alerts_topic(rid) for rid in recipients) if name in found
                 for p in found[name].partitions]
        messages = read_to_end(consumer, start)
    finally:
        consumer.close()
    out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in recipients}
    for message in messages:
        rid = topics.recipient_of(message.topic() or "", topics.ALERTS_PREFIX)
        if rid in out and message.value():
            out[rid].append(decode(message.value()))
    return out


def answer_all(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka.clients import AckedProducer, encode

    out = Path(args.out)
    w = _load(out)
    done_file = out / ANSWERED
    done = set(json.loads(done_file.read_text())) if done_file.exists() else set()
    producer = AckedProducer(config)
    told: Counter[tuple[str, str]] = Counter()
    unanswered: Counter[str] = Counter()
    for rid, alerts in received(config, w.ids).items():
        for alert in alerts:
            # what an earlier demo left on a topic of the same name may be in another format
            if not isinstance(alert, dict) or "alert_id" not in alert or \
                    alert["alert_id"] in done:
                continue
            statuses = answer(w, rid, alert)
            if not statuses:
                if w.role(rid) == "silent":
                    unanswered[rid] += 1
                continue
            done.add(alert["alert_id"])
            for status in statuses:
                # what `threatroute feedback` sends; the recipient's own topic once every
                # recipient writes there (issue 9), the shared one until then
                producer.send(topics.FEEDBACK, encode({
                    "alert_id": alert["alert_id"], "recipient": rid, "status": status,
                    "time": fields.now()}), alert["alert_id"])
                told[(w.role(rid) or "answers", status)] += 1
    producer.flush()
    done_file.write_text(json.dumps(sorted(done)))
    for (role, status), n in sorted(told.items()):
        print(f"  {n:4d} x {status:15} ({role})")
    for rid, n in sorted(unanswered.items()):
        print(f"  {n:4d} alerts of {rid} left unanswered (it never answers)")
    if not told:
        print("  nothing new to answer")
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "demo", help="the demo's story: a world of 50 recipients",
                     description="The story `make demo` tells (deploy/demo.sh): a world of 48 "
                                 "hosters, an upstream ISP and a national CERT, two rounds of "
                                 "indicators, and simulated recipients that answer.")
    sub = actions(parser)
    p = command(sub, "world", help="write the world's registry, indicators, data and config",
                handler=world)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--tag", default="", help="prefix of every recipient id and feed name")
    p.add_argument("--ack-seconds", type=float, default=ACKNOWLEDGE_SECONDS,
                   help="c2-server alerts unacknowledged this long are escalated "
                        "(twice this long: to the CERT)")
    p.add_argument("--renotify-seconds", type=float, default=RENOTIFY_SECONDS,
                   help="a still active indicator is re-notified after this long")
    p = command(sub, "round-two", help="write the next sightings, timed now", handler=round_two)
    p.add_argument("--out", required=True, metavar="DIR")
    p = command(sub, "answer", help="the simulated recipients answer what they received",
                handler=answer_all, kafka=True)
    p.add_argument("--out", required=True, metavar="DIR")
