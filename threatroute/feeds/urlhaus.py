"""`urlhaus-csv`: abuse.ch URLhaus CSV feeds (full/recent `csv.txt` and the per-TLD/ASN/country
feeds). Both write their header as the last `#` banner line; columns are matched by name, so
either layout parses with the one table below."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute.feeds.base import (
    Context,
    FeedFormat,
    FieldMap,
    Unit,
    csv_rows,
    map_fields,
    unit_value,
)


def _host(row: Mapping[str, Any]) -> str | None:
    # the Host column repeats the URL's host; it is an FQDN only when it is not an address
    host = row.get("host") or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host or None
    return None


# keys are the header lower-cased with "(utc)" dropped: "Dateadded (UTC)" -> "dateadded"
FIELDS: FieldMap = [
    ("time.source", "dateadded"),
    ("source.url", "url"),
    ("status", "url_status"),
    ("extra.threat", "threat"),
    ("source.fqdn", _host),
    ("source.ip", "ipaddress"),
    ("source.asn", "asnumber"),
    ("source.geolocation.cc", "country"),
    ("extra.urlhaus.id", "id"),
    ("extra.last_online", "last_online"),
    ("extra.tags", lambda row: [t for t in (row.get("tags") or "").split(",") if t] or None),
    ("event_description.url", "urlhaus_link"),
    ("extra.reporter", "reporter"),
]


class UrlhausCsv(FeedFormat):
    name = "urlhaus-csv"
    description = "abuse.ch URLhaus CSV (csv.txt or per-TLD/ASN/country feeds)"
    defaults = {
        "feed.name": "URLhaus",
        "feed.provider": "abuse.ch",
        "feed.url": "https://urlhaus.abuse.ch/",
        "classification.type": "malware-distribution",
        "tlp": "CLEAR",
    }

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        yield from csv_rows(stream, header_in_comment=True)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        row = {re.sub(r"\s*\(utc\)$", "", key.lower()): value
               for key, value in unit_value(unit).items()}
        return [map_fields(row, FIELDS)]
