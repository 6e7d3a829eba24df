"""`jsonl`: threatroute's native format, one indicator per line, nested or flat IntelMQ names."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from threatroute.errors import InvalidRecord
from threatroute.feeds.base import Context, FeedFormat, Unit, decode


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """One JSON object from one line, or InvalidRecord saying why not."""
    try:
        value = json.loads(decode(raw))
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"broken JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(value).__name__}")
    return value


class JsonLines(FeedFormat):
    name = "jsonl"
    description = "threatroute native: one JSON indicator per line (IntelMQ field names)"

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        return [decode_json_object(unit.raw)]
