import io
import json

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, Skipped, parse_report


def test_feed_event_has_nothing_routable(feeds_dir, parse):
    parsed = parse("misp", feeds_dir / "misp/57c4445b-c548-4654-af0b-4be3950d210f.json")
    assert not parsed.accepted and not parsed.rejected
    reasons = [s.reason for s in parsed.skipped]
    assert len(reasons) == 9
    assert reasons.count("MISP link attribute (a reference, not an indicator)") == 2
    assert "MISP regkey|value attribute" in reasons


def test_event_with_objects(feeds_dir, parse):
    parsed = parse("misp", feeds_dir / "misp/circl_osint_sednit_existing_event.json")
    ips = [r["source.ip"] for r in parsed.records if "source.ip" in r]
    domains = [r["source.fqdn"] for r in parsed.records if "source.fqdn" in r]
    assert (len(ips), len(domains)) == (12, 19)  # 7 top-level domains + 12 in domain-ip objects
    assert "87.236.211.182" in ips and "movieultimate.com" in domains
    record = parsed.records[0]
    assert record["tlp"] == "CLEAR"  # tlp:white
    assert record["classification.type"] == "c2-server"  # Network activity, no role tag
    assert record["feed.provider"] == "CIRCL"
    assert record["misp.event_uuid"] == "5a3c2fcd-8328-42bb-a95e-4f4402de0b81"
    assert parsed.records[-1]["extra"]["misp.object"] == "domain-ip"


def test_flat_event(feeds_dir, parse):
    parsed = parse("misp", feeds_dir / "misp/circl_osint_sunorcal_event.json")
    assert len(parsed.accepted) == 6 and not parsed.rejected
    assert sum(r.get("source.ip") is not None for r in parsed.records) == 2


def test_api_event_and_attribute(feeds_dir, parse):
    (record,) = parse("misp", feeds_dir / "misp/intelmq_misp_event.json").records
    assert record["source.url"] == "http://fake.example.com/malware/is/here"
    assert record["classification.type"] == "malware-distribution"  # Payload delivery
    assert record["tlp"] == "AMBER"  # no tlp tag
    assert record["time.source"] == "2016-06-11T21:41:44+00:00"
    assert record["feed.provider"] == "ORGNAME"
    (attribute,) = parse("misp", feeds_dir / "misp/intelmq_misp_attribute.json").records
    assert attribute["source.url"] == record["source.url"]


def _run(document):
    return list(parse_report(get_format("misp"), io.BytesIO(json.dumps(document).encode())))


def test_response_tags_and_pairs():
    attribute = {"type": "ip-dst|port", "value": "192.0.2.5|8080", "category": "Other",
                 "Tag": [{"name": "tlp:red"}]}
    event = {"info": "x", "uuid": "u", "Tag": [{"name": 'ecsirt:fraud="phishing"'},
                                               {"name": "tlp:green"}],
             "Attribute": [attribute, {"type": "domain|ip", "value": "a.example|192.0.2.6"},
                           {"type": "ip-src", "value": "not-an-ip"}]}
    first, second, third = _run({"response": [{"Event": event}]})
    assert isinstance(first, Accepted)
    assert first.record["source"] == {"ip": "192.0.2.5", "port": 8080}
    assert first.record["tlp"] == "RED"  # the attribute's tag wins
    assert first.record["classification"]["type"] == "phishing"
    assert second.record["source"] == {"fqdn": "a.example", "ip": "192.0.2.6"}
    assert second.record["tlp"] == "GREEN"
    assert isinstance(third, Rejected) and third.field == "source.ip"
    assert json.loads(third.raw) == {"type": "ip-src", "value": "not-an-ip"}


def test_rsit_tag_and_deleted():
    event = {"Event": {"Tag": [{"name": 'rsit:malicious-code="c2-server"'}], "Attribute": [
        {"type": "hostname", "value": "c2.example.net"},
        {"type": "hostname", "value": "gone.example.net", "deleted": True}]}}
    first, second = _run([event])
    assert first.record["classification"]["type"] == "c2-server"
    assert isinstance(second, Skipped)
