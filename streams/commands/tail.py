"""`threatroute tail RECIPIENT` and `threatroute feedback`: the recipient's side of the loop."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

from threatroute import fields, topics
from threatroute.errors import ConfigError, InvalidRecord
from threatroute.outcomes import STATUSES
from threatroute.registry import ID_PATTERN
from threatroute.streams.commands.base import DONE, command
from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer, encode
from threatroute.streams.kafka.replay import partitions_of, replay_consumer, until_end


def alerts(config: Config, recipient: str, *, follow: bool, group: str | None,
           stop: threading.Event) -> Iterator[bytes]:
    """Values of `alerts.<recipient>`: from the group's position, or from the start."""
    consumer = replay_consumer(config, **{"group.id": group or f"tail-{uuid.uuid4()}",
                                          "enable.auto.commit": bool(group)})
    topic = topics.alerts_topic(recipient)
    try:
        if partitions_of(consumer, topic, timeout=10) is None:
            raise InvalidRecord(f"no topic {topic}: is {recipient!r} in the registry?")
        consumer.subscribe([topic])
        for message in until_end(consumer, stop=stop, follow=follow, timeout=0.5):
            value = message.value()
            if value is not None:
                yield value
    finally:
        consumer.close()


def readable(value: bytes) -> str:
    """One line per alert; STIX and CSV alerts are shown as they are."""
    try:
        alert: dict[str, Any] = json.loads(value)
        indicator = alert["indicator"]
    except (ValueError, KeyError, TypeError):
        return value.decode(errors="replace").rstrip("\n")
    source = indicator.get("source", {})
    locator = next((str(source[k]) for k in ("url", "fqdn", "ip", "network", "asn")
                    if k in source), "?")
    flag = " RECURRENCE" if alert.get("recurrence") else ""
    return (f"{alert['last_seen']}  {alert['alert_id']}  {alert.get('notification', ''):10} "
            f"{indicator['classification']['type']:20} {locator}  seen {alert['count']}x"
            f"{flag}  ({'; '.join(alert['reasons'])})")


def tail(config: Config, recipient: str, *, as_json: bool, follow: bool, group: str | None,
         out: TextIO = sys.stdout) -> int:
    stop = threading.Event()
    count = 0
    try:
        for value in alerts(config, recipient, follow=follow, group=group, stop=stop):
            out.write((value.decode() if as_json else readable(value)) + "\n")
            out.flush()
            count += 1
    except KeyboardInterrupt:
        stop.set()
    return count


def feedback_record(alert_id: str, recipient: str, status: str, note: str | None) -> dict:
    if status not in STATUSES:
        raise InvalidRecord(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    record = {"alert_id": alert_id, "recipient": recipient, "status": status,
              "time": fields.now()}
    if note:
        record["note"] = fields.string(note)
    return record


def send_feedback(config: Config, record: dict) -> None:
    producer = AckedProducer(config)
    # secure: the recipient's own topic, where the feedback stage knows the sender from the
    # topic; plaintext (no such topics, no authentication): the shared one
    topic = topics.feedback_topic(record["recipient"]) if config.secure else topics.FEEDBACK
    producer.send(topic, encode(record), record["alert_id"])
    producer.flush()


def run_tail(args: Any, config: Config) -> int:
    count = tail(config, args.recipient, as_json=args.json, follow=args.follow, group=args.group)
    print(f"{count} alerts", file=sys.stderr)
    return DONE


def run_feedback(args: Any, config: Config) -> int:
    recipient = args.recipient or os.environ.get("THREATROUTE_RECIPIENT")
    if not recipient:
        raise ConfigError("say who you are: --recipient ID or THREATROUTE_RECIPIENT")
    if not ID_PATTERN.fullmatch(recipient):
        raise ConfigError(f"{recipient[:80]!r} is not a recipient id")
    send_feedback(config, feedback_record(args.alert_id, recipient, args.status, args.note))
    print(f"feedback {args.status} for {args.alert_id} sent")
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "tail", handler=run_tail, kafka=True,
                     help="read a recipient's alerts")
    parser.add_argument("recipient")
    parser.add_argument("--json", action="store_true", help="the alert records as JSON lines")
    parser.add_argument("-f", "--follow", action="store_true", help="keep waiting for new alerts")
    parser.add_argument("--group", help="consumer group: resume where it left off (commits)")

    parser = command(subparsers, "feedback", handler=run_feedback, kafka=True,
                     help="post remediation status of an alert")
    parser.add_argument("alert_id")
    parser.add_argument("status", choices=STATUSES)
    parser.add_argument("--note")
    parser.add_argument("--recipient", help="your recipient id (or THREATROUTE_RECIPIENT)")
