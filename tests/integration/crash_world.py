"""The crash tests' world: the benchmark's generated world (threatroute.benchworld: the real
2014 pyasn table, a generated City database, recipients owning ASNs, prefixes and domains,
national CERTs and upstreams) cut to the test's size, its indicators, and the routing they
must get, computed without the stages: ASN and country straight from pyasn and maxminddb,
then routing_reference's rules.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path

import maxminddb
import orjson
import pyasn
import yaml

from tests.integration import routing_reference
from threatroute import fields
from threatroute.benchworld import World, build_world, indicators


@dataclass
class CrashWorld:
    world: World
    registry: list[dict]
    records: list[tuple[str, bytes]]          # (key, value) as ingest writes indicators.raw
    expected: dict[str, set[str]] = field(default_factory=dict)  # recipient -> indicator keys

    def pairs(self) -> set[tuple[str, str]]:
        return {(rid, key) for rid, keys in self.expected.items() for key in keys}


def build(root: Path, recipients: int, count: int, feed_tag: str, seed: int = 13) -> CrashWorld:
    """`count` indicators (about 30% repeats) for `recipients` recipients; feed names carry
    `feed_tag`. Their only time is the observation, now: dedup and screening go by
    processing time."""
    world = build_world(root, recipients=recipients, seed=seed)
    registry = yaml.safe_load(world.registry.read_text())["recipients"]
    records, now = [], {"observation": fields.now()}
    for key, value in indicators(world, count, seed=seed + 1):
        record = orjson.loads(value)  # already in ingest's wire form; neither changes the key
        record["time"] = now
        record["feed"]["name"] = f"{record['feed']['name']}-{feed_tag}"
        records.append((key, orjson.dumps(record)))
    return CrashWorld(world, registry, records)


class ReferenceEnrichment:
    """What the asn and geo stages must add, from the bare libraries."""

    def __init__(self, world: World) -> None:
        data = world.ipasn.read_bytes()
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        self.asn = pyasn.pyasn(None, ipasn_string=text.decode())
        self.geo = maxminddb.open_database(str(world.geoip))

    def enrich(self, record: dict) -> dict:
        source = record["source"]
        ip = source.get("ip")
        if ip is None:
            return record
        asn, _ = self.asn.lookup(ip)
        if asn is not None:
            source["asn"] = asn
        found = self.geo.get(ip)
        if isinstance(found, dict):
            country = found.get("country") or found.get("registered_country") or {}
            if country.get("iso_code"):
                source.setdefault("geolocation", {})["cc"] = country["iso_code"]
        return record

    def close(self) -> None:
        self.geo.close()


def expect(crash: CrashWorld, per_rule: int = 30) -> None:
    """Fill `crash.expected`; the indexed reference is first checked against the brute-force
    one on `per_rule` records of each way an owner is found (prefix, ASN, domain, none)."""
    enrichment = ReferenceEnrichment(crash.world)
    try:
        enriched = {key: enrichment.enrich(orjson.loads(value)) for key, value in crash.records}
    finally:
        enrichment.close()
    index = routing_reference.IndexedReference(crash.registry)
    owners = {key: index.owner(record) for key, record in enriched.items()}
    by_rule: dict[str | None, list[str]] = {}
    for key, found in owners.items():
        by_rule.setdefault(found[1].split()[0] if found else None, []).append(key)
    assert set(by_rule) == {"prefix", "asn", "domain", None}, set(by_rule)
    rng = random.Random(1)
    for keys in by_rule.values():
        for key in rng.sample(keys, min(per_rule, len(keys))):
            record = enriched[key]
            assert owners[key] == routing_reference.owner(record, crash.registry), record
            assert index.recipients(record) == routing_reference.recipients(record,
                                                                            crash.registry)
    crash.expected = {r["id"]: set() for r in crash.registry}
    for key, record in enriched.items():
        for rid in index.recipients(record):
            crash.expected[rid].add(key)
