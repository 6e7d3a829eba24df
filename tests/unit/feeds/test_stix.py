import io
import json

import pytest

from threatroute.errors import InvalidRecord
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, Skipped, parse_report
from threatroute.feeds.stix import NO_LOCATOR, observables


def test_single_indicator(feeds_dir, parse):
    (record,) = parse("stix", feeds_dir / "stix/indicator-for-c2-ip-address.json").records
    assert record["source.ip"] == "10.0.0.0"
    assert record["time.source"] == "2014-05-08T09:00:00+00:00"
    assert record["classification.type"] == "blacklist"  # malicious-activity
    assert record["tlp"] == "AMBER"  # unmarked
    assert record["extra"]["stix.id"] == "indicator--33fe3b22-0201-47cf-85d0-97c02164528d"


def test_apt1(feeds_dir, parse):
    parsed = parse("stix", feeds_dir / "stix/apt1.json")
    assert [r.get("source.network") for r in parsed.records[:4]] == [
        "223.166.0.0/15", "58.246.0.0/15", "112.64.0.0/15", "139.226.0.0/15"]
    assert [r["source.fqdn"] for r in parsed.records[4:]] == [
        "hugesoft.org", "arrowservice.net", "msnhome.org"]
    reasons = [s.reason for s in parsed.skipped]
    # 3 file hashes, and 2 x509 certificates (AND of issuer and serial: the grammar reads the
    # compound, which names nothing a hoster takes down)
    assert reasons.count(NO_LOCATOR) == 3 + 2
    assert len(parsed.outcomes) == 7 + len(parsed.skipped) == 7 + 76 - 12 + 5


def test_poisonivy_compound_or(feeds_dir, parse):
    parsed = parse("stix", feeds_dir / "stix/poisonivy.json")
    assert len(parsed.accepted) == 64
    # '[domain-name:value = 'domain autuo.xicp.net' OR ...]': the bad domain is refused,
    # the IP beside it in the same pattern still accepted
    (rejected,) = parsed.rejected
    assert "autuo.xicp.net" in rejected.reason
    assert json.loads(rejected.raw)["id"] == "indicator--4e4c4ad7-4909-456a-b6fa-e24a6f682a40"
    same = [r for o, r in zip(parsed.accepted, parsed.records, strict=True)
            if o.number == rejected.number]
    assert [r["source.ip"] for r in same] == ["60.10.1.115"]


def test_coa_bundle(feeds_dir, parse):
    parsed = parse("stix", feeds_dir / "stix/indicators-for-C2-with-COA.json")
    assert len(parsed.accepted) == 1 and len(parsed.skipped) == 7


@pytest.mark.parametrize(("pattern", "expected"), [
    ("[ipv4-addr:value = '192.0.2.1']", [{"source.ip": "192.0.2.1"}]),
    ("[url:value = 'http://a.example/it\\'s'] OR [ipv6-addr:value = '2001:db8::/32']",
     [{"source.url": "http://a.example/it's"}, {"source.network": "2001:db8::/32"}]),
    # the example: a domain OR an address keeps both
    ("[domain-name:value = 'a.example'] OR [ipv4-addr:value = '192.0.2.9']",
     [{"source.fqdn": "a.example"}, {"source.ip": "192.0.2.9"}]),
    # AND across observations, FOLLOWEDBY and qualifiers: each locator still kept
    ("([ipv4-addr:value = '192.0.2.1'] AND [domain-name:value = 'b.example']) FOLLOWEDBY "
     "[url:value = 'http://c.example/'] WITHIN 60 SECONDS",
     [{"source.ip": "192.0.2.1"}, {"source.fqdn": "b.example"}, {"source.url": "http://c.example/"}]),
    ("[ipv4-addr:value = '192.0.2.1' OR ipv4-addr:value = '192.0.2.2'] REPEATS 2 TIMES",
     [{"source.ip": "192.0.2.1"}, {"source.ip": "192.0.2.2"}]),
    # a network-traffic end and its port are one locator; ISSUBSET a network is the network
    ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = "
     "'192.0.2.15' AND network-traffic:dst_port = 443]", [{"source.ip": "192.0.2.15", "source.port": 443}]),
    ("[ipv4-addr:value ISSUBSET '198.51.100.0/24']", [{"source.network": "198.51.100.0/24"}]),
    ("[autonomous-system:number = 64500]", [{"source.asn": 64500}]),
])
def test_observables(pattern, expected):
    assert observables(pattern) == expected


def test_observables_that_name_no_locator_are_refused_with_the_reason():
    found = observables("[file:hashes.'SHA-256' = 'ab'] OR [ipv4-addr:value = '192.0.2.1']")
    assert found[1] == {"source.ip": "192.0.2.1"}
    assert isinstance(found[0], InvalidRecord) and "file:hashes" in found[0].reason
    (negated,) = observables("[ipv4-addr:value != '192.0.2.1']")
    assert isinstance(negated, InvalidRecord) and "only equality" in negated.reason
    (like,) = observables("[url:value LIKE 'http://%.example/']")
    assert isinstance(like, InvalidRecord)


def test_observables_refuses_what_the_grammar_refuses():
    with pytest.raises(InvalidRecord):  # AND inside one observation must be one object type
        observables("[ipv4-addr:value = '192.0.2.1' AND domain-name:value = 'a.example']")
    with pytest.raises(InvalidRecord):
        observables("ipv4-addr:value = '192.0.2.1' garbage")


def test_compound_pattern_keeps_its_locators_and_dead_letters_the_rest():
    indicator = {"type": "indicator", "id": "indicator--1", "pattern_type": "stix",
                 "pattern": "[file:hashes.MD5 = '0123456789abcdef0123456789abcdef'] AND "
                            "[domain-name:value = 'c2.example'] AND [ipv4-addr:value = '192.0.2.7']"}
    outcomes = list(parse_report(get_format("stix"), _bundle(indicator)))
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    assert [o.record["source"] for o in accepted] == [{"fqdn": "c2.example"}, {"ip": "192.0.2.7"}]
    (refused,) = [o for o in outcomes if isinstance(o, Rejected)]
    assert "file:hashes" in refused.reason and json.loads(refused.raw)["id"] == "indicator--1"


def _bundle(*objects):
    return io.BytesIO(json.dumps({"type": "bundle", "objects": list(objects)}).encode())


def test_markings_types_and_values():
    indicator = {"type": "indicator", "pattern_type": "stix", "valid_from": "2024-01-02T03:04:05Z",
                 "indicator_types": ["anonymization"],
                 "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
                                         "marking-definition--local"],
                 "pattern": "[ipv6-addr:value = '2001:DB8::1'] OR [url:value = 'hxxp://x[.]example/']"}
    local = {"type": "marking-definition", "id": "marking-definition--local",
             "definition_type": "tlp", "definition": {"tlp": "amber"}}
    first, second, marking = parse_report(get_format("stix"), _bundle(indicator, local))
    assert isinstance(first, Accepted) and first.record["source"]["ip"] == "2001:db8::1"
    assert first.record["tlp"] == "AMBER"  # strictest of GREEN and the bundle's own AMBER
    assert first.record["classification"]["type"] == "proxy"
    assert second.record["source"]["url"] == "http://x.example/"
    assert isinstance(marking, Skipped)
    benign = {**indicator, "indicator_types": ["benign"]}
    (outcome,) = parse_report(get_format("stix"), _bundle(benign))
    assert isinstance(outcome, Skipped)
