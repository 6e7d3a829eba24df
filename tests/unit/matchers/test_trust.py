"""Feed trust from feedback counts."""

from __future__ import annotations

import pytest

from threatroute.matchers.trust import FeedCounts, FeedTrust, TrustPolicy, sum_counts, trust_of

POLICY = TrustPolicy(prior_reports=5, not_ours_weight=0.5, min_factor=0.2, max_factor=1.0)


def record(feed="noisy", accuracy=80):
    return {"feed": {"name": feed, "accuracy": accuracy}}


def test_a_feed_without_feedback_keeps_its_accuracy():
    trust = FeedTrust({}, POLICY)
    assert trust.confidence(record()) == (80.0, None)
    assert trust.confidence({"feed": {}}) == (100.0, None)


def test_false_positives_lower_the_confidence_a_feed_is_routed_with():
    counts = FeedCounts(answered=10, false_positive=6, not_ours=0)
    t = trust_of("noisy", counts, POLICY)
    assert t.factor == pytest.approx(1 - 6 / 15)
    confidence, why = FeedTrust({"noisy": counts}, POLICY).confidence(record())
    assert confidence == pytest.approx(80 * (1 - 6 / 15), abs=0.01)
    assert why is not None and "6 false positive" in why.explain() and "x0.60" in why.explain()


def test_not_ours_counts_at_its_weight():
    t = trust_of("f", FeedCounts(answered=5, false_positive=0, not_ours=4), POLICY)
    assert t.factor == pytest.approx(1 - 2 / 10)


def test_the_factor_stays_within_the_configured_bounds():
    assert trust_of("f", FeedCounts(100, 100, 0), POLICY).factor == 0.2
    assert trust_of("f", FeedCounts(100, 0, 0), POLICY).factor == 1.0
    strict = TrustPolicy(prior_reports=0, min_factor=0.5)
    assert trust_of("f", FeedCounts(2, 2, 0), strict).factor == 0.5


def test_a_good_feed_stays_above_a_recipients_min_confidence_and_a_noisy_one_falls_below():
    trust = FeedTrust({"good": FeedCounts(20, 0, 1), "noisy": FeedCounts(10, 9, 0)}, POLICY)
    min_confidence = 50
    assert trust.confidence(record("good", 80))[0] >= min_confidence
    assert trust.confidence(record("noisy", 80))[0] < min_confidence


def test_per_partition_counts_add_up_and_round_trip():
    parts = [("a", FeedCounts(1, 1, 0)), ("b", FeedCounts(2, 0, 1)), ("a", FeedCounts(3, 0, 2))]
    assert sum_counts(parts) == {"a": FeedCounts(4, 1, 2), "b": FeedCounts(2, 0, 1)}
    c = FeedCounts(3, 1, 1)
    assert FeedCounts.from_json(c.to_json()) == c
    assert c.counted("false_positive", first=True) == FeedCounts(4, 2, 1)
    assert c.counted("remediated", first=False) == c
