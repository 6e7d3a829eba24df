"""Logging for the CLI and the workers: text or JSON lines, rate-limited, librdkafka included.

librdkafka's own log lines reach Python logging through confluent-kafka's `logger` setting
(`Config.kafka_settings()` passes `LIBRDKAFKA`). An unreachable broker makes librdkafka log a
connection failure every few milliseconds; those lines are demoted to debug by
`LibrdkafkaFilter` because whoever owns the client reports the condition in its own words (the
CLI's one-line error, the consume loop's warning), and `RateLimit` keeps any line that repeats
to one per interval, with a count of what it held back. A line logged with
`extra=NOT_RATE_LIMITED` always passes: one that ends what an earlier line said (a stage's
"Kafka answers again" after its "Kafka failing"), which must never be the one held back.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

LIBRDKAFKA = "threatroute.librdkafka"
# librdkafka facilities and texts that mean "cannot reach a broker now; retrying"
_TRANSPORT = re.compile(r"Connect to .* failed|brokers are down|Connection refused|"
                        r"Failed to resolve|Disconnected|timed out|Receive failed|Send failed")
_DIGITS = re.compile(r"\d+")
NOT_RATE_LIMITED = {"rate_limited": False}  # logging `extra`: RateLimit lets it through
_WHERE = re.compile(r"^\S+/\S+: |\s*\(after \d+ms in state \w+\)$")  # broker name, timing


class LibrdkafkaFilter(logging.Filter):
    """Demotes librdkafka's transport failures to debug and remembers the latest one."""

    def __init__(self) -> None:
        super().__init__()
        self.last_transport_failure = ""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(args[2]) if len(args) == 3 else record.getMessage()
        if record.levelno >= logging.WARNING and _TRANSPORT.search(text):
            # "[thrd:...]: 127.0.0.1:1/bootstrap: Connect to ... failed: ..." -> the reason
            self.last_transport_failure = _WHERE.sub("", text.rsplit("]: ", 1)[-1])
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


librdkafka_filter = LibrdkafkaFilter()


def librdkafka_logger() -> logging.Logger:
    """The logger confluent-kafka clients log through (set as their `logger`)."""
    logger = logging.getLogger(LIBRDKAFKA)
    if librdkafka_filter not in logger.filters:
        logger.addFilter(librdkafka_filter)
    return logger


class RateLimit(logging.Filter):
    """At most one record per `interval` seconds for lines that differ only in numbers."""

    def __init__(self, interval: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.interval, self.clock = interval, clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "rate_limited", True):
            return True
        key = (record.name, record.levelno, _DIGITS.sub("#", record.getMessage()))
        now = self.clock()
        last, held = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 10_000:  # many distinct lines: forget, rather than grow
            self._seen.clear()
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this held back)"
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every log record (ours and librdkafka's) to `stream` (stderr) in `fmt`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(level.upper())
    handler.addFilter(RateLimit())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    librdkafka_logger()
