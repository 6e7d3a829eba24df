"""`threatroute recipients provision|revoke|forget`: a recipient's access and, at the end, its data.

- provision ID --out FILE: a fresh SCRAM password and exactly the recipient's ACLs, written
  as librdkafka client properties (mode 0600) that `kcat -F FILE` takes as they are.
- revoke ID: its SCRAM credential and every ACL naming it are removed.
- forget ID: a departed recipient is revoked, tombstoned in the registry, its topics deleted,
  and its rows in the ledger, the status table and the match state tombstoned.

The password exists only in FILE: it is never printed, logged or put on a command line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from threatroute import topics
from threatroute.errors import ConfigError
from threatroute.registry import ID_PATTERN
from threatroute.streams.config import Config, credentials_dir
from threatroute.streams.kafka import security
from threatroute.streams.kafka.admin import admin
from threatroute.streams.kafka.clients import DeliveryError, decode
from threatroute.streams.kafka.replay import replay_topic


def _check(config: Config, recipient_id: str) -> None:
    if not ID_PATTERN.fullmatch(recipient_id):
        raise ConfigError(f"{recipient_id[:80]!r} is not a recipient id ({ID_PATTERN.pattern})")
    if not config.secure:
        raise ConfigError("recipient credentials need a secure broker (`threatroute broker start "
                          "--secure`, or SASL_SSL credentials for your cluster): the plaintext "
                          "broker has no users and no ACLs")


def default_file(config: Config, recipient_id: str) -> Path:
    """Where `recipients import` leaves a new recipient's client file for the operator."""
    return credentials_dir(config.state_dir) / f"{recipient_id}.properties"


def credentialed(client: AdminClient) -> set[str]:
    """Users that already have a SCRAM credential."""
    return security.scram_users(client)


def provision(config: Config, recipient_id: str, out: Path,
              client: AdminClient | None = None) -> Path:
    """Create (or reset) the recipient's credential and ACLs; returns the file written."""
    from threatroute.streams.runtime.registry import ensure_recipient_topics

    _check(config, recipient_id)
    if not config.ssl_ca_location:
        raise ConfigError("no CA file for recipients to trust: set ssl.ca.location in the "
                          "pipeline's credentials (or THREATROUTE_SSL_CA)")
    client = client or admin(config)
    ensure_recipient_topics(config, [recipient_id])
    # the file first: if it cannot be written, no credential exists that nobody holds
    password = security.new_password()
    security.write_private(out, security.client_properties(
        config.bootstrap, recipient_id, password, Path(config.ssl_ca_location).resolve(),
        comment=f"threatroute credentials of recipient {recipient_id}: keep secret; "
                f"kcat -F {out.name} -C -t {topics.alerts_topic(recipient_id)}"))
    try:
        security.set_password(client, recipient_id, password)
        security.grant(client, recipient_id)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def revoke(config: Config, recipient_id: str, client: AdminClient | None = None
           ) -> tuple[bool, int]:
    """Remove the credential and ACLs (and a client file import left); returns what was
    removed."""
    _check(config, recipient_id)
    had, acls = security.revoke(client or admin(config), recipient_id)
    default_file(config, recipient_id).unlink(missing_ok=True)
    return had, acls


@dataclass(frozen=True)
class Forgotten:
    credential: bool
    acls: int
    registry: bool
    topics_deleted: list[str]
    tombstones: dict[str, int]   # table topic -> rows removed


def forget(config: Config, recipient_id: str) -> Forgotten:
    """Delete what the pipeline holds about a departed recipient."""
    from threatroute.streams.runtime.registry import TOPIC as REGISTRY
    from threatroute.streams.runtime.registry import read_registry

    if not ID_PATTERN.fullmatch(recipient_id):
        raise ConfigError(f"{recipient_id[:80]!r} is not a recipient id ({ID_PATTERN.pattern})")
    client = admin(config)
    had, acls = revoke(config, recipient_id, client) if config.secure else (False, 0)
    producer = _Tombstones(config)
    in_registry = recipient_id in read_registry(config)
    if in_registry:  # routing stops at once, before its state is removed
        producer.send(REGISTRY, None, recipient_id)
        producer.flush()
    names = [topics.alerts_topic(recipient_id), topics.feedback_topic(recipient_id),
             topics.contributions_topic(recipient_id)]
    existing = client.list_topics(timeout=30).topics
    doomed = [n for n in names if n in existing]
    for future in (client.delete_topics(doomed, operation_timeout=30).values()
                   if doomed else []):
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
    # the ledger names the recipient in each alert; status rows share the alert ids
    alert_ids: set[str] = set()
    removed: Counter[str] = Counter()
    for partition, key, value in _rows(config, topics.LEDGER):
        if isinstance(value, dict) and value.get("recipient") == recipient_id:
            alert_ids.add(key)
            producer.send(topics.LEDGER, partition, key)
            removed[topics.LEDGER] += 1
    for partition, key, _ in _rows(config, topics.STATUS):
        if key in alert_ids:
            producer.send(topics.STATUS, partition, key)
            removed[topics.STATUS] += 1
    for table in (topics.MATCH_STATE, topics.MATCH_VERDICTS):
        for partition, key, _ in _rows(config, table):
            if key.startswith(f"{recipient_id}|"):  # key: "<recipient>|<indicator key>"
                producer.send(table, partition, key)
                removed[table] += 1
    # watched alerts (key: alert id) and ownership corrections name the recipient in the value
    for table in (topics.MATCH_WATCH, topics.CORRECTIONS):
        for partition, key, value in _rows(config, table):
            if isinstance(value, dict) and value.get("recipient") == recipient_id:
                producer.send(table, partition, key)
                removed[table] += 1
    producer.flush()
    return Forgotten(had, acls, in_registry, doomed, dict(removed))


def _rows(config: Config, topic: str, timeout: float = 60.0
          ) -> list[tuple[int, str, object]]:
    """(partition, key, decoded value or None) of every live record of a compacted table."""
    rows: dict[tuple[int, str], object] = {}

    def apply(message: Message) -> None:
        where = (message.partition() or 0, (message.key() or b"").decode(errors="replace"))
        if message.value() is None:
            rows.pop(where, None)
            return
        try:
            rows[where] = decode(message.value())
        except ValueError:
            rows[where] = {}  # an unreadable row is still a row of this key

    replay_topic(config, topic, apply, timeout)
    return [(p, k, v) for (p, k), v in rows.items()]


class _Tombstones:
    """Null values to exact partitions (a table row lives where it was written), confirmed."""

    def __init__(self, config: Config) -> None:
        self._producer = Producer({**config.kafka_settings(), "enable.idempotence": True})
        self.failed: list[str] = []

    def _done(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err.str()}")

    def send(self, topic: str, partition: int | None, key: str) -> None:
        if partition is None:
            self._producer.produce(topic, None, key, on_delivery=self._done)
        else:
            self._producer.produce(topic, None, key, partition=partition, on_delivery=self._done)
        self._producer.poll(0)

    def flush(self) -> None:
        if self._producer.flush(60) or self.failed:
            raise DeliveryError(f"tombstones not acknowledged: {self.failed[:1]}")
