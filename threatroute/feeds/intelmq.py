"""`intelmq`: IntelMQ events as dumped by its file output (JSON lines, flat dotted names)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from threatroute.feeds.base import Context, FeedFormat, Unit
from threatroute.feeds.jsonl import decode_json_object


class IntelMQEvents(FeedFormat):
    name = "intelmq"
    description = "IntelMQ events, one JSON object per line (also a JSON list of events)"

    def units(self, stream, context):  # type: ignore[no-untyped-def]
        # IntelMQ's file output writes lines; its test fixtures are a JSON list: take both
        from threatroute.feeds.base import json_document, json_elements, text_lines

        head = stream.peek(1)[:1] if hasattr(stream, "peek") else b""
        if head.lstrip()[:1] == b"[":
            document = json_document(stream)
            yield from json_elements(document if isinstance(document, list) else [document])
        else:
            yield from text_lines(stream)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        event = unit.value if isinstance(unit.value, dict) else decode_json_object(unit.raw)
        return [event]
