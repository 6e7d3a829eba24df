"""`feodo-json`, `feodo-csv`: abuse.ch Feodo Tracker botnet C2 IP blocklists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute.feeds.base import (
    Context,
    FeedFormat,
    FieldMap,
    Unit,
    csv_rows,
    json_list,
    map_fields,
    unit_object,
    unit_value,
)

_DEFAULTS = {
    "feed.name": "Feodo Tracker",
    "feed.provider": "abuse.ch",
    "feed.url": "https://feodotracker.abuse.ch/blocklist/",
    "classification.type": "c2-server",
    "tlp": "CLEAR",
}


# ipblocklist.json (malware.name is lower-cased by its validator); an entry without
# first_seen is dated by its last_online day, as IntelMQ does
JSON_FIELDS: FieldMap = [
    ("source.ip", "ip_address"),
    ("source.port", "port"),
    ("status", "status"),
    ("source.reverse_dns", "hostname"),
    ("source.asn", "as_number"),
    ("source.as_name", "as_name"),
    ("source.geolocation.cc", "country"),
    ("time.source", lambda row: row.get("first_seen") or row.get("last_online")),
    ("extra.last_online", "last_online"),
    ("malware.name", "malware"),
]

# the older ipblocklist.csv: "first_seen_utc","dst_ip","dst_port","c2_status","last_online",...
CSV_FIELDS: FieldMap = [
    ("time.source", "first_seen_utc"),
    ("source.ip", "dst_ip"),
    ("source.port", "dst_port"),
    ("status", "c2_status"),
    ("extra.last_online", "last_online"),
    ("malware.name", "malware"),
]


class FeodoJson(FeedFormat):
    name = "feodo-json"
    description = "abuse.ch Feodo Tracker C2 blocklist, JSON (ipblocklist.json)"
    defaults = _DEFAULTS

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        yield from json_list(stream, "Feodo Tracker JSON")

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        return [map_fields(unit_object(unit), JSON_FIELDS)]


class FeodoCsv(FeedFormat):
    name = "feodo-csv"
    description = "abuse.ch Feodo Tracker C2 blocklist, CSV with a # banner (ipblocklist.csv)"
    defaults = _DEFAULTS

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        yield from csv_rows(stream)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        return [map_fields(unit_value(unit), CSV_FIELDS)]
