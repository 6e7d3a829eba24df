"""The demo databases: built offline, loadable by the official readers, known answers."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import maxminddb
import pytest

from threatroute.enrichers.asn import AsnDatabase, AsnResult
from threatroute.enrichers.databuild import (
    DEMO_NETWORKS,
    DemoData,
    FetchError,
    Uint32,
    Uint64,
    build_demo_data,
    fetch_asn_data,
    fetch_geo_data,
    mmdb_bytes,
)
from threatroute.enrichers.geo import GeoDatabase, GeoResult


def _host_in(prefix: str) -> str:
    return str(ipaddress.ip_network(prefix).network_address + 5)


def _most_specific(ip: str):
    address = ipaddress.ip_address(ip)
    rows = [r for r in DEMO_NETWORKS if address in ipaddress.ip_network(r.prefix)]
    return max(rows, key=lambda r: ipaddress.ip_network(r.prefix).prefixlen)


def test_files_written(demo_data: DemoData) -> None:
    assert all(path.is_file() for path in demo_data)
    names = json.loads(demo_data.asnames.read_text())
    assert names["64500"].startswith("EXAMPLEHOST")


@pytest.mark.parametrize("row", DEMO_NETWORKS, ids=lambda r: r.prefix)
def test_asn_answers(demo_data: DemoData, row) -> None:
    ip = _host_in(row.prefix)
    expected = _most_specific(ip)
    with AsnDatabase(demo_data.ipasn, demo_data.asnames) as db:
        assert db.lookup(ip) == AsnResult(expected.asn, expected.prefix, expected.as_name)


@pytest.mark.parametrize("row", DEMO_NETWORKS, ids=lambda r: r.prefix)
@pytest.mark.parametrize("mode", ["auto", "mmap"])
def test_geo_answers(demo_data: DemoData, row, mode: str) -> None:
    ip = _host_in(row.prefix)
    expected = _most_specific(ip)
    with GeoDatabase(demo_data.mmdb, mode) as db:
        assert db.kind == "city"
        assert db.lookup(ip) == GeoResult(expected.cc, expected.city, expected.latitude,
                                          expected.longitude)


def test_longest_match_in_both(demo_data: DemoData) -> None:
    with AsnDatabase(demo_data.ipasn) as asn, GeoDatabase(demo_data.mmdb) as geo:
        assert asn.lookup("198.51.100.1").asn == 64501
        assert asn.lookup("198.51.100.129").asn == 64502
        assert geo.lookup("198.51.100.1").city == "Berlin"
        assert geo.lookup("198.51.100.129").city == "Frankfurt am Main"
        assert asn.lookup("2001:db8:1::1").asn == 64500
        assert geo.lookup("2001:db8:2::1").cc == "FR"


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "2001:db9::1"])
def test_outside_the_table_not_found(demo_data: DemoData, ip: str) -> None:
    with AsnDatabase(demo_data.ipasn) as asn, GeoDatabase(demo_data.mmdb) as geo:
        assert asn.lookup(ip) is None
        assert geo.lookup(ip) is None


@pytest.mark.parametrize("mode", [maxminddb.MODE_AUTO, maxminddb.MODE_MMAP, maxminddb.MODE_FILE,
                                  maxminddb.MODE_MEMORY])
def test_official_reader_in_every_mode(demo_data: DemoData, mode: int) -> None:
    with maxminddb.open_database(str(demo_data.mmdb), mode) as reader:
        meta = reader.metadata()
        assert (meta.ip_version, meta.record_size, meta.database_type) == (
            6, 32, "threatroute-Demo-City")
        record, prefixlen = reader.get_with_prefix_len("192.0.2.77")
        assert record["country"]["iso_code"] == "GB"
        assert record["city"]["names"]["en"] == "London"
        assert prefixlen == 24


def test_every_value_type_round_trips(tmp_path: Path) -> None:
    value = {
        "short": "x", "medium": "m" * 100, "long": "l" * 70_000, "empty": "",
        "u16": 7, "u32": 70_000, "u64": 2**40, "zero": 0, "typed": Uint32(1), "typed64": Uint64(2),
        "double": -0.25, "yes": True, "no": False, "list": [1, "two", {"three": 3.0}],
        "many": {str(i): i for i in range(300)},
    }
    path = tmp_path / "types.mmdb"
    path.write_bytes(mmdb_bytes({"192.0.2.0/24": value, "2001:db8::/32": {"v": 6}},
                                "Test-City", "types"))
    for mode in (maxminddb.MODE_AUTO, maxminddb.MODE_FILE):
        with maxminddb.open_database(str(path), mode) as reader:
            assert reader.get("192.0.2.1") == value
            assert reader.get("2001:db8::1") == {"v": 6}
            assert reader.get("198.51.100.1") is None


def test_writer_rejects_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError):
        mmdb_bytes({"192.0.2.0/24": {"n": -1}}, "Test", "bad")
    with pytest.raises(TypeError):
        mmdb_bytes({"192.0.2.0/24": {"n": object()}}, "Test", "bad")


def test_rebuild_replaces_files(tmp_path: Path) -> None:
    first = build_demo_data(tmp_path)
    inode = first.mmdb.stat().st_ino
    second = build_demo_data(tmp_path)
    assert second == first
    assert second.mmdb.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert not list(tmp_path.glob("*.tmp"))


def test_fetch_geo_fails_clearly_without_network(tmp_path: Path) -> None:
    # a closed loopback port stands in for an unreachable download site
    with pytest.raises(FetchError, match=r"cannot download http://127\.0\.0\.1:9/"):
        fetch_geo_data(tmp_path, url="http://127.0.0.1:9/dbip.mmdb.gz", timeout=2)
    with pytest.raises(FetchError, match="account id"):
        fetch_geo_data(tmp_path, licence_key="KEY")


def test_fetch_asn_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"pyasn_util_download\.py not found"):
        fetch_asn_data(tmp_path / "out", scripts=tmp_path / "no-scripts")
    scripts = tmp_path / "bin"
    scripts.mkdir()
    fake = scripts / "pyasn_util_download.py"
    fake.write_text("import sys\nsys.exit('URLError: no route to archive.routeviews.org')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(FetchError, match=r"failed \(exit 1\): URLError: no route"):
        fetch_asn_data(tmp_path / "out", scripts=scripts)
