"""TAXII 2.1 over a recipient's alerts: the objects, their filters and pages. Pure.

One collection per recipient; its objects are the STIX objects of the alerts on
`alerts.<id>` (matchers/received.py). `date_added` is the alert message's Kafka timestamp
(milliseconds) plus a microsecond count of the objects already added in that millisecond,
so every object of a collection has its own `date_added` and a client resuming with
`added_after` never skips an object that shares a millisecond with the last one it got (the
match stage writes a batch of alerts within one millisecond). Filtering follows the TAXII 2.1
specification (section 3.4) the way OASIS's reference server (medallion) applies it: match[id],
match[type], match[spec_version], added_after, then match[version] (default `last`), then
sorted by date_added and cut into pages of `limit`, with an opaque `next`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TAXII_MEDIA = "application/taxii+json;version=2.1"
STIX_MEDIA = "application/stix+json;version=2.1"
_COLLECTIONS = uuid.UUID("0c6a4d43-3d61-4e5e-9b3b-2a1bd1d8e6a7")  # collection ids per recipient
_NEXT = re.compile(r"(\d{1,20})\.(\d{1,10})\.(\d{1,20})\.(\d{1,6})")


class QueryError(ValueError):
    """A request parameter TAXII cannot honour (answered with 400)."""


def collection_id(recipient: str) -> str:
    return str(uuid.uuid5(_COLLECTIONS, recipient))


def timestamp(microseconds: int) -> str:
    """TAXII/STIX timestamp with microseconds, UTC, `Z`."""
    moment = datetime.fromtimestamp(microseconds // 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{microseconds % 1_000_000:06d}Z"


def parse_timestamp(text: str) -> int:
    """An RFC 3339 timestamp as microseconds since the epoch."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"not an RFC 3339 timestamp: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class TaxiiObject:
    """One STIX object of a collection; `order` sorts it (date_added first) and pages on it."""

    order: tuple[int, int, int, int]  # (date_added in µs, partition, offset, index in alert)
    obj: Mapping[str, Any]

    @property
    def added(self) -> int:
        return self.order[0]

    @property
    def version(self) -> str:
        return str(self.obj.get("modified") or self.obj.get("created") or "")


def objects_of(stix: Sequence[Mapping[str, Any]], first_added: int, partition: int,
               offset: int) -> list[TaxiiObject]:
    """The objects of one alert message, added at `first_added`, `first_added` + 1 µs..."""
    return [TaxiiObject((first_added + index, partition, offset, index), obj)
            for index, obj in enumerate(stix)]


@dataclass(frozen=True)
class Query:
    added_after: int | None = None
    limit: int = 100
    after: tuple[int, int, int, int] | None = None  # from `next`
    ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    spec_versions: frozenset[str] = frozenset()
    versions: tuple[str, ...] = ("last",)


def parse_query(params: Mapping[str, str], max_page: int, default_limit: int = 100) -> Query:
    """Query parameters of a Get Objects / Get Manifest / Get Versions request."""
    def listed(name: str) -> frozenset[str]:
        return frozenset(v.strip() for v in params.get(name, "").split(",") if v.strip())

    limit = default_limit
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError:
            raise QueryError("limit is not an integer") from None
        if limit < 0:
            raise QueryError("limit must not be negative")
    limit = min(limit or default_limit, max_page)  # 0: the server's default
    after = None
    if params.get("next"):
        found = _NEXT.fullmatch(params["next"])
        if not found:
            raise QueryError("next is not a token this server issued")
        after = (int(found[1]), int(found[2]), int(found[3]), int(found[4]))
    versions = tuple(v.strip() for v in params.get("match[version]", "last").split(",")
                     if v.strip()) or ("last",)
    for version in versions:
        if version not in ("last", "first", "all"):
            parse_timestamp(version)
    return Query(
        added_after=parse_timestamp(params["added_after"]) if params.get("added_after") else None,
        limit=limit, after=after, ids=listed("match[id]"), types=listed("match[type]"),
        spec_versions=listed("match[spec_version]"), versions=versions)


def _by_version(objects: list[TaxiiObject], versions: tuple[str, ...]) -> list[TaxiiObject]:
    if "all" in versions:
        return objects
    by_id: dict[str, list[TaxiiObject]] = {}
    for item in objects:
        by_id.setdefault(str(item.obj.get("id")), []).append(item)
    exact = {parse_timestamp(v) for v in versions if v not in ("last", "first")}
    kept: list[TaxiiObject] = []
    for group in by_id.values():
        ordered = sorted(group, key=lambda o: (parse_timestamp(o.version) if o.version else 0,
                                               o.order))
        chosen: list[TaxiiObject] = []
        if "first" in versions:
            chosen.append(ordered[0])
        if "last" in versions:
            chosen.append(ordered[-1])
        chosen += [o for o in ordered if o.version and parse_timestamp(o.version) in exact]
        kept += {id(o): o for o in chosen}.values()
    return kept


@dataclass(frozen=True)
class Page:
    items: list[TaxiiObject]
    more: bool
    next: str | None

    def headers(self) -> dict[str, str]:
        if not self.items:
            return {}
        return {"X-TAXII-Date-Added-First": timestamp(self.items[0].added),
                "X-TAXII-Date-Added-Last": timestamp(self.items[-1].added)}


def select(objects: Iterable[TaxiiObject], query: Query) -> Page:
    """The page of `objects` the query asks for."""
    # an object version was added when it was first sent: de-duplicate before filtering
    found = [o for o in _unique(list(objects))
             if (not query.ids or o.obj.get("id") in query.ids)
             and (not query.types or o.obj.get("type") in query.types)
             and (not query.spec_versions or o.obj.get("spec_version", "2.1")
                  in query.spec_versions)
             and (query.added_after is None or o.added > query.added_after)]
    found = sorted(_by_version(found, query.versions), key=lambda o: o.order)
    if query.after is not None:
        found = [o for o in found if o.order > query.after]
    page, more = found[:query.limit], len(found) > query.limit
    token = ".".join(map(str, page[-1].order)) if more and page else None
    return Page(page, more, token)


def _unique(objects: list[TaxiiObject]) -> list[TaxiiObject]:
    """One entry per object version: an object sent again unchanged (a marking definition in
    every bundle, an indicator re-sent as is) was added once, when first seen."""
    first: dict[tuple[str, str], TaxiiObject] = {}
    for item in sorted(objects, key=lambda o: o.order):
        first.setdefault((str(item.obj.get("id")), item.version), item)
    return list(first.values())


def envelope(page: Page) -> dict[str, Any]:
    body: dict[str, Any] = {"more": page.more, "objects": [dict(o.obj) for o in page.items]}
    if page.next:
        body["next"] = page.next
    return body


def manifest(page: Page) -> dict[str, Any]:
    body: dict[str, Any] = {"more": page.more, "objects": [
        {"id": o.obj.get("id"), "date_added": timestamp(o.added), "version": o.version,
         "media_type": STIX_MEDIA} for o in page.items]}
    if page.next:
        body["next"] = page.next
    return body


def versions(page: Page) -> dict[str, Any]:
    body: dict[str, Any] = {"more": page.more, "versions": [o.version for o in page.items]}
    if page.next:
        body["next"] = page.next
    return body


def error(title: str, status: int, description: str = "") -> dict[str, Any]:
    """A TAXII error message (section 3.6.1)."""
    body: dict[str, Any] = {"title": title, "http_status": str(status)}
    if description:
        body["description"] = description
    return body
