import io

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, parse_report


def test_nested_and_flat():
    report = (b'{"source": {"ip": "192.0.2.1"}, "classification": {"type": "scanner"}}\n'
              b'# a comment\n'
              b'{"source.fqdn": "Example.COM.", "classification.type": "phishing"}\n'
              b'[1, 2]\n')
    first, second, third = parse_report(get_format("jsonl"), io.BytesIO(report))
    assert isinstance(first, Accepted) and first.record["source"] == {"ip": "192.0.2.1"}
    assert second.record["source"] == {"fqdn": "example.com"} and second.number == 3
    assert isinstance(third, Rejected) and third.raw == b"[1, 2]"
