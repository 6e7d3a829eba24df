"""`misp`: MISP events and attributes, one indicator per routable attribute.

Accepted shapes: a MISP event (`{"Event": {...}}` as in MISP feeds, or the bare event), a
list of events, an API response (`{"response": [...]}` of events, or `{"response":
{"Attribute": [...]}}`), and single attributes. Attributes inside Objects count too.

Classification, first match wins: an `rsit:` tag names the IntelMQ type; an `ecsirt:` tag that
names a role (c&c, phishing, scanner...) maps by ECSIRT; else the attribute's category says
what the address did (`Payload delivery` -> malware-distribution; network indicators under
`Network activity` -> c2-server); else an `ecsirt:` malware-kind tag (ransomware, trojan...)
-> infected-system; else undetermined. Attribute tags take precedence over event tags. TLP is
the strictest `tlp:` tag; unmarked items are AMBER (never assume a sharing item is public).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute import fields
from threatroute.errors import InvalidRecord
from threatroute.feeds.base import (
    BrokenDocument,
    Context,
    FeedFormat,
    Skip,
    Unit,
    json_elements,
    read_json,
)


def _address(value: str) -> dict[str, str]:
    return {"source.network" if "/" in value else "source.ip": value}


def _pair(first: str, second: str):
    def split(value: str) -> dict[str, str]:
        left, sep, right = value.rpartition("|")
        if not sep:
            raise InvalidRecord(f"expected 'a|b', got {value[:64]!r}", "value")
        return {**({first: left} if first != "ip" else _address(left)), second: right}
    return split


# MISP attribute type -> locator fields; ip-dst is the far end of the malware's traffic,
# i.e. the malicious host, so both ip-src and ip-dst are the routed source (as IntelMQ)
TYPES = {
    "ip-src": _address,
    "ip-dst": _address,
    "ip-src|port": _pair("ip", "source.port"),
    "ip-dst|port": _pair("ip", "source.port"),
    "domain": lambda value: {"source.fqdn": value},
    "hostname": lambda value: {"source.fqdn": value},
    "domain|ip": _pair("source.fqdn", "source.ip"),
    "hostname|port": _pair("source.fqdn", "source.port"),
    "url": lambda value: {"source.url": value},
    "AS": lambda value: {"source.asn": value},
}
NETWORK_TYPES = frozenset(TYPES) - {"AS"}
# ECSIRT predicate="value" -> IntelMQ type, for the values that name a role
ECSIRT = {
    "abusive-content": {"spam": "spam"},
    "malicious-code": {"c&c": "c2-server", "botnet-drone": "infected-system",
                       "malware-configuration": "malware-configuration"},
    "information-gathering": {"scanner": "scanner", "sniffing": "sniffing",
                              "social-engineering": "social-engineering"},
    "intrusion-attempts": {"exploit": "exploit", "brute-force": "brute-force",
                           "ids-alert": "ids-alert"},
    "intrusions": {"compromised": "system-compromise", "backdoor": "system-compromise",
                   "defacement": "application-compromise", "bot": "infected-system"},
    "availability": {"ddos": "ddos", "dos": "dos"},
    "fraud": {"phishing": "phishing", "masquerade": "masquerade"},
    "vulnerable": {"vulnerable-service": "vulnerable-system"},
    "other": {"blacklist": "blacklist"},
    "test": {"test": "test"},
}
MALWARE_KINDS = {"malware", "virus", "worm", "trojan", "spyware", "dialer", "rootkit",
                 "ransomware"}
_TAG = re.compile(r'^(?P<ns>[\w-]+):(?P<predicate>[\w&+-]+)(?:="(?P<value>[^"]*)")?$')


@dataclasses.dataclass(frozen=True)
class _Item:
    """An attribute with what it inherits from its event (and object)."""

    attribute: Mapping[str, Any]
    event: Mapping[str, Any]
    object_name: str | None = None


def _tags(node: Mapping[str, Any]) -> list[str]:
    tags = node.get("Tag") or []
    return [t["name"] for t in tags if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _classification(tags: list[str], category: str, kind: str) -> str:
    parsed = [m for m in map(_TAG.match, (t.strip() for t in tags)) if m]
    for m in parsed:
        if m["ns"] == "rsit" and m["value"]:
            return m["value"]
    for m in parsed:
        if m["ns"] == "ecsirt" and m["value"] in ECSIRT.get(m["predicate"], {}):
            return ECSIRT[m["predicate"]][m["value"]]
    if category == "Payload delivery":
        return "malware-distribution"
    if category == "Network activity" and kind in NETWORK_TYPES:
        return "c2-server"
    if any(m["ns"] == "ecsirt" and m["value"] in MALWARE_KINDS for m in parsed):
        return "infected-system"
    return "undetermined"


def _tlp(tags: list[str]) -> str | None:
    levels = []
    for tag in tags:
        if tag.lower().startswith("tlp:"):
            try:
                levels.append(fields.tlp(tag))
            except InvalidRecord:
                continue  # tlp:ex:chr and other extensions say nothing about the level
    return max(levels, key=fields.TLP_LEVELS.index) if levels else None


def _events(document: Any) -> list[Any] | None:
    """The events (or bare attributes) a document holds, None when it is no MISP shape."""
    if isinstance(document, dict) and "response" in document:
        document = document["response"]
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        return [document]
    return None


def _items(entry: Any) -> list[Any]:
    """An event's attributes (object attributes included) as _Items; a bare attribute as is."""
    if not isinstance(entry, dict):
        return [entry]
    event = entry.get("Event", entry)
    if not isinstance(event, dict) or ("Attribute" not in event and "Object" not in event):
        return [entry]  # a single attribute, or something for events() to refuse
    items: list[Any] = [_Item(a, event) for a in event.get("Attribute") or []]
    for obj in event.get("Object") or []:
        if isinstance(obj, dict):
            items += [_Item(a, event, obj.get("name")) for a in obj.get("Attribute") or []]
    return items


class Misp(FeedFormat):
    name = "misp"
    description = "MISP events, event lists, API responses or attributes (JSON)"
    defaults = {"feed.name": "MISP", "feed.provider": "MISP", "tlp": "AMBER"}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        document, raw = read_json(stream)
        entries = _events(document)
        if entries is None:
            raise BrokenDocument("not a MISP event, event list or attribute", raw)
        items = [item for entry in entries for item in _items(entry)]
        # raw is the attribute alone; the event it belongs to travels in the value
        attributes = [i.attribute if isinstance(i, _Item) else i for i in items]
        for unit, item in zip(json_elements(attributes), items, strict=True):
            yield dataclasses.replace(unit, value=item)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        item = unit.value if isinstance(unit.value, _Item) else _Item(unit.value, {})
        attribute, event = item.attribute, item.event
        if not isinstance(attribute, dict) or not isinstance(attribute.get("type"), str):
            raise InvalidRecord("not a MISP attribute (no type)")
        kind = attribute["type"]
        if attribute.get("deleted") in (True, "1", 1):
            raise Skip("deleted MISP attribute")
        if kind == "link":
            raise Skip("MISP link attribute (a reference, not an indicator)")
        if kind not in TYPES:
            raise Skip(f"MISP {kind} attribute")
        value = attribute.get("value")
        if not isinstance(value, str):
            raise InvalidRecord("attribute value missing or not a string", "value")
        tags = _tags(attribute) + _tags(event)
        orgc = event.get("Orgc")
        orgc = orgc if isinstance(orgc, dict) else {}
        found = {
            **TYPES[kind](value),
            "classification.type": _classification(tags, attribute.get("category", ""), kind),
            "tlp": _tlp(_tags(attribute)) or _tlp(_tags(event)),
            "time.source": (attribute.get("first_seen") or attribute.get("timestamp")
                            or event.get("timestamp")),
            "comment": attribute.get("comment"),
            "event_description.text": event.get("info"),
            "feed.provider": orgc.get("name"),
            "misp.event_uuid": event.get("uuid"),
            "misp.attribute_uuid": attribute.get("uuid"),
            "extra.misp.category": attribute.get("category"),
            "extra.misp.to_ids": attribute.get("to_ids"),
            "extra.misp.object": item.object_name,
            "extra.misp.event_id": event.get("id"),
        }
        return [{k: v for k, v in found.items() if v not in (None, "")}]
