"""`intelmq`: IntelMQ events, as its file output writes them (JSON lines, flat dotted names)
or as a JSON list document (IntelMQ's test fixtures, API dumps).

The layout is told from the first non-blank byte: `[` is a list document, anything else is
JSON lines. Only the leading blank lines are read ahead, so nothing depends on `peek()`.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute.feeds.base import (
    Context,
    FeedFormat,
    Unit,
    json_document,
    json_elements,
    text_lines,
)
from threatroute.feeds.jsonl import decode_json_object

_BLANK = b" \t\r\n\xef\xbb\xbf"  # whitespace and a UTF-8 byte order mark


class IntelMQEvents(FeedFormat):
    name = "intelmq"
    description = "IntelMQ events, one JSON object per line (also a JSON list of events)"

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        leading: list[bytes] = []
        for line in stream:
            leading.append(line)
            if line.strip(_BLANK):
                break
        if leading and leading[-1].lstrip(_BLANK).startswith(b"["):
            document = json_document(io.BytesIO(b"".join(leading) + stream.read()))
            yield from json_elements(document)  # starts with "[", so a list when it decodes
        else:
            # line numbers count the blank lines read ahead, so they match the file
            yield from text_lines(itertools.chain(leading, stream))

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        if unit.value is not None:  # an element of a list document, already decoded
            return [unit.value]  # normalise_indicator refuses a non-object with a reason
        return [decode_json_object(unit.raw)]
