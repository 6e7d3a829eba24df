"""Geolocation enrichment: country, city and coordinates of `source.ip` from a MaxMind DB.

`GeoDatabase` is the resource; `enrich_geo` the pure record-to-record function.

The country is `country.iso_code`: where the address is used, which is what a national CERT
subscribes by. `registered_country` (where the block is registered with its RIR) is used only
when the database has no `country` for the network, e.g. anycast, satellite or freshly
allocated space: a registration country is a better guess than none. As with ASNs, the
database's answer replaces the feed's so routing by country is consistent; a differing feed
country is kept in `extra.feed_cc`.

Lookups are cached per network: the database answers with the network an address belongs to
(its leaves are disjoint), so every later address of that network, found or not, is answered
from a dict instead of decoding the City record again (~10 us of the reader against ~2 us;
feeds cluster in networks).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import maxminddb

from threatroute.errors import ConfigError

StrPath = str | PathLike[str]
MODES = {"mmap": maxminddb.MODE_MMAP, "auto": maxminddb.MODE_AUTO}
CACHE_NETWORKS = 500_000  # ~100 MB at most; cleared whole when full (simple, and rare)
_ABSENT = object()


class GeoResult(NamedTuple):
    """What the database knows of an address; a Country database leaves city and location None."""

    cc: str | None
    city: str | None
    latitude: float | None
    longitude: float | None


def database_kind(database_type: str) -> str:
    """ "city" or "country" from metadata database_type (GeoIP2-City, DBIP-Country-Lite...)."""
    if "Country" in database_type:
        return "country"
    if "City" in database_type or "Enterprise" in database_type:
        return "city"
    raise ConfigError(f"not a City or Country database: database_type {database_type!r}")


class GeoDatabase:
    """Lookups in a MaxMind DB (GeoIP2/GeoLite2/DB-IP City or Country), opened once, memory-mapped.

    `mode` is "auto" (the C extension when available, memory-mapped) or "mmap". Raises
    `ConfigError` if the file is missing, not a MaxMind DB, or not a City/Country database.
    """

    def __init__(self, path: StrPath, mode: str = "auto") -> None:
        self.path = Path(path)
        try:
            self._reader = maxminddb.open_database(str(path), MODES[mode])
        except KeyError:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}") from None
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ConfigError(f"cannot open MaxMind DB {path}: {exc}") from None
        self.database_type: str = self._reader.metadata().database_type
        try:
            self.kind = database_kind(self.database_type)
        except ConfigError as exc:
            self._reader.close()
            raise ConfigError(f"{path}: {exc}") from None
        # decoded records are plain dicts; Any spares a cast per field on the hot path
        self._get: Callable[[str], Any] = self._reader.get_with_prefix_len
        self._has_city = self.kind == "city"
        # {address width: {prefix length: {network as int >> (width - length): result}}}
        self._cache: dict[int, dict[int, dict[int, GeoResult | None]]] = {32: {}, 128: {}}
        self._cached = 0

    def lookup(self, ip: str) -> GeoResult | None:
        """Country (and city and location, for City databases) of an address; None if unknown."""
        try:
            packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        except (OSError, TypeError):  # not an address; validated records never get here
            return None
        value, width = int.from_bytes(packed, "big"), len(packed) * 8
        networks = self._cache[width]
        for length, table in networks.items():
            hit = table.get(value >> (width - length), _ABSENT)
            if hit is not _ABSENT:
                return hit  # type: ignore[return-value]
        try:
            data, length = self._get(ip)
        except ValueError:
            return None
        result = self._result(data)
        if self._cached >= CACHE_NETWORKS:
            self._cache, self._cached = {32: {}, 128: {}}, 0
            networks = self._cache[width]
        networks.setdefault(length, {})[value >> (width - length)] = result
        self._cached += 1
        return result

    def _result(self, data: Any) -> GeoResult | None:
        if not data:
            return None
        country = data.get("country") or data.get("registered_country")
        cc = country.get("iso_code") if country else None
        city = latitude = longitude = None
        if self._has_city:
            city_data = data.get("city")
            if city_data:
                city = city_data.get("names", {}).get("en")
            location = data.get("location")
            if location:
                latitude = location.get("latitude")
                longitude = location.get("longitude")
        if cc is None and city is None and latitude is None:
            return None
        return GeoResult(cc, city, latitude, longitude)

    def close(self) -> None:
        """Unmap the file; lookups after this fail."""
        self._reader.close()

    def __enter__(self) -> GeoDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GeoDatabase({str(self.path)!r}, {self.database_type})"


def enrich_geo(record: dict[str, Any], db: GeoDatabase) -> dict[str, Any]:
    """Set source.geolocation.cc, city, latitude, longitude (what `db` has) for source.ip.

    Returns a new record (the input is not modified); records without source.ip or with an
    address the database does not know come back as they are.
    """
    source = record.get("source")
    if not source:
        return record
    ip = source.get("ip")
    if ip is None:
        return record
    result = db.lookup(ip)
    if result is None:
        return record
    cc, city, latitude, longitude = result
    old = source.get("geolocation") or {}
    geo = dict(old)
    if cc is not None:
        geo["cc"] = cc
    if city is not None:
        geo["city"] = city
    if latitude is not None and longitude is not None:
        geo["latitude"] = latitude
        geo["longitude"] = longitude
    new_source = source.copy()
    new_source["geolocation"] = geo
    new = record.copy()
    new["source"] = new_source
    feed_cc = old.get("cc")
    if cc is not None and feed_cc is not None and feed_cc != cc:
        new["extra"] = {**record.get("extra", {}), "feed_cc": feed_cc}
    return new
