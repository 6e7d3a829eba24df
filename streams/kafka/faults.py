"""Kafka's exceptions as the loop's `Fault`s (streams/runtime/faults.py decides on them)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from threatroute.streams.kafka.clients import DeliveryError
from threatroute.streams.runtime.faults import Fault


def fault_of_error(error: KafkaError) -> Fault:
    return Fault(error.name(), error.str(), error.retriable(), error.fatal(),
                 error.txn_requires_abort())


def fault_of(exc: BaseException) -> Fault | None:
    """The Fault an exception from Kafka work means; None: not a Kafka failure (a bug, which
    the loop lets through)."""
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError):
            return fault_of_error(error)
        return Fault("_UNKNOWN", str(exc), retriable=True)
    if isinstance(exc, DeliveryError):
        if exc.error is not None:
            found = fault_of_error(exc.error)
            return Fault(found.name, str(exc), found.retriable, found.fatal, found.abortable)
        return Fault("_MSG_TIMED_OUT", str(exc), retriable=True)
    if isinstance(exc, TimeoutError):  # reading a table or view to its end took too long
        return Fault("_TIMED_OUT", str(exc) or "timed out", retriable=True)
    return None
