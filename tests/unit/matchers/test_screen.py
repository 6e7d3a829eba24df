"""Screening before matching: suppression, hygiene, feed trust, in that order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute.matchers.hygiene import HygienePolicy
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.screen import screen
from threatroute.matchers.suppression import SuppressionList, load_suppressions
from threatroute.matchers.trust import FeedCounts, FeedTrust, TrustPolicy
from threatroute.registry import load_registry

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SUP = load_suppressions("""
suppressions:
  - {addresses: [192.0.2.99], reason: sinkhole, expires: 2027-01-01}
""")
TRUST = FeedTrust({"noisy": FeedCounts(15, 6, 0)}, TrustPolicy(prior_reports=5))
HYGIENE = HygienePolicy()


def rec(ip="192.0.2.1", feed="noisy", accuracy=70, **over):
    return {"classification": {"type": "phishing"}, "source": {"ip": ip},
            "feed": {"name": feed, "accuracy": accuracy},
            "time": {"source": (NOW - timedelta(hours=1)).isoformat()}, **over}


def test_suppression_comes_first_then_hygiene():
    assert screen(rec("192.0.2.99", status="offline"), NOW, SUP, HYGIENE, TRUST).dropped \
        == "suppressed"
    out = screen(rec(status="offline"), NOW, SUP, HYGIENE, TRUST)
    assert out.dropped == "offline" and "offline" in out.why


def test_trust_adjusts_the_confidence_and_says_why():
    out = screen(rec(), NOW, SUP, HYGIENE, TRUST)
    assert out.dropped is None and out.record["feed"]["accuracy"] == 49.0
    assert out.record["extra"]["trust"]["feed_accuracy"] == 70
    assert "6 false positive" in out.why
    # a recipient with min_confidence 50 no longer gets the noisy feed's records
    index = MatchIndex.build(load_registry("""
recipients:
  - {id: h, name: H, owns: {prefixes: [192.0.2.0/24]}, min_confidence: 50, tlp_clearance: amber}
"""))
    assert index.match(rec()) and not index.match(out.record)
    good = screen(rec(feed="good"), NOW, SUP, HYGIENE, TRUST)
    assert good.record == rec(feed="good") and good.trust is None


def test_nothing_configured_routes_everything_unchanged():
    out = screen(rec(), NOW, SuppressionList(), HYGIENE, FeedTrust())
    assert out.dropped is None and out.record == rec()
