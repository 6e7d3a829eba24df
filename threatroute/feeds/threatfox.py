"""`threatfox-json`: abuse.ch ThreatFox IOCs, as an API response (`{"query_status": "ok",
"data": [...]}`) or as the JSON export (`{"<id>": [{...}], ...}`, `ioc_value`/`*_utc` names).

Only network IOCs are routed; file hashes are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute.errors import InvalidRecord
from threatroute.feeds.base import (
    BrokenDocument,
    Context,
    FeedFormat,
    FieldMap,
    Skip,
    Unit,
    json_elements,
    map_fields,
    read_json,
    unit_object,
)

# ThreatFox threat_type -> IntelMQ classification.type; an unknown type is kept as undetermined
# rather than refused, so a new ThreatFox category does not drop data
CLASSIFICATION = {
    "botnet_cc": "c2-server",
    "payload_delivery": "malware-distribution",
    "cc_skimming": "malware-distribution",  # the host serving a card-skimming script
}


def _ioc(entry: Mapping[str, Any]) -> Any:
    return entry.get("ioc", entry.get("ioc_value"))


def _locator(entry: Mapping[str, Any]) -> dict[str, Any]:
    kind, value = entry.get("ioc_type"), _ioc(entry)
    if not isinstance(value, str):
        raise InvalidRecord("IOC value missing or not a string", "ioc")
    if kind == "ip:port":
        address, sep, port = value.rpartition(":")
        if not sep:
            raise InvalidRecord(f"ip:port IOC without a port: {value[:64]!r}", "ioc")
        return {"source.ip": address, "source.port": port}
    if kind == "domain":
        return {"source.fqdn": value}
    if kind == "url":
        return {"source.url": value}
    raise Skip(f"ThreatFox {kind} IOC" if isinstance(kind, str) else "ThreatFox IOC without type")


def _tags(entry: Mapping[str, Any]) -> list[str] | None:
    tags = entry.get("tags")
    if isinstance(tags, str):  # the export joins them with commas
        tags = tags.split(",")
    if not isinstance(tags, list):
        return None
    return [str(t).strip() for t in tags if str(t).strip()] or None


FIELDS: FieldMap = [
    ("classification.type",
     lambda entry: CLASSIFICATION.get(entry.get("threat_type", ""), "undetermined")),
    ("time.source", lambda entry: entry.get("first_seen") or entry.get("first_seen_utc")),
    ("extra.last_seen", lambda entry: entry.get("last_seen") or entry.get("last_seen_utc")),
    ("feed.accuracy", "confidence_level"),
    ("malware.name", "malware_printable"),
    ("extra.malpedia", "malware"),
    ("extra.malware_alias", "malware_alias"),
    ("extra.threatfox.id", "id"),
    ("extra.threat_type", "threat_type"),
    ("extra.reference", "reference"),
    ("extra.reporter", "reporter"),
    ("extra.tags", _tags),
]


def _entries(document: Any) -> list[Any] | None:
    """The IOC list of an API response or an export, None when the shape is neither."""
    if isinstance(document, dict) and "query_status" in document:
        data = document.get("data")
        return data if isinstance(data, list) else []  # "no_result" carries a message string
    if isinstance(document, dict):  # export: id -> [ioc]
        entries = []
        for ioc_id, items in document.items():
            for item in items if isinstance(items, list) else [items]:
                entries.append({"id": ioc_id, **item} if isinstance(item, dict) else item)
        return entries
    return document if isinstance(document, list) else None


class ThreatfoxJson(FeedFormat):
    name = "threatfox-json"
    description = "abuse.ch ThreatFox API response or JSON export"
    defaults = {
        "feed.name": "ThreatFox",
        "feed.provider": "abuse.ch",
        "feed.url": "https://threatfox.abuse.ch/",
        "tlp": "CLEAR",
    }

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        document, raw = read_json(stream)
        entries = _entries(document)
        if entries is None:
            raise BrokenDocument("not a ThreatFox API response or export", raw)
        yield from json_elements(entries)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        entry = unit_object(unit)
        return [{**_locator(entry), **map_fields(entry, FIELDS)}]
