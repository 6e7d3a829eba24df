"""DNS enrichment: resolve `source.fqdn` of domain and URL indicators that have no address.

`Resolver` is the resource: dnspython against one configured nameserver, a thread pool that
bounds the queries in flight, and a bounded LRU cache that honours TTLs (answers for their
record TTL, NXDOMAIN and "no address" for `negative_ttl`; timeouts and server failures are
not cached, they are transient). `enrich_dns` is the batch function a stage calls: one
`resolve_many` per batch, so a batch's lookups overlap instead of queueing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.rcode
import dns.rdatatype
import dns.resolver

MAX_ADDRESSES = 16  # per family kept in extra.dns; fast-flux names return hundreds
TRANSIENT = frozenset({"timeout", "servfail", "error"})


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """Addresses of one name, or why there are none (`error`: nxdomain, nodata, timeout,
    servfail, refused, error). `ttl` is how long (seconds) the answer may be cached."""

    name: str
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    error: str | None = None
    ttl: float = 0.0

    @property
    def address(self) -> str | None:
        """The address to route by: the first A, else the first AAAA."""
        return self.a[0] if self.a else self.aaaa[0] if self.aaaa else None

    def as_extra(self) -> dict[str, Any]:
        """The `extra.dns` value."""
        if self.error is not None:
            return {"name": self.name, "error": self.error}
        return {"name": self.name, "a": list(self.a[:MAX_ADDRESSES]),
                "aaaa": list(self.aaaa[:MAX_ADDRESSES])}


class TtlCache:
    """A bounded LRU of name -> DnsAnswer, each entry valid for its own TTL. Not thread-safe:
    only the thread calling `resolve_many` touches it."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, DnsAnswer]] = OrderedDict()

    def get(self, name: str) -> DnsAnswer | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[name]
            return None
        self._entries.move_to_end(name)
        return entry[1]

    def put(self, answer: DnsAnswer) -> None:
        if answer.ttl <= 0 or self.size <= 0:
            return
        self._entries[answer.name] = (self._clock() + answer.ttl, answer)
        self._entries.move_to_end(answer.name)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Resolver:
    """Resolves names (A and AAAA) against one nameserver, concurrently and cached.

    `timeout` bounds each query (seconds); `concurrency` is the most queries in flight;
    `cache_size` the most names cached; cached TTLs are clamped to [min_ttl, max_ttl].
    """

    def __init__(self, nameserver: str = "127.0.0.1", port: int = 53, *, timeout: float = 2.0,
                 concurrency: int = 32, cache_size: int = 100_000, min_ttl: float = 0.0,
                 max_ttl: float = 3600.0, negative_ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._resolver = dns.resolver.Resolver(configure=False)
        self._resolver.nameservers = [nameserver]
        self._resolver.port = port
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dns")
        self.cache = TtlCache(cache_size, clock)
        self.min_ttl, self.max_ttl, self.negative_ttl = min_ttl, max_ttl, negative_ttl
        self.queries = 0  # queries sent to the nameserver, for tests and metrics
        self._count_lock = threading.Lock()

    def resolve_many(self, names: Iterable[str]) -> dict[str, DnsAnswer]:
        """Answer for each distinct name; cached names cost nothing, the rest go out at once."""
        answers: dict[str, DnsAnswer] = {}
        todo: dict[str, None] = {}  # ordered set: batches repeat names
        for name in names:
            if name in answers or name in todo:
                continue
            cached = self.cache.get(name)
            if cached is not None:
                answers[name] = cached
            else:
                todo[name] = None
        futures = {(name, rdtype): self._pool.submit(self._query, name, rdtype)
                   for name in todo for rdtype in ("A", "AAAA")}
        for name in todo:
            answer = self._combine(name, futures[name, "A"].result(),
                                   futures[name, "AAAA"].result())
            if answer.error not in TRANSIENT:
                self.cache.put(answer)
            answers[name] = answer
        return answers

    def resolve(self, name: str) -> DnsAnswer:
        """Answer for one name (a batch of one)."""
        return self.resolve_many([name])[name]

    def _query(self, name: str, rdtype: str) -> tuple[tuple[str, ...], str | None, float]:
        """(addresses, error, ttl) of one query; never raises."""
        with self._count_lock:
            self.queries += 1
        try:
            answer = self._resolver.resolve(name + ".", rdtype, search=False,
                                            raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return (), "nxdomain", self.negative_ttl
        except dns.exception.Timeout:
            return (), "timeout", 0.0
        except dns.resolver.NoNameservers as exc:
            return (), _rcode_error(exc), 0.0
        except Exception:  # a stage must never die of one odd name
            return (), "error", 0.0
        if answer.rrset is None:
            return (), "nodata", self.negative_ttl
        return tuple(r.to_text() for r in answer.rrset), None, float(answer.rrset.ttl)

    def _combine(self, name: str, a: tuple[tuple[str, ...], str | None, float],
                 aaaa: tuple[tuple[str, ...], str | None, float]) -> DnsAnswer:
        (v4, error4, ttl4), (v6, error6, ttl6) = a, aaaa
        if v4 or v6:
            # a half-failed answer is still an answer, but only cached if both halves were real
            transient = error4 in TRANSIENT or error6 in TRANSIENT
            ttl = min(t for t, v in ((ttl4, v4), (ttl6, v6)) if v)
            ttl = 0.0 if transient else self._clamp(ttl)
            return DnsAnswer(name, v4, v6, None, ttl)
        errors = {error4, error6}
        for error in ("nxdomain", "timeout", "servfail", "refused", "error"):
            if error in errors:
                return DnsAnswer(name, error=error, ttl=self._negative(error))
        return DnsAnswer(name, error="nodata", ttl=self._negative("nodata"))

    def _clamp(self, ttl: float) -> float:
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def _negative(self, error: str) -> float:
        return min(self.negative_ttl, self.max_ttl) if error in ("nxdomain", "nodata") else 0.0

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rcode_error(exc: dns.resolver.NoNameservers) -> str:
    """"refused" or "servfail" from the server's answer (dnspython folds both into one error)."""
    for *_, response in exc.kwargs.get("errors", []):
        if hasattr(response, "rcode") and response.rcode() == dns.rcode.REFUSED:
            return "refused"
    return "servfail"


def enrich_dns(records: Sequence[dict[str, Any]], resolver: Resolver) -> list[dict[str, Any]]:
    """Resolve source.fqdn of every record that has no source.ip; never raises.

    A resolved record gets source.ip (first A, else first AAAA) and extra.dns = {name, a,
    aaaa}; a failed one gets extra.dns = {name, error} and is otherwise unchanged. Other
    records pass through as they are. Returns new records; the inputs are not modified.
    """
    names = [_name_to_resolve(record) for record in records]
    wanted = [name for name in names if name is not None]
    if not wanted:
        return list(records)
    try:
        answers = resolver.resolve_many(wanted)
    except Exception:  # e.g. resolver closed; report, don't crash the stage
        answers = {name: DnsAnswer(name, error="error") for name in wanted}
    out: list[dict[str, Any]] = []
    for record, name in zip(records, names, strict=True):
        if name is None:
            out.append(record)
            continue
        answer = answers[name]
        extra = {**record.get("extra", {}), "dns": answer.as_extra()}
        address = answer.address
        if address is None:
            out.append({**record, "extra": extra})
        else:
            out.append({**record, "source": {**record["source"], "ip": address}, "extra": extra})
    return out


def _name_to_resolve(record: dict[str, Any]) -> str | None:
    source = record.get("source")
    if not source or source.get("ip") is not None:
        return None
    name = source.get("fqdn")
    return name if isinstance(name, str) and name else None
