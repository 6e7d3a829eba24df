"""`threatroute deliver`: one worker per recipient and push path, following the registry.

Webhook workers run the one consume loop with a `WebhookStage`; digest workers tick on their
interval. When a recipient's delivery settings change (or it leaves the registry) its
workers stop after their current batch and, if still configured, start again with the new
settings; their groups' committed offsets carry over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer

from threatroute import topics
from threatroute.errors import ConfigError
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.delivery.email import DigestWorker
from threatroute.streams.delivery.webhook import Stopping, WebhookStage, read_secret
from threatroute.streams.kafka.admin import admin, ensure_topics
from threatroute.streams.kafka.clients import AckedProducer, consumer_settings
from threatroute.streams.kafka.transactions import AfterAcknowledgement
from threatroute.streams.runtime.loop import DeadLetters, run_stage
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.registry import registry_view

log = logging.getLogger(__name__)
WEBHOOK_BATCH = 50  # alerts a crash may re-send at most
RESTART_SECONDS = 30.0  # a worker that died (a bad secret file, a broker error) starts again


@dataclass
class Worker:
    settings: object  # what it was started with: a change restarts it
    stop: threading.Event
    thread: threading.Thread


def webhook_worker(config: Config, recipient: Recipient, metrics: Metrics,
                   stop: threading.Event) -> Callable[[], None]:
    hook = recipient.delivery.webhook if recipient.delivery else None
    assert hook is not None

    def run() -> None:
        try:
            secret = read_secret(hook)
        except ConfigError as exc:  # names the file or variable, never the secret
            log.error("webhook.%s not started: %s", recipient.id, exc)
            return
        stage = WebhookStage(recipient.id, hook, secret, config.delivery, metrics, stop)
        consumer = Consumer(consumer_settings(config, stage.group))
        try:
            # interval 0: every batch is committed once posted, so a crash re-sends at most
            # WEBHOOK_BATCH alerts (a commit spanning the loop's COMMIT_INTERVAL held two
            # batches, since the interval starts after the first batch's posts: up to 99)
            run_stage(stage, consumer, AfterAcknowledgement(AckedProducer(config),
                                                       lambda: AckedProducer(config),
                                                       interval=0.0),
                      DeadLetters(stage.dead_letter_topic, stage.name), stop,
                      batch_size=WEBHOOK_BATCH, metrics=metrics.stage(stage.name))
        except Stopping:
            pass  # the batch in flight is re-read by the next run
        except Exception:  # restarted by the next reconcile; nothing was committed past it
            log.exception("webhook.%s stopped", recipient.id)
        finally:
            stage.close()

    return run


def wanted(recipients: Mapping[str, Recipient]) -> dict[tuple[str, str], object]:
    """(path, recipient id) -> the settings its worker runs with."""
    desired: dict[tuple[str, str], object] = {}
    for rid, recipient in recipients.items():
        delivery = recipient.delivery
        if delivery and delivery.webhook:
            desired[("webhook", rid)] = delivery.webhook
        if delivery and delivery.email:
            desired[("email", rid)] = (delivery.email, recipient.name, recipient.contacts)
    return desired


class Deliverer:
    def __init__(self, config: Config, metrics: Metrics, stop: threading.Event) -> None:
        self.config, self.metrics, self.stop = config, metrics, stop
        self.workers: dict[tuple[str, str], Worker] = {}
        self.lock = threading.Lock()

    def reconcile(self, recipients: Mapping[str, Recipient]) -> None:
        desired = wanted(recipients)
        with self.lock:
            for key, worker in list(self.workers.items()):
                if desired.get(key) != worker.settings or not worker.thread.is_alive():
                    worker.stop.set()
                    worker.thread.join(timeout=60)
                    del self.workers[key]
            for key, settings in desired.items():
                if key not in self.workers and not self.stop.is_set():
                    self.workers[key] = self._start(key, recipients[key[1]], settings)

    def _start(self, key: tuple[str, str], recipient: Recipient, settings: object) -> Worker:
        path, rid = key
        stop = threading.Event()
        if path == "webhook":
            target = webhook_worker(self.config, recipient, self.metrics, stop)
        else:
            assert recipient.delivery is not None and recipient.delivery.email is not None
            target = DigestWorker(self.config, recipient, recipient.delivery.email,
                                  self.metrics, stop).run
        thread = threading.Thread(target=target, name=f"{path}.{rid}", daemon=True)
        thread.start()
        log.info("%s delivery for %s started", path, rid)
        return Worker(settings, stop, thread)

    def close(self) -> None:
        with self.lock:
            for worker in self.workers.values():
                worker.stop.set()
            for worker in self.workers.values():
                worker.thread.join(timeout=60)
            self.workers.clear()


def run_delivery(config: Config, stop: threading.Event, metrics: Metrics | None = None) -> None:
    """Deliver until `stop` is set."""
    metrics = metrics or Metrics()
    ensure_topics(admin(config), [config.topic(topics.DELIVERY_FAILED)])
    deliverer = Deliverer(config, metrics, stop)
    latest: dict[str, Mapping[str, Recipient]] = {}
    changed = threading.Event()

    def on_change(recipients: Mapping[str, Recipient]) -> None:
        latest["registry"] = recipients
        changed.set()

    view = registry_view(config, on_change).start()
    metrics.serve(config.metrics_port, config.metrics_address)
    try:
        last = time.monotonic()
        while not stop.is_set():
            # reconcile here, not on the view's thread: stopping a worker joins it; on a
            # change, or every RESTART_SECONDS; looking at `stop` every second (SIGTERM)
            if not changed.wait(1.0) and time.monotonic() - last < RESTART_SECONDS:
                continue
            changed.clear()
            last = time.monotonic()
            if not stop.is_set():
                deliverer.reconcile(latest.get("registry", {}))
    finally:
        view.stop()
        deliverer.close()
