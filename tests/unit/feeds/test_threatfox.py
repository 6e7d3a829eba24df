import io
import json

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, Skipped, parse_report


def test_api_response(feeds_dir, parse):
    parsed = parse("threatfox-json", feeds_dir / "threatfox/api_query_response.json")
    assert len(parsed.accepted) == 1
    assert [s.reason for s in parsed.skipped] == ["ThreatFox sha256_hash IOC"]
    (record,) = parsed.records
    assert record["source.url"] == "https://188.131.211.152/activity"
    assert record["source.ip"] == "188.131.211.152"
    assert record["classification.type"] == "c2-server"
    assert record["time.source"] == "2022-01-07T16:29:58+00:00"
    assert record["feed.accuracy"] == 100.0
    assert record["malware.name"] == "cobalt strike"


def _run(document):
    return list(parse_report(get_format("threatfox-json"),
                             io.BytesIO(json.dumps(document).encode())))


def test_export_and_ip_port():
    export = {"42": [{"ioc_value": "192.0.2.10:8443", "ioc_type": "ip:port",
                      "threat_type": "botnet_cc", "first_seen_utc": "2024-01-02 03:04:05",
                      "tags": "a,b", "confidence_level": 75}]}
    (outcome,) = _run(export)
    assert isinstance(outcome, Accepted)
    assert outcome.record["source"] == {"ip": "192.0.2.10", "port": 8443}
    assert outcome.record["extra"]["threatfox.id"] == "42"


def test_no_result_and_bad_shapes():
    assert _run({"query_status": "no_result", "data": "Your search did not yield any results"}) == []
    (outcome,) = _run("just a string")
    assert isinstance(outcome, Rejected) and outcome.number == 0
    (outcome,) = _run([{"ioc": "x", "ioc_type": "md5_hash"}])
    assert isinstance(outcome, Skipped)
