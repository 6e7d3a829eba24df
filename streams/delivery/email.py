"""E-mail digests: every `interval_seconds`, one message per recipient with the alerts that
arrived on `alerts.<id>` since the last digest, as readable text and a CSV attachment, each
with its alert id and a link to answer it on the gateway's desk page.

Offsets live in the pipeline's group `threatroute-email.<id>` and are committed only after
the SMTP server accepted the message: a failed send leaves the alerts for the next digest
(counted as failed and retried), a crash between send and commit repeats one digest. An
alert message that cannot be read is dead-lettered to `delivery.failed` and counted.
"""

from __future__ import annotations

import csv
import io
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from confluent_kafka import Consumer, Message, TopicPartition

from threatroute import topics
from threatroute.deadletter import dead_letter
from threatroute.errors import InvalidRecord
from threatroute.matchers.formats import CSV_COLUMNS, csv_row
from threatroute.matchers.received import locator, read_alert
from threatroute.registry import Email, Recipient
from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer, encode
from threatroute.streams.kafka.replay import read_to_end
from threatroute.streams.runtime.loop import next_offsets
from threatroute.streams.runtime.metrics import Metrics

log = logging.getLogger(__name__)
SMTP_ATTEMPTS = 3


def compose(recipient: Recipient, to: Sequence[str], sender: str,
            alerts: Sequence[dict], answer_url: str) -> EmailMessage:
    """The digest: a plain-text list and the same alerts as CSV (formats.CSV_COLUMNS)."""
    message = EmailMessage()
    message["Subject"] = f"threatroute: {len(alerts)} new alert{'s' * (len(alerts) != 1)} " \
                         f"for {recipient.name}"
    message["From"], message["To"] = sender, ", ".join(to)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="threatroute")
    lines = [f"{len(alerts)} new alerts for {recipient.name} ({recipient.id}).", ""]
    for number, alert in enumerate(alerts, 1):
        indicator = alert.get("indicator") or {}
        kind = (indicator.get("classification") or {}).get("type", "")
        lines += [f"{number}. {kind}: {locator(alert)}",
                  f"   alert id:  {alert['alert_id']} ({alert.get('notification', '')})",
                  f"   why:       {'; '.join(alert.get('reasons') or ())}",
                  f"   seen:      {alert.get('count', 1)}x, {alert.get('first_seen', '')} .. "
                  f"{alert.get('last_seen', '')}"]
        if answer_url:
            lines.append(f"   answer:    {answer_url}/desk/alerts/{alert['alert_id']}")
        lines.append("")
    lines.append("Answer each alert on the page linked above (acknowledged, remediated, false "
                 "positive, not ours, won't fix), or through the gateway's API." if answer_url
                 else "Answer with `threatroute feedback ALERT_ID STATUS` or the gateway's API.")
    message.set_content("\n".join(lines))
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerow(CSV_COLUMNS)
    for alert in alerts:
        table.write(csv_row(alert))
    message.add_attachment(table.getvalue(), subtype="csv", filename="alerts.csv")
    return message


def send(config: Config, message: EmailMessage) -> None:
    """One message over SMTP, with STARTTLS and authentication when configured."""
    settings = config.delivery
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        if settings.smtp_starttls:
            context = ssl.create_default_context(cafile=settings.smtp_cafile or None)
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password.value)
        smtp.send_message(message)


class DigestWorker:
    """One recipient's digests: a tick every interval reads what is new, mails it, commits."""

    def __init__(self, config: Config, recipient: Recipient, email: Email, metrics: Metrics,
                 stop: threading.Event) -> None:
        self.config, self.recipient, self.email, self.stop = config, recipient, email, stop
        self.name = f"email.{recipient.id}"
        self.to = email.to or recipient.emails
        self.topic = topics.alerts_topic(recipient.id)
        self.group = topics.delivery_group("email", recipient.id)
        self.sent = metrics.delivery_sent.labels("email", recipient.id)
        self.failed = metrics.delivery_failed.labels("email", recipient.id)
        self.retried = metrics.delivery_retried.labels("email", recipient.id)
        self.latency = metrics.delivery_latency.labels("email")
        self.digests = 0

    def run(self) -> None:
        if not self.to:
            log.error("%s: no e-mail address (delivery.email.to or contacts); not sending",
                      self.name)
            return
        consumer = Consumer({**self.config.kafka_settings(), "group.id": self.group,
                             "enable.auto.commit": False, "enable.partition.eof": True,
                             "isolation.level": "read_committed", "client.id": self.name})
        producer = AckedProducer(self.config)
        try:
            while not self.stop.wait(self.email.interval_seconds):
                try:
                    self.tick(consumer, producer)
                except Exception:  # a bad tick costs one interval, never the worker
                    log.exception("%s: digest failed; the alerts wait for the next one",
                                  self.name)
        finally:
            consumer.close()

    def tick(self, consumer: Consumer, producer: AckedProducer) -> int:
        """Mail what arrived since the last commit; returns the number of alerts mailed."""
        metadata = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            return 0
        partitions = [TopicPartition(self.topic, p) for p in metadata.partitions]
        start = consumer.committed(partitions, timeout=10)
        messages = read_to_end(consumer, start)
        if not messages:
            return 0
        alerts = self._readable(messages, producer)
        if alerts:
            self._mail(alerts, messages)
        producer.flush()  # dead letters acknowledged before the offsets move past them
        consumer.commit(offsets=next_offsets(messages), asynchronous=False)
        self.digests += 1
        return len(alerts)

    def _readable(self, messages: list[Message], producer: AckedProducer) -> list[dict]:
        alerts = []
        for message in messages:
            raw = message.value() or b""
            try:
                alerts.append(read_alert(raw, message.key(), message.timestamp()[1]).alert)
            except (InvalidRecord, UnicodeDecodeError) as exc:
                self.failed.inc()
                producer.send(topics.DELIVERY_FAILED, encode(dead_letter(
                    raw, f"{self.name}: unreadable alert: {exc}"[:300], stage=self.name,
                    origin={"topic": self.topic, "partition": message.partition(),
                            "offset": message.offset()})))
        return alerts

    def _mail(self, alerts: list[dict], messages: list[Message]) -> None:
        settings = self.config.delivery
        message = compose(self.recipient, self.to, settings.mail_from, alerts,
                          self.config.gateway.public_url)
        for attempt in range(1, SMTP_ATTEMPTS + 1):
            try:
                send(self.config, message)
                break
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("%s: SMTP attempt %d/%d: %s", self.name, attempt, SMTP_ATTEMPTS,
                            type(exc).__name__)
                if attempt == SMTP_ATTEMPTS:
                    self.failed.inc(len(alerts))
                    raise
                self.retried.inc()
                if self.stop.wait(settings.backoff_seconds * 2 ** (attempt - 1)):
                    raise
        self.sent.inc(len(alerts))
        now = time.time()
        for item in messages:
            stamp = item.timestamp()[1]
            if stamp > 0:
                self.latency.observe(max(0.0, now - stamp / 1000))


