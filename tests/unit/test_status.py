"""`threatroute status`: the figures it derives from offsets (the broker part is tested in
tests/integration/test_status.py)."""

from __future__ import annotations

from threatroute.streams.commands.status import (
    Group,
    Lag,
    Member,
    Status,
    dead_letter_count,
    lags,
    rate,
    render,
)


def test_lag_is_end_minus_committed_or_minus_the_log_start_where_never_committed():
    ends = {("indicators.raw", 0): 100, ("indicators.raw", 1): 50, ("indicators.raw", 2): 7}
    committed = {("indicators.raw", 0): 90, ("indicators.raw", 1): -1001}
    starts = {("indicators.raw", 1): 20}
    rows = lags(committed, ends, starts)
    assert [(r.partition, r.committed, r.lag) for r in rows] == [
        (0, 90, 10), (1, -1001, 30), (2, None, 7)]


def test_rate_counts_offsets_moved_per_second():
    before = {("t", 0): 10, ("t", 1): -1001}
    after = {("t", 0): 30, ("t", 1): 10, ("t", 2): 5}
    assert rate(before, after, 2.0) == 17.5
    assert rate(before, after, 0) == 0.0


def test_dead_letters_of_the_last_hour_count_from_the_offset_an_hour_ago():
    ends = {("indicators.invalid", 0): 500, ("indicators.invalid", 1): 80}
    hour_ago = {("indicators.invalid", 0): 450, ("indicators.invalid", 1): -1}
    assert dead_letter_count(ends, hour_ago) == 50


def test_text_lists_members_and_lagging_partitions_only():
    group = Group("asn", "threatroute-asn", "stable",
                  [Member("rdkafka", "/127.0.0.1", ["indicators.raw[0]"])],
                  [Lag("indicators.raw", 0, 5, 9, 4), Lag("indicators.raw", 1, 3, 3, 0)], 4,
                  12.5, 20.0)
    text = render(Status("cid", 1, ["1@127.0.0.1:9092"], 3,
                         {"indicators.invalid": 2, "feedback.invalid": 0}, 2.0, [group]))
    assert "indicators.raw[0] committed 5 end 9 lag 4" in text
    assert "indicators.raw[1] committed" not in text  # no lag, not listed
    assert "recipients  3" in text and "indicators.invalid 2" in text
