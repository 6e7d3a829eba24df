"""Alert hygiene: offline and expired entries, sighting time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute.matchers.hygiene import HygienePolicy, sighting_time, stale

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
POLICY = HygienePolicy(feed_expiry={"c2feed": timedelta(hours=48)})


def rec(**over):
    base = {"source": {"ip": "192.0.2.1"}, "feed": {"name": "c2feed"},
            "time": {"source": (NOW - timedelta(hours=1)).isoformat()}}
    base.update(over)
    return base


def test_a_live_recent_entry_is_routed():
    assert stale(rec(status="online"), NOW, POLICY) is None


def test_offline_entries_are_not_alerted():
    for status in ("offline", "OFFLINE ", "down"):
        found = stale(rec(status=status), NOW, POLICY)
        assert found is not None and found.kind == "offline"


def test_an_entry_past_its_own_valid_until_is_not_alerted():
    past = (NOW - timedelta(minutes=1)).isoformat()
    future = (NOW + timedelta(days=1)).isoformat()
    assert stale(rec(extra={"stix.valid_until": past}), NOW, POLICY).kind == "expired"
    assert stale(rec(extra={"stix": {"valid_until": past}}), NOW, POLICY).kind == "expired"
    assert stale(rec(extra={"valid_until": past.replace("+00:00", "Z")}), NOW, POLICY).kind \
        == "expired"
    assert stale(rec(extra={"valid_until": future}), NOW, POLICY) is None


def test_feed_expiry_counts_from_the_sighting():
    old = rec(time={"source": (NOW - timedelta(hours=49)).isoformat()})
    found = stale(old, NOW, POLICY)
    assert found is not None and found.kind == "expired" and "48h" in found.detail
    other_feed = {**old, "feed": {"name": "other"}}
    assert stale(other_feed, NOW, POLICY) is None
    assert stale(other_feed, NOW, HygienePolicy(default_expiry=timedelta(days=1))).kind \
        == "expired"


def test_sighting_time_is_the_records_own_and_never_in_the_future():
    seen = NOW - timedelta(days=3)
    assert sighting_time(rec(time={"source": seen.isoformat()}), NOW) == seen
    assert sighting_time(rec(time={"observation": seen.isoformat()}), NOW) == seen
    ahead = NOW + timedelta(hours=5)
    assert sighting_time(rec(time={"source": ahead.isoformat()}), NOW) == NOW
    assert sighting_time(rec(time={"source": "garbage"}), NOW) == NOW
    assert sighting_time({"source": {}}, NOW) == NOW
