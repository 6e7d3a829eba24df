"""A recipient's stream processor with faust-streaming: alerts as a typed record, each new one
"ticketed" and acknowledged on the recipient's own feedback topic.

    THREATROUTE_BOOTSTRAP=broker:9092 THREATROUTE_RECIPIENT=examplehost \\
        python faust_consumer.py worker -l info

The app id is the consumer group: `<id>.`-prefixed, the groups a recipient's credentials may
use (README, "Security"). With TLS and SCRAM, pass faust a `broker_credentials` built from the
file `threatroute recipients provision` wrote. Needs faust-streaming >= 0.15.2 and
aiokafka[lz4] >= 0.13 (earlier ones cannot talk to Kafka 4; the pipeline compresses with lz4).
A crash re-delivers the alerts of the last uncommitted batch: make `open_ticket` idempotent
on alert_id.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import faust


class Alert(faust.Record, serializer="json"):
    """One alert on `alerts.<id>` (deploy/schemas/alert.schema.json, JSON format)."""

    alert_id: str
    recipient: str
    indicator: dict[str, Any]
    reasons: list[str]
    first_seen: str
    last_seen: str
    count: int
    indicator_key: str = ""
    notification: str = "new"
    recurrence: bool = False
    sent_at: str = ""


class Feedback(faust.Record, serializer="json"):
    """A status report on `feedback.<id>` (deploy/schemas/feedback.schema.json)."""

    alert_id: str
    recipient: str
    status: str
    time: str
    note: str = ""


def open_ticket(alert: Alert) -> str:
    source = alert.indicator.get("source", {})
    where = source.get("url") or source.get("fqdn") or source.get("ip")
    kind = alert.indicator.get("classification", {}).get("type")
    print(f"[ticket {alert.alert_id}] {kind} at {where}: seen {alert.count}x, "
          f"{'; '.join(alert.reasons)}", flush=True)
    return f"TICKET-{alert.alert_id[:8]}"


def make_app(recipient: str, bootstrap: str) -> faust.App:
    app = faust.App(f"{recipient}.faust-tickets", broker=f"kafka://{bootstrap}",
                    store="memory://", web_enabled=False, topic_disable_leader=True)
    alerts = app.topic(f"alerts.{recipient}", value_type=Alert, internal=False)
    feedback = app.topic(f"feedback.{recipient}", key_type=str, value_type=Feedback,
                         internal=False)

    @app.agent(alerts)
    async def ticket(stream: faust.Stream[Alert]) -> None:
        async for alert in stream:
            ticket_id = open_ticket(alert)
            if alert.notification in ("new", "recurrence"):
                now = datetime.now(UTC).replace(microsecond=0).isoformat()
                # key = alert id: the feedback stage finds the alert on the same partition
                await feedback.send(key=alert.alert_id, value=Feedback(
                    alert.alert_id, recipient, "acknowledged", now, f"ticket {ticket_id}"))

    return app


if __name__ == "__main__":  # nothing runs at import time: the test builds its own app
    make_app(os.environ["THREATROUTE_RECIPIENT"],
             os.environ.get("THREATROUTE_BOOTSTRAP", "127.0.0.1:9092")).main()
