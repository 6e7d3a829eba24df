"""`stix`: STIX 2.1 bundles; indicators with STIX patterns become one event per observable.

Patterns are read with the official STIX 2.1 grammar (`observables`): every observable that
names an address (`ipv4-addr`, `ipv6-addr`, a `network-traffic` end with its port), network
(a CIDR value, or ISSUBSET a CIDR), domain, URL or AS number is one event, however the pattern
combines them (OR, AND, FOLLOWEDBY, qualifiers); the other observables of such a pattern
(file hashes, certificates, negations, LIKE...) are dead-lettered with the reason. An
indicator with no such observable at all, non-STIX pattern languages, and every non-indicator
object are skipped (counted, not dead-lettered).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from stix2 import patterns
from stix2.pattern_visitor import create_pattern_object
from stix2patterns.exceptions import ParseException

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
LOCATOR_FIELDS = {  # object path (after the type) -> flat IntelMQ field of an equality's value
    ("ipv4-addr", "value"): "ip",
    ("ipv6-addr", "value"): "ip",
    ("network-traffic", "dst_ref.value"): "ip",
    ("network-traffic", "src_ref.value"): "ip",
    ("domain-name", "value"): "source.fqdn",
    ("url", "value"): "source.url",
    ("autonomous-system", "number"): "source.asn",
}
_UNESCAPE = re.compile(r"\\(['\\])")
NO_LOCATOR = "STIX pattern without IP, network, domain, URL or AS number observables"
Found = dict[str, Any] | InvalidRecord  # one observable: its locator fields, or why none


def observables(pattern: str) -> list[Found]:
    """Every observable of a STIX 2.1 pattern, read with the official grammar (stix2-patterns,
    through stix2's pattern visitor): the flat locator fields of each one that names an
    address, network, domain, URL or AS number, and an InvalidRecord for each one that cannot.

    How observations combine (OR, AND, FOLLOWEDBY) and their qualifiers (WITHIN, REPEATS,
    START/STOP) do not matter here: each observable that names something a hoster can take
    down is kept. Within one observation, `network-traffic` comparisons ANDed together form one
    locator: `dst_ref.value` with `dst_port` is an address and its port (the output side writes
    them so, matchers/stix.py); `*_ref.type` only qualifies the value beside it.
    """
    try:
        tree = create_pattern_object(pattern, version="2.1")
    except ParseException as exc:
        raise InvalidRecord(f"unparseable STIX pattern: {exc}"[:300], "pattern") from None
    except ValueError as exc:  # parses, but breaks a rule (an AND across object types)
        raise InvalidRecord(f"invalid STIX pattern: {exc}"[:300], "pattern") from None
    found: list[Found] = []
    for observation in _observations(tree):
        found.extend(_found(observation.operand))
    if not found:
        raise InvalidRecord("STIX pattern without comparisons", "pattern")
    return found


def _observations(node: Any) -> Iterator[Any]:
    if isinstance(node, patterns.ObservationExpression):
        yield node
    elif isinstance(node, patterns.ParentheticalExpression):
        yield from _observations(node.expression)
    elif isinstance(node, patterns.QualifiedObservationExpression):
        yield from _observations(node.observation_expression)
    else:  # AND / OR / FOLLOWEDBY of observations
        for operand in node.operands:
            yield from _observations(operand)


def _found(node: Any) -> Iterator[Found]:
    """The observables of one observation's comparison expression."""
    if isinstance(node, patterns.ParentheticalExpression):
        yield from _found(node.expression)
    elif isinstance(node, patterns.AndBooleanExpression):
        yield from _conjunction(node.operands)
    elif isinstance(node, patterns.OrBooleanExpression):
        for operand in node.operands:
            yield from _found(operand)
    else:
        mapped = _comparison(node)
        if mapped is not None:
            yield mapped


def _conjunction(operands: list[Any]) -> Iterator[Found]:
    """ANDed comparisons: a network-traffic address and port on one side make one locator."""
    leaves = [o for o in operands if isinstance(o, patterns._ComparisonExpression)]
    ports = {side: o for o in leaves for side in ("src", "dst")
             if _path(o) == ("network-traffic", f"{side}_port") and _equality(o)}
    for operand in operands:
        if operand not in leaves:
            yield from _found(operand)
            continue
        kind, path = _path(operand)
        side = path[:3]
        if kind == "network-traffic" and path.endswith("_port") and side in ports:
            continue  # taken with its address below
        mapped = _comparison(operand)
        if isinstance(mapped, dict) and kind == "network-traffic" and side in ports \
                and "source.ip" in mapped:
            mapped["source.port"] = ports[side].rhs.value
        if mapped is not None:
            yield mapped


def _path(comparison: Any) -> tuple[str, str]:
    lhs = comparison.lhs
    return lhs.object_type_name, ".".join(
        str(getattr(c, "property_name", "")) for c in lhs.property_path)


def _equality(comparison: Any) -> bool:
    return isinstance(comparison, patterns.EqualityComparisonExpression) \
        and not comparison.negated


def _comparison(comparison: Any) -> Found | None:
    """One comparison's locator, None when it only qualifies another (`dst_ref.type`)."""
    kind, path = _path(comparison)
    target = LOCATOR_FIELDS.get((kind, path))
    text = str(comparison)[:200]
    if kind == "network-traffic" and path in ("src_ref.type", "dst_ref.type"):
        return None
    if target is None:
        return InvalidRecord(f"{text}: not an IP address, network, domain, URL or AS number "
                             "(kept only the observables that are)", "pattern")
    value = getattr(comparison.rhs, "value", None)
    if isinstance(comparison.rhs, patterns.StringConstant):
        value = _UNESCAPE.sub(r"\1", str(value))  # the grammar keeps a string's \' and \\
    if _equality(comparison):
        pass
    elif isinstance(comparison, patterns.IsSubsetComparisonExpression) and target == "ip" \
            and not comparison.negated and "/" in str(value):
        pass  # an address within a network: the network is the indicator
    else:
        return InvalidRecord(f"{text}: only equality (or ISSUBSET a network) names an "
                             "indicator", "pattern")
    if target == "ip":
        return {"source.network" if "/" in str(value) else "source.ip": value}
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

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any] | InvalidRecord]:
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
        found = observables(obj["pattern"])
        events: list[Mapping[str, Any] | InvalidRecord] = [
            {**locator, **common} for locator in found if isinstance(locator, dict)]
        if not events:  # hashes, certificates...: well-formed, nothing a hoster takes down
            raise Skip(NO_LOCATOR)
        # the parts of a pattern that name no locator are dead-lettered beside its events, so
        # what the indicator lost (an ANDed file hash) is on record with the reason
        return events + [f for f in found if isinstance(f, InvalidRecord)]
