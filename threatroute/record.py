"""The indicator contract: flat IntelMQ fields in, one validated nested record out.

Parsers produce flat dicts keyed by IntelMQ field names (`source.ip`); the native JSON-lines
format and IntelMQ events may be nested or flat. `normalise_indicator` validates every known
field with the shared validators, splits URLs, derives the taxonomy and returns the nested
wire form (`{"source": {"ip": ...}}`). Unknown top-level IntelMQ fields are tolerated as strings;
anything IntelMQ has no field for belongs under `extra`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from threatroute import fields
from threatroute.errors import InvalidRecord
from threatroute.taxonomy import SERVICE_TYPES, TAXONOMY_OF_TYPE, classification_type

Validator = Callable[[object], Any]

_ADDRESS_FIELDS: dict[str, Validator] = {
    "ip": fields.ip,
    "local_ip": fields.ip,
    "network": fields.network,
    "fqdn": fields.fqdn,
    "reverse_dns": fields.fqdn,
    "domain_suffix": fields.fqdn,
    "port": fields.port,
    "asn": fields.asn,
    "as_name": fields.string,
    "abuse_contact": fields.lowercase_string,
    "urlpath": fields.string,
    "allocated": fields.timestamp,
    "registry": fields.string,
    "account": fields.string,
    "local_hostname": fields.string,
    "tor_node": fields.boolean,
    "geolocation.cc": fields.country_code,
    "geolocation.geoip_cc": fields.country_code,
    "geolocation.cymru_cc": fields.country_code,
    "geolocation.city": fields.string,
    "geolocation.country": fields.string,
    "geolocation.region": fields.string,
    "geolocation.state": fields.string,
    "geolocation.latitude": fields.latitude,
    "geolocation.longitude": fields.longitude,
}

VALIDATORS: dict[str, Validator] = {
    **{f"source.{name}": check for name, check in _ADDRESS_FIELDS.items()},
    **{f"destination.{name}": check for name, check in _ADDRESS_FIELDS.items()},
    "classification.type": classification_type,
    "classification.identifier": fields.string,
    "time.source": fields.timestamp,
    "time.observation": fields.timestamp,
    "feed.accuracy": fields.confidence,
    "feed.name": fields.string,
    "feed.provider": fields.string,
    "feed.code": fields.string,
    "feed.url": fields.string,
    "feed.documentation": fields.string,
    "tlp": fields.tlp,
    "malware.name": fields.lowercase_string,
    "malware.version": fields.string,
    "malware.hash.md5": fields.lowercase_string,
    "malware.hash.sha1": fields.lowercase_string,
    "malware.hash.sha256": fields.lowercase_string,
    "protocol.application": fields.lowercase_string,
    "protocol.transport": fields.lowercase_string,
    "event_description.text": fields.string,
    "event_description.target": fields.string,
    "event_description.url": fields.string,
    "status": fields.string,
    "comment": fields.string,
    "screenshot_url": fields.string,
    "misp.event_uuid": fields.lowercase_string,
    "misp.attribute_uuid": fields.lowercase_string,
    "rtir_id": fields.integer,
}

# fields a record is routed by; at least one must be present
LOCATORS = ("source.url", "source.fqdn", "source.ip", "source.network", "source.asn")
# set by the pipeline, never accepted from a feed
DERIVED = ("classification.taxonomy",)
# IntelMQ bookkeeping we do not carry: `raw` is kept only in dead letters, the rest is noise
DROPPED = ("raw", "__type", "output", "event_hash")
MAX_EXTRA_BYTES = 16384


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested wire form to flat IntelMQ names; `extra` stays one dict value."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name != "extra":
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flat IntelMQ names to the nested wire form."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = nested
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidRecord(f"field {part!r} is both a value and a group", name)
            node = child
        if leaf in node and isinstance(node[leaf], dict) and not isinstance(value, dict):
            raise InvalidRecord(f"field {leaf!r} is both a value and a group", name)
        node[leaf] = value
    return nested


def _collect_extra(flat: dict[str, Any]) -> dict[str, Any]:
    """Gather `extra` and IntelMQ's flattened `extra.*` names into one dict."""
    extra: dict[str, Any] = {}
    given = flat.pop("extra", None)
    if isinstance(given, str):  # IntelMQ serialises extra as a JSON string in some dumps
        try:
            given = json.loads(given)
        except ValueError:
            raise InvalidRecord("extra is not a JSON object", "extra") from None
    if given is not None and not isinstance(given, dict):
        raise InvalidRecord("extra must be an object", "extra")
    extra.update(given or {})
    for name in [n for n in flat if n.startswith("extra.")]:
        extra[name.removeprefix("extra.")] = flat.pop(name)
    if extra and len(json.dumps(extra, default=str)) > MAX_EXTRA_BYTES:
        raise InvalidRecord(f"extra larger than {MAX_EXTRA_BYTES} bytes", "extra")
    return extra


def _split_url(clean: dict[str, Any], prefix: str) -> None:
    """Fill fqdn/ip, port and urlpath from the URL, keeping values the feed gave explicitly."""
    parts = clean.get(f"{prefix}.url")
    if not isinstance(parts, fields.UrlParts):
        return
    clean[f"{prefix}.url"] = parts.url
    if parts.fqdn:
        clean.setdefault(f"{prefix}.fqdn", parts.fqdn)
    if parts.ip:
        clean.setdefault(f"{prefix}.ip", parts.ip)
    if parts.port is not None:
        clean.setdefault(f"{prefix}.port", parts.port)
    clean.setdefault(f"{prefix}.urlpath", parts.path)


def normalise_indicator(record: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
                        ) -> dict[str, Any]:
    """Validate one indicator (nested or flat IntelMQ names) and return its nested wire form.

    `defaults` (flat names, e.g. feed.name, tlp) fill fields the record does not set. Raises
    `InvalidRecord` naming the field at fault.
    """
    if not isinstance(record, Mapping):
        raise InvalidRecord(f"expected a JSON object, got {type(record).__name__}")
    flat = flatten(record)
    for name, value in (defaults or {}).items():
        if flat.get(name) in (None, ""):
            flat[name] = value
    extra = _collect_extra(flat)
    clean: dict[str, Any] = {}
    for name, value in flat.items():
        if name in DROPPED or name in DERIVED or value is None or value == "":
            continue
        if name in ("source.url", "destination.url"):
            check: Validator = fields.url
        else:
            check = VALIDATORS.get(name, fields.string)
        try:
            clean[name] = check(value)
        except InvalidRecord as exc:
            raise InvalidRecord(exc.reason, name) from None
    _split_url(clean, "source")
    _split_url(clean, "destination")
    if "classification.type" not in clean:
        raise InvalidRecord("missing classification type", "classification.type")
    clean["classification.taxonomy"] = TAXONOMY_OF_TYPE[clean["classification.type"]]
    if not any(name in clean for name in LOCATORS):
        raise InvalidRecord("no routable locator (source url, fqdn, ip, network or asn)", "source")
    clean.setdefault("time.observation", fields.now())
    if extra:
        clean["extra"] = extra
    return nest(clean)


def identity(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """(classification type, locator kind, value): what makes two records the same indicator.

    The port counts only for services (`taxonomy.SERVICE_TYPES`): a C2 on two ports is two
    things to take down, while an infected host seen on five source ports is one host.
    """
    source = record.get("source", {})
    ctype = record.get("classification", {}).get("type", "")
    for kind in ("url", "fqdn", "ip", "network", "asn"):
        if kind in source:
            value = str(source[kind])
            if kind == "ip" and "port" in source and ctype in SERVICE_TYPES:
                value = f"{value}:{source['port']}"
            return ctype, kind, value
    raise InvalidRecord("no routable locator", "source")


def indicator_key(record: Mapping[str, Any]) -> str:
    """Stable hex key (the Kafka message key): same indicator, same partition, same dedup slot."""
    ctype, kind, value = identity(record)
    return hashlib.blake2b(f"{ctype}|{kind}|{value}".encode(), digest_size=16).hexdigest()

