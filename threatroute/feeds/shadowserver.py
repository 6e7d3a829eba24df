"""`shadowserver`: Shadowserver CSV reports, one table per report type.

The report type comes from `--report` (`context.options["report"]`) or else from the file name
(`2019-09-04-scan_rdp-country-geo.csv`, `event4_sinkhole_http.csv`, `test_smb.csv` -> smb).
Columns a report's table does not name go to `extra` under their own name (`src_`/`dst_`
prefixes become `source.`/`destination.`), as IntelMQ does, so nothing is lost.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePath
from typing import IO, Any

from threatroute.errors import ConfigError
from threatroute.feeds.base import (
    Context,
    FeedFormat,
    FieldMap,
    Unit,
    csv_rows,
    map_fields,
    unit_object,
)


def _address(column: str, network: bool) -> Any:
    """The column when it is a single address (network=False) or a CIDR (network=True)."""
    def get(row: Mapping[str, Any]) -> Any:
        value = row.get(column) or ""
        return value if ("/" in value) == network else None
    return get


def _fqdn(column: str) -> Any:
    """The column when it names a host rather than an address."""
    def get(row: Mapping[str, Any]) -> Any:
        value = row.get(column) or ""
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return value or None
        return None
    return get


def _site_url(row: Mapping[str, Any]) -> str | None:
    # compromised_website splits the URL into http_host and the path in `url`
    host = row.get("http_host")
    if not host:
        return None
    scheme = row.get("application") if row.get("application") in ("http", "https") else "http"
    return f"{scheme}://{host}{row.get('url') or '/'}"


GEO = [("source.asn", "asn"), ("source.geolocation.cc", "geo"),
       ("source.geolocation.region", "region"), ("source.geolocation.city", "city")]
SCAN: FieldMap = [
    ("time.source", "timestamp"),
    ("source.ip", _address("ip", network=False)),
    ("source.network", _address("ip", network=True)),
    ("source.port", "port"),
    ("source.reverse_dns", "hostname"),
    ("protocol.transport", "protocol"),
    ("extra.tag", "tag"),
    *GEO,
]
URL: FieldMap = [
    ("time.source", "timestamp"),
    ("source.url", "url"),
    ("source.fqdn", _fqdn("host")),
    ("source.ip", "ip"),
    ("malware.name", "tag"),
    ("malware.hash.sha256", "sha256"),
    *GEO,
]
EVENT4: FieldMap = [
    ("time.source", "timestamp"),
    ("protocol.transport", "protocol"),
    *[(f"{side}.{name}", f"{prefix}_{column}")
      for side, prefix in (("source", "src"), ("destination", "dst"))
      for name, column in (("ip", "ip"), ("port", "port"), ("asn", "asn"),
                           ("geolocation.cc", "geo"), ("geolocation.region", "region"),
                           ("geolocation.city", "city"), ("reverse_dns", "hostname"))],
]


@dataclass(frozen=True)
class Report:
    """One Shadowserver report type: its name, fixed fields and column table."""

    title: str
    static: Mapping[str, str]
    table: FieldMap
    uses: tuple[str, ...] = ()  # columns read by functions in `table`, kept out of extra
    consumed: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        named = {c for _, c in self.table if isinstance(c, str)}
        object.__setattr__(self, "consumed", frozenset(named | set(self.uses)))


def _scan(service: str, title: str) -> Report:
    return Report(title, {"classification.type": "vulnerable-system",
                          "classification.identifier": f"open-{service}",
                          "protocol.application": service, "protocol.transport": "tcp"},
                  SCAN, ("ip",))


REPORTS: dict[str, Report] = {
    "scan_rdp": _scan("rdp", "Accessible RDP"),
    "scan_smb": _scan("smb", "Accessible SMB"),
    "scan_telnet": _scan("telnet", "Accessible Telnet"),
    "blocklist": Report("Block Listed IP Addresses",
                        {"classification.type": "blacklist",
                         "classification.identifier": "blacklisted-ip"}, SCAN, ("ip",)),
    "compromised_website": Report(
        "Compromised Website",
        {"classification.type": "system-compromise",
         "classification.identifier": "compromised-website"},
        [*SCAN, ("source.url", _site_url), ("source.fqdn", "http_host"),
         ("malware.name", "tag"), ("event_description.text", "category"),
         ("protocol.application", "application")],
        ("ip", "url")),
    "malware_url": Report("Malware URL", {"classification.type": "malware-distribution",
                                          "classification.identifier": "malware-url"},
                          URL, ("host",)),
    "phish_url": Report("Phish URL", {"classification.type": "phishing",
                                      "classification.identifier": "phish-url"},
                        URL, ("host",)),
    "event4_sinkhole_http": Report(
        "HTTP Sinkhole",
        {"classification.type": "infected-system", "protocol.application": "http"},
        [*EVENT4, ("classification.identifier", "tag"), ("extra.tag", "tag"),
         ("malware.name", "family"), ("destination.fqdn", "http_host"),
         ("destination.urlpath", "http_url")]),
    "event4_honeypot_brute_force": Report(
        "Honeypot Brute Force Events", {"classification.type": "brute-force"},
        [*EVENT4, ("classification.identifier", "application"),
         ("extra.application", "application"), ("malware.name", "infection")]),
}
ALIASES = {"smb": "scan_smb", "telnet": "scan_telnet", "rdp": "scan_rdp"}


@lru_cache(maxsize=256)
def resolve_report(name: str) -> str | None:
    """The known report type a name or file name refers to, or None."""
    candidates = [name.lower(), *re.split(r"[-.\s]", PurePath(name).name.lower())]
    for candidate in candidates:
        candidate = candidate.removeprefix("test_")
        candidate = re.sub(r"^(event|scan)6_", lambda m: "event4_" if m[1] == "event" else "scan_",
                           candidate)
        candidate = ALIASES.get(candidate, candidate)
        if candidate in REPORTS:
            return candidate
    return None


def report_of(context: Context) -> Report:
    """The report this context names; ConfigError naming the known types when none matches."""
    given = context.options.get("report") or context.filename or ""
    key = resolve_report(given)
    if key is None:
        raise ConfigError(
            f"unknown Shadowserver report type {given!r}: pass --report with one of "
            f"{', '.join(sorted(REPORTS))}")
    return REPORTS[key]


def _extra_name(column: str) -> str:
    for prefix, side in (("src_", "source."), ("dst_", "destination.")):
        if column.startswith(prefix):
            return f"extra.{side}{column.removeprefix(prefix)}"
    return f"extra.{column}"


class Shadowserver(FeedFormat):
    name = "shadowserver"
    description = "Shadowserver CSV reports (type from --report or the file name)"
    defaults = {"feed.provider": "Shadowserver", "tlp": "AMBER"}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        report_of(context)  # refuse an unknown report before reading a row
        yield from csv_rows(stream, short_rows=True)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        report = report_of(context)
        row = unit_object(unit)
        event = {"feed.name": f"Shadowserver {report.title}", **report.static,
                 **map_fields(row, report.table)}
        for column, value in row.items():
            if column not in report.consumed and value not in ("", None):
                event[_extra_name(column)] = value
        return [event]
