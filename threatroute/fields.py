"""The one shared set of field validators (IntelMQ harmonization, tightened).

Each validator takes a decoded value and returns its canonical form or raises
`InvalidRecord` with a reason; callers attach the field name. They are used at every edge
where records enter: feed parsers, the native JSON-lines format, the registry.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import idna

from threatroute.errors import InvalidRecord

MAX_STRING = 4096  # longest free-text field accepted; larger is a broken or hostile feed
MAX_URL = 8192
MIN_YEAR, MAX_YEAR = 1990, 2100

TLP_LEVELS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
_TLP_ALIASES = {"WHITE": "CLEAR"}  # TLP 1.0 spelling, still what IntelMQ and MISP emit

# Defanging conventions seen in feeds: hxxp://, example[.]com, example(dot)com, 1.2.3[.]4,
# http[:]//, [://]. Applied before parsing; never to free text.
_REFANG: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^hxxp(s?)", re.IGNORECASE), lambda m: "http" + m[1].lower()),
    (re.compile(r"^fxp", re.IGNORECASE), "ftp"),
    (re.compile(r"\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|\{\s*(?:\.|dot)\s*\}", re.IGNORECASE),
     "."),
    (re.compile(r"\[:\]//|\[://\]"), "://"),
    (re.compile(r"\[:\]"), ":"),
]
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def refang(text: str) -> str:
    """Undo the common defanging conventions (hxxp, [.], (dot), [:])."""
    for pattern, replacement in _REFANG:
        text = pattern.sub(replacement, text)
    return text


def _text(value: object, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidRecord("empty value")
    if len(text) > limit:
        raise InvalidRecord(f"value too long ({len(text)} characters, limit {limit})")
    return text


def string(value: object) -> str:
    """Free text: a non-empty string of bounded length."""
    return _text(value)


def lowercase_string(value: object) -> str:
    return _text(value).lower()


def _unscoped(text: str) -> str:
    # Refused rather than normalised: the zone (`%eth0`) names an interface of the reporting
    # host, and the address without it is link-local, routable by no one (threatroute/contract)
    if "%" in text:
        raise InvalidRecord(f"scoped IPv6 address {text[:64]!r}: the zone is local to the "
                            "reporting host; not routable")
    return text


def ip(value: object) -> str:
    """Canonical IPv4/IPv6 text; IPv4-mapped IPv6 becomes plain IPv4; scoped IPv6 is refused."""
    text = _unscoped(refang(_text(value, 64)).strip("[]"))
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidRecord(f"not an IP address: {text[:64]!r}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def network(value: object) -> str:
    """Canonical CIDR; host bits are cleared (IntelMQ does the same), a bare IP is a /32 or /128."""
    text = _unscoped(refang(_text(value, 64)))
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise InvalidRecord(f"not an IP network: {text[:64]!r}") from None


def fqdn(value: object) -> str:
    """Lowercase IDNA (A-label) domain name without a trailing dot; an IP is not an FQDN."""
    text = refang(_text(value, 1024)).rstrip(".").lower()
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidRecord(f"an IP address is not an FQDN: {text[:64]!r}")
    if text.isascii():
        encoded = text
    else:
        try:
            encoded = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidRecord(f"not a valid IDN: {text[:64]!r} ({exc})") from None
    labels = encoded.split(".")
    if len(encoded) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidRecord(f"not a valid domain name: {text[:64]!r}")
    if labels[-1].isdigit():
        raise InvalidRecord(f"not a valid domain name (numeric TLD): {text[:64]!r}")
    return encoded


@dataclass(frozen=True, slots=True)
class UrlParts:
    """A URL taken apart: exactly one of `fqdn` and `ip` is set."""

    url: str
    fqdn: str | None
    ip: str | None
    port: int | None
    path: str


def url(value: object) -> UrlParts:
    """Refang, check and split a URL; adds http:// when a feed omitted the scheme."""
    text = refang(_text(value, MAX_URL))
    if any(ch.isspace() for ch in text):
        raise InvalidRecord("URL contains whitespace")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        explicit_port = parts.port
    except ValueError as exc:
        raise InvalidRecord(f"not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]{0,15}", scheme):
        raise InvalidRecord(f"bad URL scheme {scheme[:16]!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidRecord("URL has no host")
    address: str | None = None
    domain: str | None = None
    try:
        address = ip(host)
    except InvalidRecord:
        domain = fqdn(host)
    # userinfo is dropped on purpose: credentials in a phishing URL are a victim's, not the
    # indicator
    netloc = f"[{address}]" if address and ":" in address else (address or domain or "")
    if explicit_port is not None:
        netloc += f":{explicit_port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    canonical = f"{scheme}://{netloc}{path}"
    if parts.fragment:
        canonical += "#" + parts.fragment
    return UrlParts(canonical, domain, address, explicit_port, path)


def port(value: object) -> int:
    number = integer(value)
    if not 0 <= number <= 65535:
        raise InvalidRecord(f"port out of range: {number}")
    return number


def integer(value: object) -> int:
    if isinstance(value, bool):
        raise InvalidRecord("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        return int(value)
    raise InvalidRecord(f"expected an integer, got {str(value)[:32]!r}")


def asn(value: object) -> int:
    """AS number 1..4294967295; accepts "AS64500" as well as 64500."""
    if isinstance(value, str):
        value = re.sub(r"^\s*AS", "", value, flags=re.IGNORECASE)
    number = integer(value)
    if not 1 <= number <= 4294967295:
        raise InvalidRecord(f"ASN out of range: {number}")
    return number


def number(value: object) -> float:
    if isinstance(value, bool):
        raise InvalidRecord("expected a number, got a boolean")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise InvalidRecord(f"expected a number, got {value[:32]!r}") from None
    else:
        raise InvalidRecord(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise InvalidRecord("number is not finite")
    return result


def confidence(value: object) -> float:
    """feed.accuracy: 0..100."""
    result = number(value)
    if not 0 <= result <= 100:
        raise InvalidRecord(f"confidence out of range 0-100: {result}")
    return result


def latitude(value: object) -> float:
    result = number(value)
    if not -90 <= result <= 90:
        raise InvalidRecord(f"latitude out of range: {result}")
    return result


def longitude(value: object) -> float:
    result = number(value)
    if not -180 <= result <= 180:
        raise InvalidRecord(f"longitude out of range: {result}")
    return result


def country_code(value: object) -> str:
    text = _text(value, 8).upper()
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise InvalidRecord(f"not an ISO 3166 alpha-2 country code: {text!r}")
    return text


def tlp(value: object) -> str:
    """TLP 2.0 level in upper case; "TLP:" prefix and the old WHITE are accepted."""
    text = _text(value, 32).upper().replace(" ", "")
    text = text.removeprefix("TLP:")
    text = _TLP_ALIASES.get(text, text)
    if text not in TLP_LEVELS:
        raise InvalidRecord(f"unknown TLP {value!r}; expected one of {', '.join(TLP_LEVELS)}")
    return text


def timestamp(value: object) -> str:
    """Any common time notation to ISO 8601 UTC (`2024-01-02T03:04:05+00:00`, IntelMQ's form).

    ISO 8601 (with `Z`, `UTC`, `+0000` or no zone), RFC 2822 and epoch numbers. Naive times
    are taken as UTC (what feeds mean by them); epoch numbers may be seconds or milliseconds.
    """
    moment: datetime
    if isinstance(value, bool):
        raise InvalidRecord("expected a time, got a boolean")
    epoch = isinstance(value, str) and re.fullmatch(r"\s*\d{9,13}(\.\d+)?\s*", value)
    if isinstance(value, int | float | str) and (epoch or not isinstance(value, str)):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds
            seconds /= 1000
        try:
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidRecord(f"epoch time out of range: {value!r}") from None
    else:
        text = _text(value, 64)
        normalised = re.sub(r"\s*(UTC|GMT|Z)$", "+00:00", text, flags=re.IGNORECASE)
        normalised = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", normalised)
        try:
            moment = datetime.fromisoformat(normalised)
        except ValueError:
            moment = _rfc2822(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InvalidRecord(f"time out of range {MIN_YEAR}-{MAX_YEAR}: {value!r}")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _rfc2822(text: str) -> datetime:
    """`Mon, 14 Sep 2015 04:39:22 GMT`: HTTP headers and list banners (Spamhaus) use it."""
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise InvalidRecord(f"not a recognised time: {text[:64]!r}") from None


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def parse_time(text: str) -> datetime:
    """Inverse of `timestamp` for already-canonical values."""
    return datetime.fromisoformat(text)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "false", "no", "0"}:
        return value.strip().lower() in {"true", "yes", "1"}
    raise InvalidRecord(f"expected a boolean, got {str(value)[:16]!r}")


__all__ = [
    "TLP_LEVELS",
    "UrlParts",
    "asn",
    "boolean",
    "confidence",
    "country_code",
    "fqdn",
    "ip",
    "latitude",
    "longitude",
    "network",
    "now",
    "parse_time",
    "port",
    "refang",
    "string",
    "timestamp",
    "tlp",
    "url",
]
