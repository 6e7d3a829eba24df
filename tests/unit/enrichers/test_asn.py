"""AsnDatabase and enrich_asn against pyasn's real tables (../shared/data/asn)."""

from __future__ import annotations

import copy
import csv
import gzip
import json
from pathlib import Path

import pytest

from threatroute.enrichers.asn import AsnDatabase, AsnResult, enrich_asn
from threatroute.errors import ConfigError


@pytest.fixture(scope="module")
def asn2014(shared_data: Path) -> AsnDatabase:
    with AsnDatabase(shared_data / "asn" / "ipasn_20140513.dat.gz",
                     shared_data / "asn" / "asnames.json.gz") as db:
        yield db


# shared/data/README.md section 2, ipasn_20140513 + asnames.json.gz
@pytest.mark.parametrize(("ip", "prefix", "asn", "name"), [
    ("8.8.8.8", "8.8.8.0/24", 15169, "GOOGLE - Google Inc., US"),
    ("1.128.0.1", "1.128.0.0/11", 1221, "ASN-TELSTRA Telstra Pty Ltd, AU"),
    ("89.160.20.112", "89.160.0.0/17", 29518, "BREDBAND2 Bredband2 AB, SE"),
    ("39.124.154.220", "39.124.0.0/15", 9318, "HANARO-AS Hanaro Telecom Inc., KR"),
    ("208.228.36.44", "208.192.0.0/10", 701,
     "UUNET - MCI Communications Services, Inc. d/b/a Verizon Business, US"),
])
def test_known_answers_2014(asn2014: AsnDatabase, ip: str, prefix: str, asn: int,
                            name: str) -> None:
    assert asn2014.lookup(ip) == AsnResult(asn, prefix, name)


def test_announcing_network_of_phishtank_sample(asn2014: AsnDatabase) -> None:
    result = asn2014.lookup("199.34.228.40")
    assert result is not None
    assert (result.asn, result.network) == (27647, "199.34.228.0/22")


@pytest.mark.parametrize("ip", ["127.0.0.1", "2001:4860:4860::8888"])
def test_unrouted_is_none(asn2014: AsnDatabase, ip: str) -> None:
    assert asn2014.lookup(ip) is None


@pytest.mark.parametrize("ip", ["not-an-ip", "", "999.1.1.1"])
def test_invalid_address_is_none(asn2014: AsnDatabase, ip: str) -> None:
    assert asn2014.lookup(ip) is None


@pytest.mark.parametrize(("ip", "prefix", "asn"), [
    ("2001:4860:4860::8888", "2001:4860::/32", 15169),
    ("2606:4700::1", "2606:4700::/48", 13335),
    ("2001:218::1", "2001:218::/32", 2914),
    ("2a02:cf40::1", "2a02:cf40::/29", 62121),
])
def test_ipv6_from_mixed_table(shared_data: Path, ip: str, prefix: str, asn: int) -> None:
    with AsnDatabase(shared_data / "asn" / "ipasn6_20151101.dat.gz") as db:
        result = db.lookup(ip)
        assert result is not None
        assert (result.asn, result.network, result.as_name) == (asn, prefix, None)
        assert db.lookup("8.8.8.8") is not None  # the same file has the v4 table


def test_several_table_files(shared_data: Path, tmp_path: Path) -> None:
    v6 = tmp_path / "ipasn6.dat"
    v6.write_text("; v6 only\n2001:db8::/32\t64500\n")
    with AsnDatabase([shared_data / "asn" / "ipasn_20140513.dat.gz", v6]) as db:
        assert db.lookup("8.8.8.8").asn == 15169
        assert db.lookup("2001:db8::1") == AsnResult(64500, "2001:db8::/32", None)


def test_agrees_with_team_cymru(asn2014: AsnDatabase, shared_data: Path) -> None:
    with open(shared_data / "asn" / "cymru_expected.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    agree = 0
    for row in rows:
        result = asn2014.lookup(row["ip"])
        expected = int(row["asn"]) if row["asn"] else None
        agree += (result.asn if result else None) == expected
    assert len(rows) == 1000
    assert agree / len(rows) >= 0.97, f"only {agree} of {len(rows)} agree"


@pytest.mark.parametrize(("ip", "asn", "prefix"), [
    ("1.0.0.1", 1, "1.0.0.0/30"),
    ("1.0.0.5", 2, "1.0.0.0/24"),
    ("2.0.0.200", 3, "2.0.0.0/24"),
    ("3.0.0.1", 5, "3.0.0.0/9"),
    ("3.200.0.1", 4, "3.0.0.0/8"),
    ("4.0.0.1", None, None),
])
def test_longest_prefix_match(shared_data: Path, ip: str, asn: int | None,
                              prefix: str | None) -> None:
    with AsnDatabase(shared_data / "asn" / "ipasn.fake") as db:
        result = db.lookup(ip)
        found = (result.asn, result.network) if result else (None, None)
        assert found == (asn, prefix)


@pytest.mark.parametrize("compress", [False, True])
def test_names_file_plain_or_gzip(tmp_path: Path, compress: bool) -> None:
    table = tmp_path / "t.dat"
    table.write_text("192.0.2.0/24\t64500\n")
    data = json.dumps({"64500": "EXAMPLE"}).encode()
    names = tmp_path / ("names.bin" if compress else "names.json")  # content decides, not name
    names.write_bytes(gzip.compress(data) if compress else data)
    with AsnDatabase(table, names) as db:
        assert db.lookup("192.0.2.7") == AsnResult(64500, "192.0.2.0/24", "EXAMPLE")
        assert db.as_name(64500) == "EXAMPLE"


def test_results_are_kept_per_prefix_and_the_cache_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from threatroute.enrichers import asn

    table = tmp_path / "t.dat"
    table.write_text("192.0.2.0/24\t64500\n198.51.100.0/24\t64501\n192.0.2.128/25\t64502\n")
    monkeypatch.setattr(asn, "CACHE_PREFIXES", 2)
    with AsnDatabase(table) as db:
        first, again = db.lookup_many(["192.0.2.7", "192.0.2.99"])
        assert first is again == AsnResult(64500, "192.0.2.0/24", None)  # one prefix, one result
        assert db.lookup("192.0.2.200") == AsnResult(64502, "192.0.2.128/25", None)
        assert db.lookup("198.51.100.1") == AsnResult(64501, "198.51.100.0/24", None)
        assert len(db._results) <= 2  # full: cleared, then filled again
        assert db.lookup_many(["192.0.2.7", None, "203.0.113.1", "x"]) == [
            AsnResult(64500, "192.0.2.0/24", None), None, None, None]


@pytest.mark.parametrize("content", ["garbage\n", "; only a comment\n", ""])
def test_bad_table_is_config_error(tmp_path: Path, content: str) -> None:
    table = tmp_path / "bad.dat"
    table.write_text(content)
    with pytest.raises(ConfigError, match=r"bad\.dat"):
        AsnDatabase(table)


def test_missing_files_are_config_errors(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.dat"):
        AsnDatabase(tmp_path / "nope.dat")
    with pytest.raises(ConfigError, match=r"names\.json"):
        AsnDatabase(shared_data / "asn" / "ipasn.fake", tmp_path / "names.json")
    with pytest.raises(ConfigError):
        AsnDatabase([])


def test_closed_database_refuses_lookups(shared_data: Path) -> None:
    db = AsnDatabase(shared_data / "asn" / "ipasn.fake")
    db.close()
    with pytest.raises(ConfigError):
        db.lookup("1.0.0.1")


def _record(**source: object) -> dict:
    return {"classification": {"type": "c2-server"}, "source": dict(source)}


def test_enrich_sets_fields_without_touching_input(asn2014: AsnDatabase) -> None:
    record = _record(ip="8.8.8.8", port=53)
    before = copy.deepcopy(record)
    out = enrich_asn(record, asn2014)
    assert record == before
    assert out["source"] == {"ip": "8.8.8.8", "port": 53, "asn": 15169,
                             "network": "8.8.8.0/24", "as_name": "GOOGLE - Google Inc., US"}
    assert "extra" not in out


def test_enrich_prefers_lookup_and_keeps_differing_feed_asn(asn2014: AsnDatabase) -> None:
    record = _record(ip="8.8.8.8", asn=64500, as_name="FEED'S IDEA")
    record["extra"] = {"note": "kept"}
    out = enrich_asn(record, asn2014)
    assert out["source"]["asn"] == 15169
    assert out["source"]["as_name"] == "GOOGLE - Google Inc., US"
    assert out["extra"] == {"note": "kept", "feed_asn": 64500}
    assert record["extra"] == {"note": "kept"}


def test_enrich_same_feed_asn_adds_nothing(asn2014: AsnDatabase) -> None:
    out = enrich_asn(_record(ip="8.8.8.8", asn=15169), asn2014)
    assert out["source"]["asn"] == 15169 and "extra" not in out


def test_enrich_drops_feed_as_name_of_another_asn(shared_data: Path) -> None:
    with AsnDatabase(shared_data / "asn" / "ipasn.fake") as db:  # no names loaded
        out = enrich_asn(_record(ip="1.0.0.1", asn=7, as_name="SEVEN"), db)
        assert out["source"] == {"ip": "1.0.0.1", "asn": 1, "network": "1.0.0.0/30"}
        assert out["extra"] == {"feed_asn": 7}


@pytest.mark.parametrize("record", [
    _record(fqdn="example.com"),
    _record(ip="127.0.0.1", asn=64500),  # unrouted: the feed's ASN is all there is
    {"classification": {"type": "spam"}},
])
def test_enrich_passes_through(asn2014: AsnDatabase, record: dict) -> None:
    assert enrich_asn(record, asn2014) is record


def test_enrich_ipv6(shared_data: Path) -> None:
    with AsnDatabase(shared_data / "asn" / "ipasn6_20151101.dat.gz") as db:
        out = enrich_asn(_record(ip="2606:4700::1"), db)
        assert (out["source"]["asn"], out["source"]["network"]) == (13335, "2606:4700::/48")
