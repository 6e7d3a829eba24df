import io
import json

import pytest

from threatroute.errors import InvalidRecord
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Skip, Skipped, parse_report
from threatroute.feeds.stix import observables


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
    assert reasons.count("STIX pattern without IP, network, domain or URL observables") == 3
    assert reasons.count("STIX pattern combining observables (AND/FOLLOWEDBY/qualifier)") == 2
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
    ("[ipv4-addr:value = '192.0.2.1']", [("ipv4-addr:value", "'192.0.2.1'")]),
    ("[url:value = 'http://a.example/it\\'s'] OR [ipv6-addr:value = '2001:db8::/32']",
     [("url:value", "'http://a.example/it\\'s'"), ("ipv6-addr:value", "'2001:db8::/32'")]),
    ("[file:hashes.'SHA-256' = 'ab']", [("file:hashes.'SHA-256'", "'ab'")]),
])
def test_observables(pattern, expected):
    assert observables(pattern) == expected


def test_observables_refuses():
    with pytest.raises(Skip):
        observables("[ipv4-addr:value = '192.0.2.1' AND domain-name:value = 'a.example']")
    with pytest.raises(Skip):
        observables("[ipv4-addr:value = '192.0.2.1'] WITHIN 10 SECONDS")
    with pytest.raises(InvalidRecord):
        observables("ipv4-addr:value = '192.0.2.1' garbage")


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
