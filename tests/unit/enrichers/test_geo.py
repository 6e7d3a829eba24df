"""GeoDatabase and enrich_geo against MaxMind's test databases (../shared/data/mmdb)."""

from __future__ import annotations

import copy
from pathlib import Path

import maxminddb
import pytest

from threatroute.enrichers.databuild import mmdb_bytes
from threatroute.enrichers.geo import GeoDatabase, GeoResult, database_kind, enrich_geo
from threatroute.errors import ConfigError

# shared/data/README.md section 1: (database, ip, cc, city); None city = "no city"
KNOWN = [
    ("GeoIP2-City-Test", "81.2.69.142", "GB", "London"),
    ("GeoLite2-City-Test", "81.2.69.142", "GB", "London"),
    ("GeoIP2-City-Test", "216.160.83.56", "US", "Milton"),
    ("GeoIP2-City-Test", "89.160.20.112", "SE", "Linköping"),
    ("GeoLite2-City-Test", "175.16.199.0", "CN", "Changchun"),
    ("GeoLite2-Country-Test", "67.43.156.1", "BT", None),
    ("GeoIP2-City-Test", "2001:218::1", "JP", None),
    ("GeoLite2-Country-Test", "2a02:cf40:1::5", "NO", None),
]
GEO_DATABASES = ["GeoIP2-City-Test", "GeoLite2-City-Test", "GeoLite2-Country-Test",
                 "GeoIP2-Country-Test"]


def _open(shared_data: Path, name: str, mode: str = "auto") -> GeoDatabase:
    return GeoDatabase(shared_data / "mmdb" / f"{name}.mmdb", mode)


@pytest.mark.parametrize(("name", "ip", "cc", "city"), KNOWN)
@pytest.mark.parametrize("mode", ["auto", "mmap"])
def test_known_answers(shared_data: Path, name: str, ip: str, cc: str, city: str | None,
                       mode: str) -> None:
    with _open(shared_data, name, mode) as db:
        result = db.lookup(ip)
        assert result is not None
        assert (result.cc, result.city) == (cc, city)


def test_city_has_location(shared_data: Path) -> None:
    with _open(shared_data, "GeoIP2-City-Test") as db:
        assert db.lookup("81.2.69.142") == GeoResult("GB", "London", 51.5142, -0.0931)


@pytest.mark.parametrize("name", GEO_DATABASES)
def test_localhost_not_found(shared_data: Path, name: str) -> None:
    with _open(shared_data, name) as db:
        assert db.lookup("127.0.0.1") is None
        assert db.lookup("not an ip") is None


@pytest.mark.parametrize(("name", "kind"), [
    ("GeoIP2-City-Test", "city"), ("GeoLite2-City-Test", "city"),
    ("GeoLite2-Country-Test", "country"), ("GeoIP2-Country-Test", "country"),
])
def test_kind_from_metadata(shared_data: Path, name: str, kind: str) -> None:
    with _open(shared_data, name) as db:
        assert db.kind == kind
        assert name.removesuffix("-Test") == db.database_type


def test_country_database_never_reports_city(shared_data: Path) -> None:
    with _open(shared_data, "GeoIP2-Country-Test") as db:
        result = db.lookup("81.2.69.142")
        assert result == GeoResult("GB", None, None, None)


@pytest.mark.parametrize(("database_type", "kind"), [
    ("DBIP-City-Lite", "city"), ("DBIP-Country-Lite", "country"),
    ("GeoIP2-Enterprise", "city"),
])
def test_database_kind_names(database_type: str, kind: str) -> None:
    assert database_kind(database_type) == kind


@pytest.mark.parametrize("name", ["GeoLite2-ASN-Test", "GeoIP2-ISP-Test"])
def test_non_geo_database_rejected(shared_data: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not a City or Country"):
        _open(shared_data, name)


def test_unusable_files_rejected(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.mmdb"):
        GeoDatabase(tmp_path / "missing.mmdb")
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match=r"junk\.mmdb"):
        GeoDatabase(junk)
    with pytest.raises(ConfigError, match="mode"):
        _open(shared_data, "GeoIP2-City-Test", mode="bogus")


def test_registered_country_only_as_fallback(tmp_path: Path) -> None:
    path = tmp_path / "fallback.mmdb"
    path.write_bytes(mmdb_bytes({
        "192.0.2.0/24": {"registered_country": {"iso_code": "US"}},
        "198.51.100.0/24": {"country": {"iso_code": "GB"},
                            "registered_country": {"iso_code": "US"}},
    }, "Test-City", "fallback test"))
    with GeoDatabase(path) as db:
        assert db.lookup("192.0.2.1") == GeoResult("US", None, None, None)
        assert db.lookup("198.51.100.1") == GeoResult("GB", None, None, None)
        assert maxminddb.open_database(str(path)).metadata().database_type == "Test-City"


def _record(**source: object) -> dict:
    return {"classification": {"type": "c2-server"}, "source": dict(source)}


def test_enrich_sets_what_the_database_has(shared_data: Path) -> None:
    record = _record(ip="81.2.69.142", geolocation={"region": "kept"})
    before = copy.deepcopy(record)
    with _open(shared_data, "GeoIP2-City-Test") as db:
        out = enrich_geo(record, db)
    assert record == before
    assert out["source"]["geolocation"] == {"region": "kept", "cc": "GB", "city": "London",
                                            "latitude": 51.5142, "longitude": -0.0931}
    assert "extra" not in out


def test_enrich_country_database_sets_cc_only(shared_data: Path) -> None:
    with _open(shared_data, "GeoLite2-Country-Test") as db:
        out = enrich_geo(_record(ip="2a02:cf40:1::5"), db)
    assert out["source"]["geolocation"] == {"cc": "NO"}


def test_enrich_keeps_differing_feed_country(shared_data: Path) -> None:
    with _open(shared_data, "GeoIP2-City-Test") as db:
        out = enrich_geo(_record(ip="81.2.69.142", geolocation={"cc": "US"}), db)
    assert out["source"]["geolocation"]["cc"] == "GB"
    assert out["extra"] == {"feed_cc": "US"}


@pytest.mark.parametrize("record", [
    _record(fqdn="example.com"), _record(ip="127.0.0.1"), {"classification": {"type": "spam"}},
])
def test_enrich_passes_through(shared_data: Path, record: dict) -> None:
    with _open(shared_data, "GeoIP2-City-Test") as db:
        assert enrich_geo(record, db) is record


def test_network_cache_answers_as_the_reader_does(tmp_path: Path) -> None:
    """Every address of a network, found or not, answers from the cache what a fresh lookup
    would (the generated City database: 2**12 networks of /20; IPv6 unknown)."""
    from threatroute.benchworld import generated_city_mmdb

    path = tmp_path / "city.mmdb"
    path.write_bytes(generated_city_mmdb(1 << 12, cities=50))
    with GeoDatabase(path) as db, maxminddb.open_database(str(path)) as reader:
        addresses = [f"{a}.{b}.{c}.{d}" for a in (1, 81, 200) for b in (0, 7)
                     for c in (0, 15, 16, 255) for d in (1, 200)] + ["2001:db8::1"]
        for ip in addresses * 2:  # the second round answers from the cache
            raw = reader.get(ip)
            expected = None if raw is None else (raw["country"]["iso_code"],
                                                 raw["city"]["names"]["en"])
            result = db.lookup(ip)
            assert (None if result is None else result[:2]) == expected, ip
        assert sum(len(t) for t in db._cache[32].values()) < len(addresses)
