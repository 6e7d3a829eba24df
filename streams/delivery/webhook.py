"""Webhook delivery: POST each alert of `alerts.<id>` to the recipient's URL, signed.

A stage of the one consume loop (streams/runtime/loop.py) in its own group per recipient
(`threatroute-webhook.<id>`), so each recipient's offsets move only as its receiver accepts.
Each alert is tried `max_attempts` times with exponential backoff; then it is dead-lettered
to `delivery.failed` (the original message bytes and the last reason) and counted, and
delivery goes on with the next alert. The loop commits only after those dead letters are
acknowledged, so an alert is either accepted by the receiver or dead-lettered, never lost.

Signature: `X-Threatroute-Signature: sha256=<hex>` = HMAC-SHA256(secret, body), like
GitHub's `X-Hub-Signature-256`; a receiver recomputes it over the raw body and compares in
constant time. Delivery is at-least-once: after a crash a receiver may get an alert again
(same `X-Threatroute-Alert-Id` and body), and should treat a repeat as a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from threatroute import topics
from threatroute.errors import ConfigError, InvalidRecord, ThreatrouteError
from threatroute.matchers.formats import render
from threatroute.matchers.received import Received, read_alert
from threatroute.registry import Webhook
from threatroute.streams.config import DeliverySettings
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.step import BaseStage, Input, Step

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Threatroute-Signature"
MEDIA = {"json": "application/json", "stix": "application/stix+json;version=2.1"}


class Stopping(ThreatrouteError):
    """Shut down mid-batch: nothing of the batch is committed, it is re-read next time."""


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """What a receiver does (the tests' receiver uses this)."""
    return hmac.compare_digest(sign(secret, body), signature)


def read_secret(hook: Webhook) -> bytes:
    """The signing secret from the file or environment variable the registry names."""
    if hook.secret_file:
        try:
            secret = Path(hook.secret_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"webhook secret_file {hook.secret_file}: {exc.strerror}") from None
    else:
        secret = os.environ.get(hook.secret_env or "", "").strip()
        if not secret:
            raise ConfigError(f"webhook secret_env {hook.secret_env} is not set")
    return secret.encode()


def body_of(received: Received, raw: bytes, fmt: str) -> bytes:
    """The alert in the webhook's format; a STIX alert already on the topic goes as it is."""
    if fmt == "stix" and raw.lstrip().startswith(b"{") and b'"bundle"' in raw[:200]:
        return raw
    return render(received.alert, fmt)


class WebhookStage(BaseStage):
    raw_input = True  # alerts.<id> carries JSON, STIX or CSV: decoded here, per format
    dead_letter_topic = topics.DELIVERY_FAILED

    def __init__(self, recipient: str, hook: Webhook, secret: bytes,
                 settings: DeliverySettings, metrics: Metrics, stop: threading.Event,
                 client: httpx.Client | None = None,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.recipient, self.hook, self._secret = recipient, hook, secret
        self.name = f"webhook.{recipient}"
        self.source = topics.alerts_topic(recipient)
        self.subscription = [self.source]
        self.group = topics.delivery_group("webhook", recipient)
        self.settings, self.stop = settings, stop
        self._client = client or httpx.Client(timeout=hook.timeout, follow_redirects=False)
        self._sleep = sleep or stop.wait  # returns True when stopping
        self.sent = metrics.delivery_sent.labels("webhook", recipient)
        self.failed = metrics.delivery_failed.labels("webhook", recipient)
        self.retried = metrics.delivery_retried.labels("webhook", recipient)
        self.latency = metrics.delivery_latency.labels("webhook")

    def process(self, inputs: list[Input], step: Step) -> None:
        for item in inputs:
            try:
                received = read_alert(item.raw, item.key, item.timestamp_ms)
            except (InvalidRecord, UnicodeDecodeError) as exc:
                self.failed.inc()
                step.refuse(item.raw, f"{self.name}: unreadable alert: {exc}", origin=item)
                continue
            reason = self._deliver(received, body_of(received, item.raw, self.hook.format))
            if reason is None:
                self.sent.inc()
                if item.timestamp_ms > 0:
                    self.latency.observe(max(0.0, time.time() - item.timestamp_ms / 1000))
            else:
                self.failed.inc()
                step.refuse(item.raw, reason, origin=item)

    def _deliver(self, received: Received, body: bytes) -> str | None:
        """POST until accepted (None) or out of attempts (the last failure, as a reason)."""
        headers = {"Content-Type": MEDIA[self.hook.format], "User-Agent": "threatroute",
                   SIGNATURE_HEADER: sign(self._secret, body),
                   "X-Threatroute-Alert-Id": received.alert_id,
                   "X-Threatroute-Recipient": self.recipient}
        failure = ""
        for attempt in range(1, self.hook.max_attempts + 1):
            if attempt > 1:
                self.retried.inc()
                delay = min(self.settings.backoff_seconds * 2 ** (attempt - 2),
                            self.settings.backoff_max_seconds)
                if self._sleep(delay):
                    raise Stopping(self.name)
            try:
                response = self._client.post(self.hook.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}"  # the message may echo the URL's query
            else:
                if 200 <= response.status_code < 300:
                    return None
                failure = f"HTTP {response.status_code}"
            log.warning("%s: alert %s attempt %d/%d failed: %s", self.name, received.alert_id,
                        attempt, self.hook.max_attempts, failure)
        return (f"{self.name}: {failure} on each of {self.hook.max_attempts} attempts "
                f"(alert {received.alert_id})")

    def close(self) -> None:
        self._client.close()
