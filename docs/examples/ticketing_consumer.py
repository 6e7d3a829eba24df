"""A recipient's side of threatroute, in about fifty lines: read your alert topic, open or
update a ticket per alert, and acknowledge it. Adapt `open_ticket` to your ticketing system.

    THREATROUTE_BOOTSTRAP=broker:9092 python ticketing_consumer.py examplehost

Run it with your own consumer group: offsets are committed only after the ticket exists, so a
crash re-delivers the alert instead of losing it (make `open_ticket` idempotent on alert_id).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer


def open_ticket(alert: dict) -> None:
    indicator = alert["indicator"]
    where = indicator["source"].get("url") or indicator["source"].get("ip")
    print(f"[ticket {alert['alert_id']}] {indicator['classification']['type']} at {where}: "
          f"seen {alert['count']}x, {'; '.join(alert['reasons'])}")


def main(recipient: str) -> None:
    bootstrap = os.environ.get("THREATROUTE_BOOTSTRAP", "127.0.0.1:9092")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{recipient}-tickets",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([f"alerts.{recipient}"])
    try:
        while True:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            alert = json.loads(message.value())
            open_ticket(alert)
            if alert["notification"] in ("new", "recurrence"):
                feedback = {"alert_id": alert["alert_id"], "recipient": recipient,
                            "status": "acknowledged",
                            "time": datetime.now(UTC).replace(microsecond=0).isoformat()}
                # key = alert id: the feedback stage finds the alert on the same partition
                producer.produce("feedback", json.dumps(feedback).encode(), alert["alert_id"])
                producer.flush(10)
            consumer.commit(message, asynchronous=False)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main(sys.argv[1])
