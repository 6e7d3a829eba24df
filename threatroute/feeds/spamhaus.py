"""`spamhaus-drop`, `spamhaus-asndrop`: Spamhaus DROP/EDROP (networks) and ASN-DROP lists.

Both the classic text form (`; Last-Modified: ...` banner, then `1.4.0.0/17 ; SBL256893` or
`AS260 ; AE | name`) and the JSON-lines form (`drop_v4.json`, `asndrop.json`) are read.
The banner's Last-Modified is the only time the text list gives, so every entry is dated by
it; the JSON form puts its timestamp last, so its entries carry no time.source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute.errors import InvalidRecord
from threatroute.feeds.base import Context, FeedFormat, Skip, Unit, decode, text_lines


def _with_list_time(stream: IO[bytes]) -> Iterator[Unit]:
    """Data lines, each carrying the banner's Last-Modified seen before it (value: (text, time))."""
    modified: str | None = None
    for unit in text_lines(stream, comments=()):
        stripped = unit.raw.strip()
        if stripped.startswith(b";"):
            key, _, value = stripped.lstrip(b"; ").partition(b":")
            if key.strip().lower() == b"last-modified":
                modified = value.strip().decode("utf-8", "replace")
            continue
        yield Unit(unit.raw, unit.number, modified)


def _json_line(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidRecord("broken JSON line") from None
    if not isinstance(value, dict):
        raise InvalidRecord("expected a JSON object")
    if value.get("type") == "metadata":
        raise Skip("Spamhaus list metadata")
    return value


_DEFAULTS = {"feed.provider": "Spamhaus", "classification.type": "spam", "tlp": "CLEAR"}


class SpamhausDrop(FeedFormat):
    name = "spamhaus-drop"
    description = "Spamhaus DROP/EDROP: networks to drop all traffic from"
    defaults = {**_DEFAULTS, "feed.name": "Spamhaus DROP",
                "feed.url": "https://www.spamhaus.org/drop/drop.txt"}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        yield from _with_list_time(stream)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        text = decode(unit.raw).strip()
        entry = _json_line(text)
        if entry is not None:
            network, sbl = entry.get("cidr"), entry.get("sblid")
        else:
            network, _, sbl = (part.strip() for part in text.partition(";"))
        return [{"source.network": network, "extra.blocklist": sbl, "time.source": unit.value}]


class SpamhausAsnDrop(FeedFormat):
    name = "spamhaus-asndrop"
    description = "Spamhaus ASN-DROP: autonomous systems run by or for criminals"
    defaults = {**_DEFAULTS, "feed.name": "Spamhaus ASN-DROP",
                "feed.url": "https://www.spamhaus.org/drop/asndrop.txt"}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        yield from _with_list_time(stream)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        text = decode(unit.raw).strip()
        entry = _json_line(text)
        if entry is not None:
            asn, cc, as_name = entry.get("asn"), entry.get("cc"), entry.get("asname")
        else:
            asn, _, rest = (part.strip() for part in text.partition(";"))
            cc, _, as_name = (part.strip() for part in rest.partition("|"))
        # the country is where the AS is registered, which is what IntelMQ records too
        return [{"source.asn": asn, "source.geolocation.cc": cc, "source.as_name": as_name,
                 "time.source": unit.value}]
