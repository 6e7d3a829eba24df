"""The enrichment stages bound to their topics: asn (with DNS), geo and hoster.

Each stage is a source topic, a sink topic, and a transform built from the pure enrichers;
data files are wrapped in `Reloading` so a replaced file is picked up without a restart, and
the hoster stage follows the `recipients` topic through a `RegistryView`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from threatroute import topics
from threatroute.enrichers.asn import AsnDatabase, enrich_asn, enrich_asn_many
from threatroute.enrichers.dns import Resolver, enrich_dns
from threatroute.enrichers.geo import GeoDatabase, enrich_geo
from threatroute.enrichers.hoster import enrich_owner
from threatroute.enrichers.reloading import Reloading
from threatroute.errors import ConfigError
from threatroute.matchers.ownership import OwnershipIndex
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.runtime import heap
from threatroute.streams.runtime.registry import registry_view
from threatroute.streams.runtime.step import BaseStage, Input, Output, Step, indicator_contract

log = logging.getLogger(__name__)
Record = dict[str, Any]


class EnrichStage(BaseStage):
    """A record-to-record stage; one record that breaks the transform is refused, not fatal.

    `prepare` does batch work before the transforms (DNS resolution). `transform_many` is
    the batch-shaped fast path of `transform` (one batch lookup): if it raises, the batch
    goes through `transform` record by record, so only the record that breaks it is refused.
    A lone stage commits past what a fused chain already carried past it (`skip_header`,
    streams/runtime/chain.py).
    """

    dead_letter_topic = topics.INVALID
    skip_header = topics.CARRIED_HEADER
    check = staticmethod(indicator_contract)

    def __init__(self, name: str, source: str, sink: str, transform: Callable[[Record], Record],
                 prepare: Callable[[list[Record]], list[Record]] | None = None,
                 transform_many: Callable[[list[Record]], list[Record]] | None = None,
                 closers: list[Callable[[], None]] | None = None) -> None:
        self.name, self.source, self.sink = name, source, sink
        self.transform, self.prepare, self.transform_many = transform, prepare, transform_many
        self.closers = closers or []
        self.group = topics.group_id(name)
        self.subscription = [source]

    def process(self, inputs: list[Input], step: Step) -> None:
        sink = self.sink
        for item, record in self.run(inputs, step):
            step.send(Output(sink, item.key, record))
        step.observed.extend(observation_times(inputs))

    def run(self, inputs: list[Input], step: Step) -> list[tuple[Input, Record]]:
        """The enriched records of `inputs` (those refused are added to `step`)."""
        records = [item.record for item in inputs]
        if self.prepare:
            records = self.prepare(records)
        if self.transform_many:
            try:
                return list(zip(inputs, self.transform_many(records), strict=True))
            except Exception:
                pass  # one record breaks the batch path: find it below, record by record
        done = []
        transform = self.transform
        for item, record in zip(inputs, records, strict=True):
            try:
                done.append((item, transform(record)))
            except Exception as exc:  # a transform bug costs one record, never the stage
                refuse(step, self.name, item, exc)
        return done

    def close(self) -> None:
        for close in self.closers:
            close()


def observation_times(inputs: list[Input]) -> list[str]:
    """The records' time.observation stamps (for the latency metric)."""
    times = (i.record.get("time") for i in inputs)
    return [o for t in times if isinstance(t, dict) and isinstance(o := t.get("observation"), str)]


def refuse(step: Step, stage: str, item: Input, exc: Exception) -> None:
    """Dead-letter a record a stage's transform could not handle.

    Records reaching a transform hold the record contract, so this is a bug: logged, in one
    line (a stage never logs a traceback for a record; the dead letter keeps the bytes).
    """
    log.warning("%s: record refused: %s: %s", stage, type(exc).__name__, str(exc)[:200])
    step.refuse(item.raw, f"{stage} failed: {type(exc).__name__}: {exc}", origin=item)


def _require(path: Path | None, what: str, flag: str) -> Path:
    if path is None or not path.exists():
        raise ConfigError(f"{what} not found ({path}); give {flag}, set [data] in the config, "
                          "or run `threatroute data build` for the demo set")
    return path


def _report_reload_error(error: Exception) -> None:
    log.error("replaced data file is unusable, still serving the previous one: %s", error)


def nameserver(spec: str) -> tuple[str, int] | None:
    """"" = no resolution; "system" = /etc/resolv.conf's first nameserver; else "ip[:port]"."""
    if not spec:
        return None
    if spec == "system":
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1], 53
        raise ConfigError("dns.nameserver = system, but /etc/resolv.conf names no nameserver")
    host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "53")
    return host, int(port or 53)


def asn_stage(config: Config) -> EnrichStage:
    ipasn = _require(config.ipasn, "IPASN table", "--ipasn")
    files = [ipasn] + ([config.asnames] if config.asnames else [])
    database = Reloading(lambda: AsnDatabase(ipasn, config.asnames), files,
                         interval=config.reload_seconds, on_error=_report_reload_error)
    stage = EnrichStage("asn", topics.RAW, topics.ASN,
                        lambda record: enrich_asn(record, database.get()),
                        transform_many=lambda records: enrich_asn_many(records, database.get()),
                        closers=[database.close])
    server = nameserver(config.dns_nameserver)
    if server:
        resolver = Resolver(server[0], server[1], timeout=config.dns_timeout,
                            concurrency=config.dns_concurrency, cache_size=config.dns_cache_size)
        stage.prepare = lambda records: enrich_dns(records, resolver)
        stage.closers.append(resolver.close)
    return stage


def geo_stage(config: Config) -> EnrichStage:
    path = _require(config.geoip, "MaxMind database", "--geoip")
    database = Reloading(lambda: GeoDatabase(path), [path], interval=config.reload_seconds,
                         on_error=_report_reload_error)
    return EnrichStage("geo", topics.ASN, topics.GEO,
                       lambda record: enrich_geo(record, database.get()),
                       closers=[database.close])


class LiveOwnership:
    """The ownership index, rebuilt whenever the registry topic changes."""

    def __init__(self) -> None:
        self.index = OwnershipIndex.build([])

    def rebuild(self, recipients: Mapping[str, Recipient]) -> None:
        self.index = OwnershipIndex.build(recipients.values())  # one assignment: atomic swap
        heap.freeze()
        log.info("ownership index rebuilt: %d recipients", len(recipients))


def hoster_stage(config: Config) -> EnrichStage:
    live = LiveOwnership()
    view = registry_view(config, live.rebuild).start()
    return EnrichStage("hoster", topics.GEO, topics.ENRICHED,
                       lambda record: enrich_owner(record, live.index), closers=[view.stop])


STAGES: dict[str, Callable[[Config], EnrichStage]] = {
    "asn": asn_stage,
    "geo": geo_stage,
    "hoster": hoster_stage,
}
