"""`stix`: STIX 2.1 bundles; indicators with STIX patterns become one event per observable.

Read: `[ipv4-addr:value = '...']`, `ipv6-addr:value` (a CIDR value is a source.network),
`domain-name:value`, `url:value`, joined by OR (within or across observation brackets):
each routable comparison is one event. Patterns that need several observables together (AND,
FOLLOWEDBY, qualifiers) or use other operators, other object types (files, x509...) and
non-STIX pattern languages are skipped, as is every non-indicator object.
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

# the published TLP marking-definition ids: TLP 1.0 (STIX 2.1 spec) and TLP 2.0 (OASIS extension)
TLP_MARKINGS = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "CLEAR",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "GREEN",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "AMBER",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "RED",
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "CLEAR",
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "GREEN",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "AMBER",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "AMBER+STRICT",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "RED",
}
# indicator_types (indicator-type-ov) -> IntelMQ type, most specific first; "benign" is skipped
INDICATOR_TYPES = (
    ("compromised", "system-compromise"),
    ("anonymization", "proxy"),
    ("malicious-activity", "blacklist"),  # malicious, reason not stated: IntelMQ's blacklist
    ("anomalous-activity", "undetermined"),
    ("attribution", "undetermined"),
    ("unknown", "undetermined"),
)
LOCATORS = {
    "ipv4-addr:value": "ip",
    "ipv6-addr:value": "ip",
    "domain-name:value": "source.fqdn",
    "url:value": "source.url",
}
_COMPARISON = re.compile(
    r"(?P<path>[a-z0-9-]+:(?:[\w.*\[\]-]|'[^']*')+)\s*"
    r"(?P<op>NOT\s+)?(?P<cmp>=|!=|<=|>=|<|>|LIKE|MATCHES|ISSUBSET|ISSUPERSET|IN|EXISTS)\s*"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\([^)]*\)|[\w.:-]*)")
_GLUE = re.compile(r"[\s\[\]()]|\bOR\b|\x00")


def observables(pattern: str) -> list[tuple[str, str]]:
    """(object path, value) of each comparison of an OR-only pattern; Skip when not OR-only."""
    found: list[tuple[str, str]] = []

    def take(match: re.Match[str]) -> str:
        found.append((match["path"], match["value"]) if match["cmp"] == "=" and not match["op"]
                     else ("", ""))  # a comparison other than equality names no indicator
        return "\x00"

    rest = _GLUE.sub("", _COMPARISON.sub(take, pattern))
    if rest:
        if re.search(r"AND|FOLLOWEDBY|WITHIN|REPEATS|START|STOP", rest):
            raise Skip("STIX pattern combining observables (AND/FOLLOWEDBY/qualifier)")
        raise InvalidRecord(f"unparseable STIX pattern: {pattern[:120]!r}", "pattern")
    if not found:
        raise InvalidRecord("STIX pattern without comparisons", "pattern")
    return found


def _locator(path: str, quoted: str) -> dict[str, str] | None:
    target = LOCATORS.get(path)
    if target is None or not quoted.startswith("'"):
        return None
    value = re.sub(r"\\(['\\])", r"\1", quoted[1:-1])
    if target == "ip":
        return {"source.network" if "/" in value else "source.ip": value}
    return {target: value}


def _tlp(refs: Any, markings: Mapping[str, str]) -> str | None:
    levels = [markings.get(ref) or TLP_MARKINGS.get(ref) for ref in refs or []
              if isinstance(ref, str)]
    known = [level for level in levels if level]
    return max(known, key=fields.TLP_LEVELS.index) if known else None


def _bundle_markings(objects: list[Any]) -> dict[str, str]:
    """TLP levels of marking-definitions the bundle itself carries (STIX 2.0 style or TLP 2.0)."""
    markings = {}
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("type") != "marking-definition":
            continue
        definition = obj.get("definition") if obj.get("definition_type") == "tlp" else None
        level = definition.get("tlp") if isinstance(definition, dict) else None
        for extension in (obj.get("extensions") or {}).values():
            if isinstance(extension, dict) and extension.get("tlp_2_0"):
                level = extension["tlp_2_0"]
        try:
            markings[obj["id"]] = fields.tlp(level)
        except (InvalidRecord, KeyError):
            continue
    return markings


def _classification(indicator_types: Any) -> str | None:
    given = set(indicator_types or [])
    if given == {"benign"}:
        raise Skip("benign STIX indicator")
    return next((ctype for name, ctype in INDICATOR_TYPES if name in given), None)


class Stix(FeedFormat):
    name = "stix"
    description = "STIX 2.1 bundle (or list of objects); indicators with STIX patterns"
    defaults = {"feed.name": "STIX", "feed.provider": "STIX",
                "classification.type": "undetermined", "tlp": "AMBER"}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        document, raw = read_json(stream)
        if isinstance(document, dict):
            document = document.get("objects", [document]) if document.get(
                "type") == "bundle" else [document]
        if not isinstance(document, list):
            raise BrokenDocument("not a STIX bundle or list of STIX objects", raw)
        markings = _bundle_markings(document)
        for unit in json_elements(document):
            yield dataclasses.replace(unit, value=(unit.value, markings))

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        obj, markings = unit.value
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise InvalidRecord("not a STIX object (no type)")
        if obj["type"] != "indicator":
            raise Skip(f"STIX {obj['type']} object")
        if obj.get("revoked") is True:
            raise Skip("revoked STIX indicator")
        if obj.get("pattern_type", "stix") != "stix":
            raise Skip(f"{obj['pattern_type']} pattern")
        if not isinstance(obj.get("pattern"), str):
            raise InvalidRecord("indicator without a pattern", "pattern")
        common = {
            "classification.type": _classification(obj.get("indicator_types")),
            "tlp": _tlp(obj.get("object_marking_refs"), markings),
            "time.source": obj.get("valid_from"),
            "feed.accuracy": obj.get("confidence"),
            "event_description.text": obj.get("name"),
            "extra.stix.id": obj.get("id"),
            "extra.stix.valid_until": obj.get("valid_until"),
        }
        common = {k: v for k, v in common.items() if v not in (None, "")}
        events = [{**locator, **common} for locator in
                  (_locator(path, value) for path, value in observables(obj["pattern"]))
                  if locator]
        if not events:
            raise Skip("STIX pattern without IP, network, domain or URL observables")
        return events
