"""Feed trust learned from feedback: a feed's false positives lower the confidence of its records.

Every answered alert (one that got any feedback) is a vote on the feed it came from: a
`false_positive` says the feed was wrong, a `not_ours` that it (or the ownership data) sent it
to the wrong place, anything else that it was right. A feed's trust factor is

    factor = 1 - (false_positives + not_ours_weight * not_ours) / (answered + prior_reports)

clamped to [min_factor, max_factor]; `prior_reports` are pseudo-votes for the feed, so a few
early reports cannot sink it. The confidence a record is routed with is its `feed.accuracy`
(100 when unset) times the factor of its feed: a noisy feed falls below recipients'
`min_confidence`, a good one keeps its accuracy.

The counts come per partition (the match stage counts the feedback of the indicators it owns)
and are summed here: `FeedCounts` add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_ACCURACY = 100.0


@dataclass(frozen=True)
class TrustPolicy:
    prior_reports: float = 5.0  # pseudo-reports that the feed was right
    not_ours_weight: float = 0.5  # a misrouting is partly the registry's fault, not the feed's
    min_factor: float = 0.2  # the most a feed's confidence can be lowered to (fraction)
    max_factor: float = 1.0  # never raised above what the feed itself claims


@dataclass(frozen=True, slots=True)
class FeedCounts:
    """Feedback on one feed's alerts (one partition's share, or summed)."""

    answered: int = 0
    false_positive: int = 0
    not_ours: int = 0

    def __add__(self, other: FeedCounts) -> FeedCounts:
        return FeedCounts(self.answered + other.answered,
                          self.false_positive + other.false_positive,
                          self.not_ours + other.not_ours)

    def counted(self, status: str, first: bool) -> FeedCounts:
        """These counts after one accepted report (`first`: the alert's first report)."""
        return FeedCounts(self.answered + (1 if first else 0),
                          self.false_positive + (status == "false_positive"),
                          self.not_ours + (status == "not_ours"))

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FeedCounts:
        return cls(*(int(value.get(name) or 0) for name in cls.__dataclass_fields__))


@dataclass(frozen=True, slots=True)
class Trust:
    """A feed's learned trust and why."""

    feed: str
    factor: float
    counts: FeedCounts

    def explain(self) -> str:
        c = self.counts
        return (f"feed {self.feed} trust x{self.factor:.2f} ({c.false_positive} false positive, "
                f"{c.not_ours} not ours of {c.answered} answered)")


def trust_of(feed: str, counts: FeedCounts, policy: TrustPolicy) -> Trust:
    """The trust factor of one feed from its (summed) feedback counts."""
    bad = counts.false_positive + policy.not_ours_weight * counts.not_ours
    factor = 1.0 - bad / (counts.answered + policy.prior_reports) \
        if counts.answered + policy.prior_reports > 0 else 1.0
    return Trust(feed, min(policy.max_factor, max(policy.min_factor, factor)), counts)


def sum_counts(parts: Iterable[tuple[str, FeedCounts]]) -> dict[str, FeedCounts]:
    """{feed: counts} from per-partition (feed, counts) entries."""
    out: dict[str, FeedCounts] = {}
    for feed, counts in parts:
        out[feed] = out[feed] + counts if feed in out else counts
    return out


class FeedTrust:
    """Every feed's trust, built from summed counts; immutable once built (rebuild on change)."""

    __slots__ = ("feeds", "policy")

    def __init__(self, counts: Mapping[str, FeedCounts] | None = None,
                 policy: TrustPolicy | None = None) -> None:
        self.policy = policy or TrustPolicy()
        self.feeds = {feed: trust_of(feed, c, self.policy) for feed, c in (counts or {}).items()}

    @classmethod
    def from_rows(cls, rows: Iterable[Any], policy: TrustPolicy | None = None) -> FeedTrust:
        """From the `match.trust` table's values: one per feed and match partition, each
        `{"feed": name, **counts}`; anything else is skipped."""
        parts = [(str(v["feed"]), FeedCounts.from_json(v)) for v in rows
                 if isinstance(v, Mapping) and isinstance(v.get("feed"), str) and v["feed"]]
        return cls(sum_counts(parts), policy)

    def confidence(self, record: Mapping[str, Any]) -> tuple[float, Trust | None]:
        """(confidence to route `record` with, the feed's Trust if it changed anything)."""
        feed = record.get("feed") or {}
        accuracy = feed.get("accuracy")
        accuracy = DEFAULT_ACCURACY if accuracy is None else float(accuracy)
        name = feed.get("name")
        trust = self.feeds.get(name) if self.feeds and isinstance(name, str) else None
        if trust is None or trust.factor == 1.0:
            return accuracy, None
        return round(accuracy * trust.factor, 2), trust


__all__ = ["FeedCounts", "FeedTrust", "Trust", "TrustPolicy", "sum_counts", "trust_of"]
