"""A recipient's side of threatroute, in about sixty lines: read your alert topic, open or
update a ticket per alert, and acknowledge it. Adapt `open_ticket` to your ticketing system.

    python ticketing_consumer.py examplehost.properties

The properties file is the one `threatroute recipients provision` gave you (the same file
`kcat -F` takes): bootstrap, TLS, your SCRAM user and password. The broker lets you read
`alerts.<you>`, use consumer groups named `<you>.*`, and write `feedback.<you>` (who sent a
report is known from that topic) and `contributions.<you>`; nothing else. Against a plaintext
broker (local use), a file with just `bootstrap.servers=...` and `sasl.username=<you>` works:
reports then go to the shared `feedback` topic (plaintext has no per-recipient topics).

Offsets are committed only after the ticket exists, so a crash re-delivers the alert instead
of losing it (make `open_ticket` idempotent on alert_id).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer


def read_properties(path: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in open(path).read().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def open_ticket(alert: dict) -> None:
    indicator = alert["indicator"]
    where = indicator["source"].get("url") or indicator["source"].get("ip")
    print(f"[ticket {alert['alert_id']}] {indicator['classification']['type']} at {where}: "
          f"seen {alert['count']}x, {'; '.join(alert['reasons'])}")


def main(properties: str) -> None:
    settings = read_properties(properties)
    me = settings["sasl.username"]
    secure = settings.get("security.protocol", "").upper() == "SASL_SSL"
    if not secure:  # a plaintext file: librdkafka must not see the SASL user
        settings.pop("sasl.username", None)
    feedback_topic = f"feedback.{me}" if secure else "feedback"
    consumer = Consumer({**settings, "group.id": f"{me}.tickets", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    producer = Producer(settings)
    consumer.subscribe([f"alerts.{me}"])
    try:
        while True:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            alert = json.loads(message.value())
            open_ticket(alert)
            if alert["notification"] in ("new", "recurrence"):
                feedback = {"alert_id": alert["alert_id"], "recipient": me,
                            "status": "acknowledged",
                            "time": datetime.now(UTC).replace(microsecond=0).isoformat()}
                # key = alert id: the feedback stage finds the alert on the same partition
                producer.produce(feedback_topic, json.dumps(feedback).encode(),
                                 alert["alert_id"])
                producer.flush(10)
            consumer.commit(message, asynchronous=False)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main(sys.argv[1])
