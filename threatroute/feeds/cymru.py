"""`cymru`: Team Cymru CAP (CSIRT Assistance Program) reports, pipe separated.

Two layouts, told apart by the `#` header (or, without one, by the notes column):
- legacy `report|ip|asn|timestamp|comments|asn_name`, free-text comments
  (`srcport 1337 mwtype Conficker destaddr 172.16.0.22`);
- certname `category|address|asn|timestamp|optional_information|asninfo`, notes as
  `key: value;` pairs and asninfo ending in the AS's country (`Example AS Name, AT`).
The notes vocabulary is open-ended: known keys map to fields, unknown ones go to `extra`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute import fields
from threatroute.errors import InvalidRecord
from threatroute.feeds.base import Context, FeedFormat, Unit, decode, text_lines

_MALWARE = ("beagle", "blaster", "conficker", "dameware", "dipnet", "mydoom", "nachi",
            "phatbot", "sinit", "slammer", "stormworm", "toxbot")
# category -> fixed fields; both layouts' spellings (bots/bot, openresolvers/openresolver)
CATEGORIES: dict[str, dict[str, str]] = {
    "bot": {"classification.type": "infected-system"},
    "bots": {"classification.type": "infected-system"},
    "bruteforce": {"classification.type": "brute-force"},
    "controller": {"classification.type": "c2-server"},
    "darknet": {"classification.type": "scanner", "classification.identifier": "darknet"},
    "honeypot": {"classification.type": "scanner", "classification.identifier": "honeypot"},
    "scanner": {"classification.type": "scanner"},
    "scanners": {"classification.type": "scanner"},
    "phishing": {"classification.type": "phishing", "classification.identifier": "phishing"},
    "proxy": {"classification.type": "proxy", "classification.identifier": "openproxy"},
    "spam": {"classification.type": "spam", "classification.identifier": "spam"},
    "malwareurl": {"classification.type": "malware-distribution"},
    "defacement": {"classification.type": "system-compromise",
                   "classification.identifier": "defacement"},
    "routers": {"classification.type": "system-compromise"},
    "fastflux": {"classification.type": "infected-system", "classification.identifier": "fastflux"},
    **{name: {"classification.type": "vulnerable-system",
              "classification.identifier": "dns-open-resolver",
              "protocol.application": "dns"} for name in ("openresolver", "openresolvers")},
    **{name: {"classification.type": "infected-system", "malware.name": name}
       for name in _MALWARE},
}
# categories whose whole note is one value
WHOLE_NOTE = {"bruteforce": "protocol.application", "phishing": "source.url",
              "malwareurl": "source.url", "defacement": "source.url"}
PORT_LISTS = ("dest_port", "destination_port_numbers", "ports_scanned", "honeypot_port",
              "darknet_port")
TRANSPORT = {"1": "icmp", "6": "tcp", "17": "udp", "47": "gre", "58": "ipv6-icmp"}
_LEGACY_KEYS = ("srcport", "mwtype", "destaddr", "dstaddr")


def _header_kind(line: bytes) -> str | None:
    text = line.lower()
    if b"category|address" in text or b"generated on" in text:
        return "certname"
    if b"report|ip" in text:
        return "legacy"
    return None


class CymruCap(FeedFormat):
    name = "cymru"
    description = "Team Cymru CAP reports (legacy infected_*.txt and certname_*.txt)"
    defaults = {"feed.name": "Team Cymru CAP", "feed.provider": "Team Cymru", "tlp": "AMBER"}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        kind: str | None = None
        for unit in text_lines(stream, comments=()):
            if unit.raw.lstrip().startswith(b"#"):
                kind = _header_kind(unit.raw) or kind
                continue
            yield Unit(unit.raw, unit.number, kind)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        cells = decode(unit.raw).strip().split("|")
        if len(cells) != 6:
            raise InvalidRecord(f"expected 6 pipe-separated fields, got {len(cells)}")
        category, address, asn, time, notes, asinfo = (c.strip() for c in cells)
        static = CATEGORIES.get(category.lower())
        if static is None:
            raise InvalidRecord(f"unknown Cymru CAP category {category[:32]!r}")
        kind = unit.value or ("certname" if ";" in notes or ": " in notes else "legacy")
        if kind == "certname":  # "Example AS Name, AT": the country is the AS's, not the host's
            asinfo = re.sub(r",\s*[A-Z]{2}$", "", asinfo)
        event = {"source.ip": address, "time.source": time, "source.as_name": asinfo,
                 "source.asn": None if asn == "0" else asn, **static}
        event.update(_notes(category.lower(), notes))
        if "malware.name" in event:
            event.setdefault("classification.identifier", str(event["malware.name"]).lower())
        return [event]


def _notes(category: str, notes: str) -> dict[str, Any]:
    notes = notes.strip().strip(";").strip()
    if not notes:
        return {}
    if category in WHOLE_NOTE and not re.match(r"[a-z_]+:(?!//)", notes):
        target = WHOLE_NOTE[category]
        value = notes.split()[0] if target == "source.url" else notes
        found = {target: value}
        if category == "bruteforce":
            found["classification.identifier"] = notes
        return found
    found = {}
    for part in (p.strip() for p in notes.split(";")):
        key, sep, value = part.partition(":")
        if sep and re.fullmatch(r"[a-z_]+", key.strip()):
            found.update(_pair(category, key.strip(), value.strip()))
        elif category == "proxy":
            found.update(_pair(category, "proxy_type", part))
        elif part:
            found.update(_legacy(part))
    return found


def _pair(category: str, key: str, value: str) -> dict[str, Any]:
    if key in ("family", "mwtype"):
        return {"malware.name": value}
    if key in ("dest_addr", "destaddr", "dstaddr"):
        return {"destination.ip": value}
    if key in ("port", "srcport"):
        return {"source.port": value}
    if key in PORT_LISTS:  # "17875,24526 (total_count:19)": one indicator, ports kept as extra
        ports = re.sub(r"\(.*\)", "", value).replace(" ", "").split(",")
        return {"extra.destination_ports": [int(p) if p.isdigit() else p for p in ports if p]}
    if key == "protocol":
        if value in TRANSPORT:
            return {"protocol.transport": TRANSPORT[value]}
        return {"extra.protocol_number": value}
    if key == "proxy_type":
        match = re.fullmatch(r"([a-z0-9]+)-(\d+)", value.lower())
        if match:
            return {"protocol.application": match[1], "source.port": match[2]}
        return {"extra.proxy_type": value}
    if key == "hostname":
        return _hostname(category, value)
    return {f"extra.{key}": value}


def _hostname(category: str, value: str) -> dict[str, Any]:
    """A controller's hostname is the C2 name; for the others it is the host's reverse DNS."""
    try:
        name = fields.fqdn(value)
    except InvalidRecord:
        return {"extra.hostname": value}  # an address or a mangled note: keep, do not route
    return {"source.fqdn" if category == "controller" else "source.reverse_dns": name}


def _legacy(comment: str) -> dict[str, Any]:
    """`srcport 1337 mwtype Mirai Bot destaddr 172.16.0.22 Some Botnet`: keyword-led values."""
    values: dict[str, list[str]] = {}
    trailing: list[str] = []
    key: str | None = None
    for token in comment.split():
        if token in _LEGACY_KEYS:
            key = token
            values[key] = []
        elif key is not None and (key == "mwtype" or not values[key]):
            values[key].append(token)
        else:
            trailing.append(token)
            key = None
    found: dict[str, Any] = {}
    for name, words in values.items():
        found.update(_pair("", name, " ".join(words)))
    if trailing:
        found["event_description.text"] = " ".join(trailing)
    return found
