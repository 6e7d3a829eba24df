import io

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Skipped, parse_report
from threatroute.feeds.spamhaus import SpamhausAsnDrop, SpamhausDrop

# deliberate difference (docs/feeds.md): IntelMQ's feed.name comes from its collector's
# configuration (the test's "Spamhaus drop feed"); ours is the format's fixed name
DROP_NAME = {"feed.name": lambda _: SpamhausDrop.defaults["feed.name"]}
ASNDROP_NAME = {"feed.name": lambda _: SpamhausAsnDrop.defaults["feed.name"]}


def test_drop_agrees_with_intelmq(feeds_dir, parse, agrees_with_intelmq):
    parsed = parse("spamhaus-drop", feeds_dir / "spamhaus/drop.txt")
    assert [r["source.network"] for r in parsed.records] == ["1.4.0.0/17", "2a06:e480::/29"]
    assert [r["extra"]["blocklist"] for r in parsed.records] == ["SBL256893", "SBL301771"]
    agrees_with_intelmq(parsed.records, feeds_dir / "spamhaus/drop.intelmq_expected_events.json",
                        DROP_NAME)


def test_asndrop_agrees_with_intelmq(feeds_dir, parse, agrees_with_intelmq):
    parsed = parse("spamhaus-asndrop", feeds_dir / "spamhaus/asndrop.txt")
    first, second = parsed.records
    assert (first["source.asn"], first["source.geolocation.cc"]) == (260, "AE")
    assert first["source.as_name"] == "XCONNECT24 - Xconnect24 Inc., US"
    assert second["source.asn"] == 10516 and "geolocation" not in second.get("source", {})
    agrees_with_intelmq(parsed.records,
                        feeds_dir / "spamhaus/asndrop.intelmq_expected_events.json", ASNDROP_NAME)


def test_json_lines_form():
    report = (b'{"cidr":"192.0.2.0/24","sblid":"SBL1","rir":"arin"}\n'
              b'{"type":"metadata","timestamp":1700000000,"size":1}\n')
    accepted, skipped = parse_report(get_format("spamhaus-drop"), io.BytesIO(report))
    assert isinstance(accepted, Accepted) and accepted.record["source"]["network"] == "192.0.2.0/24"
    assert isinstance(skipped, Skipped)
