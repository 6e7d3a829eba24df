"""The two hops of an alert: match -> `match.routed` -> `alerts.<recipient>`. Pure, no Kafka.

The match stage writes every alert to the one internal topic `match.routed`, keyed by
recipient id, so all alerts of a recipient share a partition and keep their order; the alert's
own record key (its indicator key) rides in a header. The publish stage moves each record to
the recipient's topic with that key restored. Why two hops: librdkafka sends one partition per
ProduceRequest (librdkafka#1700), so one transactional producer writing to thousands of
one-partition topics is capped near 1k records/s; the publish workers split `match.routed`'s
partitions, and so the recipients' topics, between their producers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from threatroute import topics
from threatroute.registry import ID_PATTERN

Headers = tuple[tuple[str, bytes], ...]


def routed(recipient_id: str, alert_key: str | bytes | None, headers: Headers = ()
           ) -> tuple[bytes, Headers]:
    """The key and headers of an alert for `recipient_id` on `match.routed`: the alert's own
    key goes into ALERT_KEY_HEADER (an alert without a key has none, and is refused there)."""
    if alert_key is None:
        return recipient_id.encode(), headers
    key = alert_key.encode() if isinstance(alert_key, str) else alert_key
    return recipient_id.encode(), (*headers, (topics.ALERT_KEY_HEADER, key))


@dataclass(frozen=True, slots=True)
class Publication:
    """Where a `match.routed` record goes: the recipient's topic, its own key, the headers it
    had on match.routed without the carried key."""

    recipient: str
    topic: str
    key: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class Unpublishable:
    """Why a `match.routed` record cannot be published (it is dead-lettered with this)."""

    reason: str
    field: str | None = None


def publication(key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes | None]]) -> Publication | Unpublishable:
    """The recipient's topic, key and headers for one `match.routed` record, or why not.
    The value is published as it is; an empty one is no alert."""
    if not value:
        return Unpublishable("match.routed record without an alert (empty value)")
    if not key:
        return Unpublishable("match.routed record without a recipient key", "key")
    try:
        recipient = key.decode("ascii")
    except UnicodeDecodeError:
        return Unpublishable("recipient key is not ASCII", "key")
    topic = topics.alerts_topic(recipient)
    # a recipient id is a topic name's safe part; and never one of the pipeline's own
    # `alerts.` topics (alerts.ledger, alerts.status)
    if not ID_PATTERN.fullmatch(recipient) or topics.recipient_of(
            topic, topics.ALERTS_PREFIX) != recipient:
        return Unpublishable(f"{recipient[:80]!r} is not a recipient id "
                             f"({ID_PATTERN.pattern}, not a pipeline topic)", "key")
    carried = [value for name, value in headers if name == topics.ALERT_KEY_HEADER]
    if len(carried) != 1:
        return Unpublishable(f"expected one {topics.ALERT_KEY_HEADER} header, found "
                             f"{len(carried)}", topics.ALERT_KEY_HEADER)
    alert_key = carried[0]
    if not alert_key:
        return Unpublishable(f"empty {topics.ALERT_KEY_HEADER} header",
                             topics.ALERT_KEY_HEADER)
    rest = tuple((name, value or b"") for name, value in headers
                 if name != topics.ALERT_KEY_HEADER)
    return Publication(recipient, topic, alert_key, rest)
