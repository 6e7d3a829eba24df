"""What every route of the gateway shares, and the dependencies that hand it out."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security.http import HTTPAuthorizationCredentials, HTTPBase

from threatroute import topics
from threatroute.matchers.received import locator
from threatroute.outcomes import AlertStatus
from threatroute.streams.commands.tail import feedback_record
from threatroute.streams.config import Config
from threatroute.streams.gateway.auth import Guard
from threatroute.streams.gateway.store import AlertStore, Directory, Sent, Writer
from threatroute.streams.kafka.clients import encode
from threatroute.streams.runtime.metrics import Metrics

OPEN = (None, "acknowledged", "in_progress")  # statuses of an alert still to be dealt with


@dataclass
class Services:
    config: Config
    store: AlertStore
    directory: Directory
    writer: Writer
    guard: Guard
    metrics: Metrics
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # answers written here, shown until the feedback stage has judged them
    pending: dict[str, str] = field(default_factory=dict)
    pending_lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, alert_id: str) -> AlertStatus | None:
        return self.directory.status(alert_id)

    def csrf(self, recipient: str) -> str:
        """A form token only the gateway can make: a page's buttons work, a foreign site's
        form that the browser would send with the desk's Basic credentials does not."""
        return hmac.new(self.csrf_key, recipient.encode(), hashlib.sha256).hexdigest()

    def feedback_topic(self, recipient: str) -> str:
        """`feedback.<id>` on a secure broker; without ACLs (plaintext, a local trial) there are
        no per-recipient feedback topics and every report goes to the shared `feedback` topic
        (streams/runtime/registry.py, recipient_topic_specs), the recipient named from the
        token either way."""
        return topics.feedback_topic(recipient) if self.config.secure else topics.FEEDBACK

    def answer(self, recipient: str, alert_id: str, status: str, note: str | None,
               path: str) -> dict[str, Any]:
        """Write one feedback record (see `feedback_topic`); the feedback stage judges it."""
        record = feedback_record(alert_id, recipient, status, note)
        topic = self.feedback_topic(recipient)
        if topic != topics.FEEDBACK:
            self.writer.ensure(topic)
        self.writer.send(topic, [(alert_id, encode(record))])
        with self.pending_lock:
            self.pending[alert_id] = status
        self.metrics.gateway_answers.labels(path, status).inc()
        return {**record, "topic": topic}

    def summary(self, sent: Sent) -> dict[str, Any]:
        """What the desk page and the alert list show of one alert."""
        alert = sent.received.alert
        indicator = alert.get("indicator") or {}
        accepted = self.status(sent.received.alert_id)
        pending = self.pending.get(sent.received.alert_id)
        return {
            "alert_id": sent.received.alert_id,
            "notification": str(alert.get("notification") or ""),
            "classification": str((indicator.get("classification") or {}).get("type") or ""),
            "what": locator(alert),
            "reasons": [str(r) for r in alert.get("reasons") or ()],
            "first_seen": str(alert.get("first_seen") or ""),
            "last_seen": str(alert.get("last_seen") or ""),
            "count": int(alert.get("count") or 1),
            "tlp": indicator.get("tlp"),
            "feed": (indicator.get("feed") or {}).get("name"),
            "status": accepted.status if accepted else None,
            "pending": pending if pending and (not accepted or accepted.status != pending)
            else None,
        }


basic_auth = HTTPBase(scheme="basic", auto_error=False,
                      description="user: your recipient id; password: your gateway token")
bearer_auth = HTTPBase(scheme="bearer", auto_error=False, description="your gateway token")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


Credentials = HTTPAuthorizationCredentials | None


def current_recipient(request: Request, _basic: Annotated[Credentials, Security(basic_auth)],
                      _bearer: Annotated[Credentials, Security(bearer_auth)]) -> str:
    """The authenticated recipient (the two schemes only document the header in OpenAPI;
    Guard parses it, so both count towards the same limits)."""
    client = request.client.host if request.client else "unknown"
    return services(request).guard.identify(request.headers.get("authorization"), client)


Me = Annotated[str, Depends(current_recipient)]  # the authenticated recipient's id
Svc = Annotated[Services, Depends(services)]
