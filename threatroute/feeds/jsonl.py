"""`jsonl`: threatroute's native format, one indicator per line, nested or flat IntelMQ names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from threatroute.contract import decode_object
from threatroute.feeds.base import Context, FeedFormat, Unit

# one JSON object from one line, or InvalidRecord saying why not (size, UTF-8, JSON): the
# contract's decoder, which contributions use too; lone surrogates and NaN are broken JSON
decode_json_object = decode_object


class JsonLines(FeedFormat):
    name = "jsonl"
    description = "threatroute native: one JSON indicator per line (IntelMQ field names)"

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        return [decode_json_object(unit.raw)]
