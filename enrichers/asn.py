"""ASN enrichment: origin AS, routed prefix and AS name of `source.ip`, from pyasn tables.

`AsnDatabase` is the resource (opened once, a context manager); `enrich_asn` is the pure
record-to-record function a stage maps over its batch.

When the feed already gave `source.asn`, our lookup wins: the owner of an address is decided
by the one routing table every stage shares, so the same address always lands with the same
recipient, whatever the feed believed (feeds carry stale or guessed ASNs). A differing feed
value is kept in `extra.feed_asn` so analysts can see the disagreement. If our table has no
route for the address, the feed's ASN is kept: it is the only answer there is. source.network
and source.as_name always describe our ASN (a feed's as_name for another ASN is dropped).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import pyasn

from threatroute.errors import ConfigError

StrPath = str | PathLike[str]
_GZIP_MAGIC = b"\x1f\x8b"
CACHE_PREFIXES = 600_000  # results kept per routed prefix (~100 MB at most); cleared when full


class AsnResult(NamedTuple):
    """Origin AS of an address: the ASN, the most specific routed prefix, the AS name if known."""

    asn: int
    network: str
    as_name: str | None


def read_text(path: StrPath) -> str:
    """A file's text, gunzipped when it starts with the gzip magic (whatever its name)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if data[:2] == _GZIP_MAGIC:
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _load_names(path: StrPath) -> dict[int, str]:
    try:
        names = json.loads(read_text(path))
        return {int(asn): str(name) for asn, name in names.items()}
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: not an AS-names JSON object ({exc})") from None


class AsnDatabase:
    """Longest-prefix ASN lookups over pyasn IPASN tables (IPv4 and IPv6).

    `tables` is one file or several (e.g. a v4 and a v6 table, or one mixed file), each plain
    or gzip'd `prefix<TAB>asn` text with `;` comments, as pyasn's converter writes them.
    `names` is pyasn's AS-names JSON (`{"15169": "GOOGLE - Google Inc., US"}`), plain or gzip'd.
    Raises `ConfigError` naming the file when a table or the names file is unusable.
    """

    def __init__(self, tables: StrPath | Iterable[StrPath], names: StrPath | None = None) -> None:
        paths = [tables] if isinstance(tables, str | PathLike) else list(tables)
        if not paths:
            raise ConfigError("no IPASN table given")
        self.paths = [Path(p) for p in paths]
        text = "\n".join(read_text(p) for p in self.paths)
        where = ", ".join(map(str, self.paths))
        try:
            # one radix tree from all files: pyasn parses v4 and v6 lines alike
            self._db = pyasn.pyasn(None, ipasn_string=text)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad IPASN table ({exc})") from None
        if not self._db._records:
            raise ConfigError(f"{where}: IPASN table has no prefixes")
        self.prefix_count: int = self._db._records
        # bound once: the hot path is one C call plus a dict lookup
        self._search = self._db.radix.search_best
        self._names: dict[int, str] = _load_names(names) if names is not None else {}
        # the result per radix node: the tree hands out the same node object for every
        # address of a prefix, and building the result (node.prefix formats a string, the
        # name lookup) costs twice the search (benchmarks/bench_intelmq.py)
        self._results: dict[object, AsnResult] = {}

    def lookup(self, ip: str) -> AsnResult | None:
        """Origin AS of a canonical IPv4/IPv6 address string; None if unrouted or not an IP."""
        return self.lookup_many((ip,))[0]

    def lookup_many(self, ips: Iterable[str | None]) -> list[AsnResult | None]:
        """`lookup` of each address (None for None): the batch-shaped fast path, one bound
        search and one dict lookup per address and no call per address."""
        search, results = self._search, self._results
        found: list[AsnResult | None] = []
        for ip in ips:
            if ip is None:
                found.append(None)
                continue
            try:
                node = search(ip)
            except ValueError:  # not an address; validated records never get here
                found.append(None)
                continue
            if node is None:
                found.append(None)
                continue
            result = results.get(node)
            if result is None:
                result = self._result_of(node)
            found.append(result)
        return found

    def _result_of(self, node: Any) -> AsnResult:
        if len(self._results) >= CACHE_PREFIXES:
            self._results.clear()
        asn = node.asn
        result = self._results[node] = _make_result((asn, node.prefix, self._names.get(asn)))
        return result

    def as_name(self, asn: int) -> str | None:
        """The AS name for a number, if the names file has it."""
        return self._names.get(asn)

    def close(self) -> None:
        """Drop the tables; lookups after this fail."""
        self._db = None
        self._search = _closed
        self._names = {}
        self._results = {}

    def __enter__(self) -> AsnDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsnDatabase({[str(p) for p in self.paths]}, {self.prefix_count} prefixes)"


# builds an AsnResult from a tuple without NamedTuple.__new__'s argument handling (hot path)
_make_result = AsnResult._make


def _closed(ip: str) -> None:
    raise ConfigError("AsnDatabase is closed")


def enrich_asn(record: dict[str, Any], db: AsnDatabase) -> dict[str, Any]:
    """Set source.asn, source.network and source.as_name from `db` for a record with source.ip.

    Returns a new record (the input is not modified; unchanged parts are shared). Records
    without source.ip, or whose address is not routed, come back as they are.
    """
    return enrich_asn_many([record], db)[0]


def enrich_asn_many(records: list[dict[str, Any]], db: AsnDatabase) -> list[dict[str, Any]]:
    """`enrich_asn` of each record, with one batch lookup (`AsnDatabase.lookup_many`)."""
    ips = [(record.get("source") or {}).get("ip") for record in records]
    return [record if result is None else _with_origin(record, result)
            for record, result in zip(records, db.lookup_many(ips), strict=True)]


def _with_origin(record: dict[str, Any], result: AsnResult) -> dict[str, Any]:
    source = record["source"]
    asn, network, as_name = result
    # copy-then-set: about half the cost of {**source, ...} on this path
    new_source = source.copy()
    new_source["asn"] = asn
    new_source["network"] = network
    if as_name is not None:
        new_source["as_name"] = as_name
    new = record.copy()
    new["source"] = new_source
    feed_asn = source.get("asn")
    if feed_asn is not None and feed_asn != asn:
        if as_name is None:  # the feed's AS name described the feed's ASN, not ours
            new_source.pop("as_name", None)
        new["extra"] = {**record.get("extra", {}), "feed_asn": feed_asn}
    return new
