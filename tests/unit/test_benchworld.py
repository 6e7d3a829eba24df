"""The benchmark's world: a registry that loads, indicators in ingest's wire form, the mix."""

from __future__ import annotations

from collections import Counter

import maxminddb
import orjson

from threatroute import benchworld
from threatroute.record import indicator_key, normalise_indicator
from threatroute.registry import load_registry


def test_generated_world(tmp_path, monkeypatch):
    monkeypatch.setenv("THREATROUTE_SHARED_DATA", str(tmp_path / "none"))  # generate the table
    monkeypatch.setattr(benchworld, "TABLE_SIZE", 20_000)
    monkeypatch.setattr(benchworld, "CITY_NETWORKS", 1 << 12)
    monkeypatch.setattr(benchworld, "_city_database", lambda root: (
        benchworld._generated(root), "generated"))
    world = benchworld.build_world(tmp_path / "world", recipients=300)
    assert world.asn_source.startswith("generated, 20,000 prefixes")
    recipients = load_registry(world.registry.read_text())
    assert len(recipients) == 300
    assert sum(bool(r.subscribe.countries) for r in recipients) == 20
    assert all(r.owns.asns and r.owns.prefixes and r.owns.domains for r in recipients)
    with maxminddb.open_database(str(world.geoip)) as reader:
        assert reader.get("81.2.69.142")["country"]["iso_code"] in benchworld.COUNTRIES

    records = list(benchworld.indicators(world, 3_000, seed=1))
    kinds: Counter[str] = Counter()
    for key, value in records:
        record = orjson.loads(value)
        assert normalise_indicator(record) == record  # ingest's wire form already
        assert indicator_key(record) == key
        kinds[next(k for k in ("url", "fqdn", "ip") if k in record["source"])] += 1
    assert 0.5 < kinds["ip"] / len(records) < 0.7
    assert 0.15 < kinds["url"] / len(records) < 0.35
    assert len({key for key, _ in records}) < 0.8 * len(records)  # repeats
    assert records == list(benchworld.indicators(world, 3_000, seed=1))  # seeded
