"""Dead-letter records: the original bytes, why they were refused, and where they came from.

Every stage that refuses input builds one of these and produces it to its dead-letter topic
(`indicators.invalid` for ingest and enrichment). The original bytes travel base64-encoded so
that bad encodings survive the JSON envelope unchanged.
"""

from __future__ import annotations

import base64
from typing import Any

from threatroute import fields

# a giant line's bytes are kept up to 512 KiB (its size is recorded either way): base64 makes
# that 683 KiB, so the dead letter stays under the broker's 1 MB message limit and is never
# itself refused (a 1 MiB cut made a 1.4 MB letter that aborted ingest part-way)
MAX_ORIGINAL = 512 * 1024
MAX_REASON = 1000


def dead_letter(original: bytes, reason: str, *, stage: str, field: str | None = None,
                origin: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the dead-letter record for `original`; `origin` says where it came from."""
    kept = original[:MAX_ORIGINAL]
    record: dict[str, Any] = {
        "reason": reason[:MAX_REASON],
        "stage": stage,
        "time": fields.now(),
        "original": base64.b64encode(kept).decode("ascii"),
        "original_size": len(original),
    }
    if len(kept) < len(original):
        record["original_truncated"] = True
    if field:
        record["field"] = field
    if origin:
        record["origin"] = origin
    return record


def original_bytes(record: dict[str, Any]) -> bytes:
    """The refused input, exactly as it arrived (up to MAX_ORIGINAL bytes)."""
    return base64.b64decode(record["original"])
