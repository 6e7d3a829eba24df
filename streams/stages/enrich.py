"""The enrichment stages bound to their topics: asn (with DNS), geo and hoster.

Each stage is a source topic, a sink topic, and a transform built from the pure enrichers;
data files are wrapped in `Reloading` so a replaced file is picked up without a restart, and
the hoster stage follows the `recipients` topic through a `RegistryView`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threatroute.enrichers.asn import AsnDatabase, enrich_asn
from threatroute.enrichers.dns import Resolver, enrich_dns
from threatroute.enrichers.geo import GeoDatabase, enrich_geo
from threatroute.enrichers.hoster import enrich_owner
from threatroute.enrichers.reloading import Reloading
from threatroute.errors import ConfigError
from threatroute.matchers.ownership import OwnershipIndex
from threatroute.registry import Recipient
from threatroute.streams.config import Config
from threatroute.streams.runtime.loop import Input, Output, Refused
from threatroute.streams.runtime.registry import registry_view

log = logging.getLogger(__name__)
INVALID = "indicators.invalid"
Record = dict[str, Any]


@dataclass
class EnrichStage:
    """A record-to-record stage; one record that breaks the transform is refused, not fatal."""

    name: str
    source: str
    sink: str
    transform: Callable[[Record], Record]
    prepare: Callable[[list[Record]], list[Record]] | None = None  # batch work (DNS)
    dead_letter_topic: str = INVALID
    closers: list[Callable[[], None]] = field(default_factory=list)

    def process(self, batch: list[Input]) -> Iterable[Output | Refused]:
        records = [item.record for item in batch]
        if self.prepare:
            records = self.prepare(records)
        transform, sink = self.transform, self.sink
        for item, record in zip(batch, records, strict=True):
            try:
                yield Output(sink, item.key, transform(record))
            except Exception as exc:  # a transform bug costs one record, never the stage
                yield refusal(self.name, item.raw, exc)

    def close(self) -> None:
        for close in self.closers:
            close()


def refusal(stage: str, raw: bytes, exc: Exception) -> Refused:
    """The dead letter for a record a stage's transform could not handle.

    Records reaching a transform hold the record contract, so this is a bug: logged, in one
    line (a stage never logs a traceback for a record; the dead letter keeps the bytes).
    """
    log.warning("%s: record refused: %s: %s", stage, type(exc).__name__, str(exc)[:200])
    return Refused(raw, f"{stage} failed: {type(exc).__name__}: {exc}"[:300])


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
    stage = EnrichStage("asn", "indicators.raw", "indicators.asn",
                        lambda record: enrich_asn(record, database.get()),
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
    return EnrichStage("geo", "indicators.asn", "indicators.geo",
                       lambda record: enrich_geo(record, database.get()),
                       closers=[database.close])


class LiveOwnership:
    """The ownership index, rebuilt whenever the registry topic changes."""

    def __init__(self) -> None:
        self.index = OwnershipIndex.build([])

    def rebuild(self, recipients: Mapping[str, Recipient]) -> None:
        self.index = OwnershipIndex.build(recipients.values())  # one assignment: atomic swap
        log.info("ownership index rebuilt: %d recipients", len(recipients))


def hoster_stage(config: Config) -> EnrichStage:
    live = LiveOwnership()
    view = registry_view(config, live.rebuild).start()
    return EnrichStage("hoster", "indicators.geo", "indicators.enriched",
                       lambda record: enrich_owner(record, live.index), closers=[view.stop])


STAGES: dict[str, Callable[[Config], EnrichStage]] = {
    "asn": asn_stage,
    "geo": geo_stage,
    "hoster": hoster_stage,
}
