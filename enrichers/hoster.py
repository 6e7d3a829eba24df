"""Hoster enrichment: stamp each record with the recipient that owns it (`extra.owner`).

The index is built from the `recipients` topic by the stage that binds this function
(`OwnershipIndex.build(recipients)`), and rebuilt when the registry changes.

`extra.owner` is only ever set here: a value that arrived from a feed is discarded, because
the match stage trusts it to route the record, and a feed must not be able to route its
indicators to (or away from) a recipient of its choosing.
"""

from __future__ import annotations

from typing import Any

from threatroute.matchers.ownership import OwnershipIndex


def enrich_owner(record: dict[str, Any], index: OwnershipIndex) -> dict[str, Any]:
    """Return `record` with `extra.owner = {"id", "name", "rule"}`, or without any owner.

    The input is not modified (the top level and `extra` are copied; nothing deeper changes).
    """
    owner = index.owner_of(record)
    extra = dict(record.get("extra") or {})
    extra.pop("owner", None)
    if owner is not None:
        extra["owner"] = owner.to_json()
    enriched = dict(record)
    if extra:
        enriched["extra"] = extra
    else:
        enriched.pop("extra", None)
    return enriched


__all__ = ["enrich_owner"]
