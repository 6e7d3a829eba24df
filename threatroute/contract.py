"""The record contract: what every indicator on a pipeline topic is guaranteed to be.

Ingest and contributions admit a record only through `admit` / `admit_json` (normalise, check,
encode), and every stage checks what it decodes with `check_record` before its transforms see
it, so the enrichers and matchers can rely on, without checking again:

- shape: a JSON object; known groups (`source`, `classification`, `time`, ...) are objects,
  known fields have their type and canonical form (the forms `fields` produces): `source.ip`
  a canonical IPv4/IPv6 address, `source.network` a canonical CIDR, `source.fqdn` an A-label
  name, `source.asn` an int 1..2^32-1, `source.port` an int 0..65535, times ISO 8601 UTC,
  `feed.accuracy` a finite number 0..100, `tlp` one of TLP 2.0's levels, a known
  `classification.type` with its taxonomy, `extra` an object. Fields the pipeline does not
  know are strings (or groups of them).
- addresses: a scoped IPv6 address (`fe80::1%eth0`) is refused, not normalised: the zone names
  an interface of the reporting host, so the address means nothing to anyone else, and
  dropping the zone would route a link-local address as if it were global.
- bounds: at most MAX_VALUES values and MAX_DEPTH levels of nesting, lists of at most MAX_LIST
  items, integers within 64 bits, finite numbers, strings within `fields` limits, keys of at
  most MAX_KEY characters, and MAX_RECORD_BYTES encoded: far below the broker's message limit
  (1 MB), leaving room for what enrichment adds and for the alert envelope around it.
- text: valid Unicode (no lone surrogates: `"\\ud800"` decodes in Python's json but cannot be
  encoded as UTF-8).

Every check returns a reason or None (`check_record`), or raises `InvalidRecord` (`admit`);
callers dead-letter the original bytes with that reason. Pure: no Kafka, no I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from threatroute import fields
from threatroute.errors import InvalidRecord
from threatroute.record import VALIDATORS, indicator_key, normalise_indicator
from threatroute.taxonomy import TAXONOMIES, TAXONOMY_OF_TYPE

MAX_RECORD_BYTES = 64 * 1024  # an indicator is a few hundred bytes; alerts wrap it
MAX_DEPTH = 16                # levels of nesting below the record (extra's own data included)
MAX_LIST = 1024               # items of one list (extra.dns keeps 16 addresses per family)
MAX_VALUES = 4096             # values in one record, containers included
MAX_KEY = 256                 # characters of one object key
MAX_INT = 1 << 63             # |int| below this: what JSON readers other than Python keep exact
MAX_UNIT_BYTES = 256 * 1024   # one input line/item beyond this is refused before decoding

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """An indicator that holds the contract: the record, its Kafka key and its encoded bytes."""

    record: dict[str, Any]
    key: str
    value: bytes


# -- field checks: each returns None when the value holds, else the reason ----------------------

def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _string(value: Any, limit: int = fields.MAX_STRING) -> str | None:
    if type(value) is not str:
        return f"expected a string, got {_kind(value)}"
    if not value or len(value) > limit:
        return f"string empty or longer than {limit} characters"
    return None


def _address(text: str) -> bytes | None:
    """The packed address when `text` is one in canonical form (what `fields.ip` writes).

    inet_pton/inet_ntop: ten times faster than ipaddress's str(); ipaddress decides only when
    the two spellings could differ (it never writes dotted IPv6; IPv4-mapped becomes IPv4).
    """
    try:
        if ":" not in text:
            packed = socket.inet_pton(socket.AF_INET, text)
            return packed if socket.inet_ntop(socket.AF_INET, packed) == text else None
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return None
    if "." in text or packed[:12] == _MAPPED:
        return None
    if socket.inet_ntop(socket.AF_INET6, packed) == text:
        return packed
    return packed if str(ipaddress.IPv6Address(packed)) == text else None


_MAPPED = bytes(10) + b"\xff\xff"


def _ip(value: Any) -> str | None:
    if type(value) is not str:
        return f"expected an IP address string, got {_kind(value)}"
    if "%" in value:
        return f"scoped IPv6 address {value[:64]!r} (zone of the reporting host) is not routable"
    return None if _address(value) else f"not a canonical IP address: {value[:64]!r}"


def _network(value: Any) -> str | None:
    if type(value) is not str:
        return f"expected a CIDR string, got {_kind(value)}"
    if "%" in value:
        return f"scoped IPv6 network {value[:64]!r} is not routable"
    address, _, length = value.partition("/")
    packed = _address(address)
    width = len(packed) * 8 if packed else 0
    if not (packed and length.isdigit() and length == str(int(length))
            and int(length) <= width):
        return f"not a canonical CIDR network: {value[:64]!r}"
    if int.from_bytes(packed, "big") & ((1 << (width - int(length))) - 1):
        return f"network has host bits set: {value[:64]!r}"
    return None


_FQDN = re.compile(r"(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\.)+(?!-)[a-z0-9_-]*[a-z_-][a-z0-9_-]*(?<!-)")


def _fqdn(value: Any) -> str | None:
    if type(value) is not str:
        return f"expected a domain name string, got {_kind(value)}"
    if len(value) > 253 or not _FQDN.fullmatch(value):
        return f"not a lowercase A-label domain name: {value[:64]!r}"
    return None


_WHITESPACE = re.compile(r"\s")


def _url(value: Any) -> str | None:
    reason = _string(value, fields.MAX_URL)
    if reason is None and ("://" not in value or _WHITESPACE.search(value)):
        reason = f"not a canonical URL: {value[:64]!r}"
    return reason


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not int:
            return f"expected an integer, got {_kind(value)}"
        return None if low <= value <= high else f"{value} out of range {low}..{high}"
    return check


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if type(value) not in (int, float):
            return f"expected a number, got {_kind(value)}"
        if not (math.isfinite(value) and low <= value <= high):
            return f"{value} out of range {low}..{high}"
        return None
    return check


_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")


def _timestamp(value: Any) -> str | None:
    if type(value) is not str or not _TIME.fullmatch(value):
        return f"expected an ISO 8601 UTC time, got {str(value)[:40]!r}"
    return None


def _one_of(allowed: frozenset[str], what: str) -> Check:
    def check(value: Any) -> str | None:
        return None if type(value) is str and value in allowed else \
            f"not a known {what}: {str(value)[:40]!r}"
    return check


def _country(value: Any) -> str | None:
    if type(value) is not str or len(value) != 2 or not value.isascii() or not value.isupper():
        return f"not an ISO 3166 alpha-2 country code: {str(value)[:16]!r}"
    return None


def _boolean(value: Any) -> str | None:
    return None if type(value) is bool else f"expected a boolean, got {_kind(value)}"


# the check for each field validator `record.VALIDATORS` uses: a record normalise_indicator
# produced always passes, and the check costs microseconds instead of re-validating
_CHECK_OF: dict[Callable[..., Any], Check] = {
    fields.ip: _ip,
    fields.network: _network,
    fields.fqdn: _fqdn,
    fields.port: _integer(0, 65535),
    fields.asn: _integer(1, 4294967295),
    fields.integer: _integer(-MAX_INT + 1, MAX_INT - 1),
    fields.timestamp: _timestamp,
    fields.confidence: _number(0, 100),
    fields.latitude: _number(-90, 90),
    fields.longitude: _number(-180, 180),
    fields.country_code: _country,
    fields.tlp: _one_of(frozenset(fields.TLP_LEVELS), "TLP level"),
    fields.boolean: _boolean,
}
FIELD_CHECKS: dict[str, Check] = {
    name: _CHECK_OF.get(validator, _string) for name, validator in VALIDATORS.items()}
FIELD_CHECKS.update({
    "source.url": _url,
    "destination.url": _url,
    "source.urlpath": lambda v: _string(v, fields.MAX_URL),
    "destination.urlpath": lambda v: _string(v, fields.MAX_URL),
    "classification.type": _one_of(frozenset(TAXONOMY_OF_TYPE), "classification type"),
    "classification.taxonomy": _one_of(TAXONOMIES, "classification taxonomy"),
})
LOCATORS = ("url", "fqdn", "ip", "network", "asn")


def _tree(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"source": {"ip": check, ...}, ...}: the shape a record is walked against."""
    tree: dict[str, Any] = {}
    for name, check in flat.items():
        *groups, leaf = name.split(".")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = check
    return tree


class _Budget:
    """Counts values while a record is walked: a wide record fails as surely as a deep one."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_VALUES


Found = tuple[str, str] | None  # (field, reason) of the first violation


def _fields(node: dict[Any, Any], shape: dict[str, Any], depth: int, budget: _Budget) -> Found:
    """The first field of `node` that breaks `shape`. The hot path of every stage's decoding:
    the common leaf kinds are checked inline (a call per field costs more than the check) and
    names are only built for the violation, on the way out."""
    budget.left -= len(node)
    if budget.left < 0:
        return "", f"more than {MAX_VALUES} values"
    for key, value in node.items():
        spec: Any = shape.get(key)
        kind = spec.__class__
        if kind is _Text:  # most fields: bounded text
            if value.__class__ is str and 0 < len(value) <= spec.limit:
                continue
            return key, _string(value, spec.limit) or "bad text"
        if kind is frozenset:  # a vocabulary: TLP, classification type and taxonomy
            if value.__class__ is str and value in spec:
                continue
            return key, f"not a known value: {str(value)[:40]!r}"
        if kind is range:  # an integer range: port, ASN
            if value.__class__ is int and value in spec:
                continue
            return key, f"expected an integer in {spec.start}..{spec.stop - 1}, got " \
                        f"{str(value)[:40]!r}"
        if kind is dict:  # a known group
            if value.__class__ is not dict:
                return key, f"expected an object, got {_kind(value)}"
            found = _fields(value, spec, depth + 1, budget)
            if found:
                return f"{key}.{found[0]}", found[1]
        elif spec is _extra:
            if value.__class__ is not dict:
                return key, f"expected an object, got {_kind(value)}"
            found = _data(value, "", 1, budget)
            if found:
                return (f"{key}.{found[0]}" if found[0] else key), found[1]
        elif spec is not None:  # a known field with its own check
            if reason := spec(value):
                return key, reason
        else:  # a field the pipeline does not know: a string, as normalise makes it
            if key.__class__ is not str or not key or len(key) > MAX_KEY:
                return str(key)[:40], "bad field name"
            if value.__class__ is dict:
                if depth >= 3:
                    return key, "groups nested deeper than IntelMQ's field names (4 levels)"
                found = _fields(value, _UNKNOWN, depth + 1, budget)
                if found:
                    return f"{key}.{found[0]}", found[1]
            elif reason := _string(value):
                return key, reason
    return None


_UNKNOWN: dict[str, Any] = {}


def _extra(value: Any) -> str | None:
    """Marks `extra` in SHAPE: free-form data, walked by `_data` within the record's budget."""
    raise NotImplementedError


def _data(value: Any, name: str, depth: int, budget: _Budget) -> Found:
    """Bounds for free-form JSON data (`extra`): depth, list sizes, value count, numbers."""
    if depth > MAX_DEPTH:
        return name, f"nested deeper than {MAX_DEPTH} levels"
    kind = value.__class__
    if kind is dict:
        budget.left -= len(value)
        if budget.left < 0:
            return name, f"more than {MAX_VALUES} values"
        for key, item in value.items():
            if key.__class__ is not str or len(key) > MAX_KEY:
                return name, f"bad key {str(key)[:40]!r}"
            if not (item is None or item.__class__ is str or item.__class__ is bool):
                found = _data(item, f"{name}.{key}" if name else key, depth + 1, budget)
                if found:
                    return found
    elif kind is list or kind is tuple:
        if len(value) > MAX_LIST:
            return name, f"list of {len(value)} items (limit {MAX_LIST})"
        budget.left -= len(value)
        if budget.left < 0:
            return name, f"more than {MAX_VALUES} values"
        for index, item in enumerate(value):
            if not (item is None or item.__class__ is str or item.__class__ is bool):
                found = _data(item, f"{name}[{index}]", depth + 1, budget)
                if found:
                    return found
    elif kind is int:
        if not -MAX_INT < value < MAX_INT:
            return name, "integer beyond 64 bits"
    elif kind is float:
        if not math.isfinite(value):
            return name, "number is not finite"
    elif not (value is None or kind is str or kind is bool):
        return name, f"not a JSON value: {_kind(value)}"
    return None


class _Text:
    """Leaf spec: text of 1..limit characters (checked inline by `_fields`)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit


def _memo(check: Check) -> Check:
    """`check` remembered for the strings it saw: addresses, networks, names and times repeat
    across records (and a batch), so most are one dict lookup."""
    cached = lru_cache(maxsize=1 << 16)(check)

    def memoised(value: Any) -> str | None:
        return cached(value) if value.__class__ is str else check(value)
    return memoised


_URL_TEXT, _TEXT = _Text(fields.MAX_URL), _Text(fields.MAX_STRING)
_COMPILED: dict[Any, Any] = {
    _string: _TEXT,
    _ip: _memo(_ip), _network: _memo(_network), _fqdn: _memo(_fqdn),
    _timestamp: _memo(_timestamp), _country: _memo(_country),
    _CHECK_OF[fields.port]: range(0, 65536), _CHECK_OF[fields.asn]: range(1, 4294967296),
    FIELD_CHECKS["tlp"]: frozenset(fields.TLP_LEVELS),
    FIELD_CHECKS["classification.type"]: frozenset(TAXONOMY_OF_TYPE),
    FIELD_CHECKS["classification.taxonomy"]: TAXONOMIES,
    FIELD_CHECKS["source.urlpath"]: _URL_TEXT, FIELD_CHECKS["destination.urlpath"]: _URL_TEXT,
}
SHAPE = _tree({**{name: _COMPILED.get(check, check) for name, check in FIELD_CHECKS.items()},
               "extra": _extra})


def violation(record: Any) -> tuple[str, str] | None:
    """(field, reason) of the first way `record` breaks the contract, or None if it holds.

    Size and Unicode are properties of the encoding: `seal` checks them, and a record decoded
    from bytes holds them when those bytes were within MAX_RECORD_BYTES (orjson refuses lone
    surrogates).
    """
    if type(record) is not dict:
        return "record", f"expected a JSON object, got {_kind(record)}"
    found = _fields(record, SHAPE, 0, _Budget())
    if found:
        return (found[0].rstrip(".") or "record"), found[1]
    # the walk made every group present a dict
    classification: dict[str, Any] = record.get("classification") or {}
    time: dict[str, Any] = record.get("time") or {}
    for name, group, leaf in (("classification.type", classification, "type"),
                              ("classification.taxonomy", classification, "taxonomy"),
                              ("time.observation", time, "observation")):
        if leaf not in group:
            return name, "missing"
    if TAXONOMY_OF_TYPE[classification["type"]] != classification["taxonomy"]:
        return "classification.taxonomy", "does not match classification.type"
    source = record.get("source")
    if not source or not any(kind in source for kind in LOCATORS):
        return "source", "no routable locator (source url, fqdn, ip, network or asn)"
    return None


_KEY = re.compile(rb"[A-Za-z0-9_.:-]{1,128}")


def check_key(key: bytes | None) -> str | None:
    """Why a message key breaks the contract, or None. Keys are what the stages write (the
    32-hex indicator key) or absent; the match stage reads them as text."""
    if key is None or _KEY.fullmatch(key):
        return None
    return f"message key is not an indicator key: {key[:40]!r}"


def check_record(record: Any, size: int | None = None) -> str | None:
    """Why `record` (decoded from `size` bytes, when known) breaks the contract, or None.

    The hook every stage runs on what it decodes, before its transforms see it.
    """
    if size is not None and size > MAX_RECORD_BYTES:
        return f"record of {size} bytes (limit {MAX_RECORD_BYTES})"
    found = violation(record)
    return f"{found[0]}: {found[1]}" if found else None


def seal(record: dict[str, Any]) -> bytes:
    """The record's wire bytes (compact UTF-8 JSON); InvalidRecord when it cannot be sent."""
    try:
        value = orjson.dumps(record)
    except TypeError as exc:  # orjson: lone surrogates, >64-bit ints, unserialisable types
        where = _bad_text(record)
        if where is not None:
            raise InvalidRecord("not valid Unicode (a lone surrogate)", where) from None
        raise InvalidRecord(f"not encodable as JSON: {exc}"[:200]) from None
    if len(value) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"record of {len(value)} bytes encoded (limit {MAX_RECORD_BYTES})")
    return value


def _bad_text(value: Any, name: str = "") -> str | None:
    """The field holding a string that is not valid Unicode, if any (for the reason)."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else name or "record"
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{name}.{key}" if name else str(key)
            if isinstance(key, str) and not _encodes(key):
                return here.encode("utf-8", "backslashreplace").decode()
            found = _bad_text(item, here)
            if found:
                return found.encode("utf-8", "backslashreplace").decode()
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _bad_text(item, f"{name}[{index}]")
            if found:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def admit(record: Any, defaults: Mapping[str, Any] | None = None) -> Admitted:
    """Normalise a parsed indicator (nested or flat IntelMQ names), check it, encode it.

    The one way onto `indicators.raw`: feed ingest and contributions both call it. Raises
    `InvalidRecord` naming the field at fault.
    """
    clean = normalise_indicator(record, defaults)
    found = violation(clean)
    if found:
        raise InvalidRecord(found[1], found[0])
    return Admitted(clean, indicator_key(clean), seal(clean))


def admit_json(raw: bytes, defaults: Mapping[str, Any] | None = None) -> Admitted:
    """`admit` for one JSON object given as bytes (a line of a feed, a contribution)."""
    return admit(decode_object(raw), defaults)


def decode_object(raw: bytes) -> dict[str, Any]:
    """One JSON object from bytes, or InvalidRecord saying why not (size, UTF-8, JSON)."""
    if len(raw) > MAX_UNIT_BYTES:
        raise InvalidRecord(f"item too large ({len(raw)} bytes, limit {MAX_UNIT_BYTES})")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(_json_reason(raw, exc)) from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"expected a JSON object, got {_kind(value)}")
    return value


def _json_reason(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 at byte {bad.start}"
    return f"broken JSON: {exc.msg} at column {exc.colno}"[:300]


__all__ = [
    "MAX_RECORD_BYTES",
    "Admitted",
    "admit",
    "admit_json",
    "check_key",
    "check_record",
    "decode_object",
    "seal",
    "violation",
]
