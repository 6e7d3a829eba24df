import io
import json

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, parse_report


def test_sample_urls_are_refused(feeds_dir, parse):
    """Deliberate difference: IntelMQ accepts `http://www..example.com/phishing`; an empty DNS
    label cannot be resolved or owned, so we dead-letter both sample lines with the reason."""
    parsed = parse("openphish", feeds_dir / "openphish/feed.txt")
    expected = json.loads((feeds_dir / "openphish/feed.intelmq_expected_events.json").read_text())
    assert len(parsed.rejected) == len(expected) == 2 and not parsed.accepted
    for rejected, theirs in zip(parsed.rejected, expected, strict=True):
        assert rejected.raw.decode() == theirs["source.url"]
        assert rejected.field == "source.url"
        assert "not a valid domain name" in rejected.reason


def test_good_urls():
    report = b"https://login.example.net/account\nhxxp://phish.example[.]org/a?b=1\n"
    outcomes = list(parse_report(get_format("openphish"), io.BytesIO(report)))
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert [o.record["source"]["url"] for o in outcomes] == [
        "https://login.example.net/account", "http://phish.example.org/a?b=1"]
    assert outcomes[0].record["classification"]["type"] == "phishing"
