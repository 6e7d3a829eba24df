"""Indicators a recipient shares back: validated like ingest, stamped with who sent them.

A recipient writes to its own `contributions.<id>` topic (the broker's ACLs see to that), one
message per contribution: a JSON object in the ingest shape (the `jsonl` format's records), or
a STIX 2.1 bundle (the `stix` format). `judge_contribution` is the whole decision, pure:

- each item is parsed and normalised by the same feed parsers `threatroute ingest` uses, and
  so admitted through the record contract (threatroute/contract.py), checked again once the
  provenance stamps are added;
- a contribution carrying ownership or routing fields (`extra.owner`, the pipeline's own
  `extra` stamps, alert-level keys such as `recipient`) is refused whole: who owns an
  indicator and who receives it is decided by the pipeline, never by the sender;
- provenance comes from the topic, never from the record: `feed.provider` is the
  contributor's id, `feed.name` is `contributions.<id>` (so feed trust learns about each
  contributor on its own), and `extra.contributor` names it (with the feed name it claimed);
- the contributor's TLP and confidence (`feed.accuracy`) are kept;
- a per-contributor token bucket limits how many indicators it may add; a message that
  would exceed it is refused whole with a reason (its sender may send it again later).

Refusals carry the original bytes, a reason and a kind (`invalid`, `forbidden`,
`rate_limited`) for the dead letter and the counters.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from threatroute import topics
from threatroute.contract import violation
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, parse_report

# set by the pipeline only (enrichers, the match stage): a contributor may not claim them
FORBIDDEN_EXTRA = ("owner", "contributor", "feed_asn", "feed_cc")
# alert-level and routing keys: meaningless on an indicator unless someone tries to steer it
FORBIDDEN_TOP = ("recipient", "recipients", "alert_id", "reasons", "notification", "owner",
                 "route", "routing", "subscribers")

INVALID, FORBIDDEN, RATE_LIMITED = "invalid", "forbidden", "rate_limited"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`per_minute` indicators on average, bursts of up to `burst`."""

    per_minute: float = 600.0
    burst: float = 1000.0


@dataclass(frozen=True, slots=True)
class Bucket:
    """One contributor's remaining allowance at `at` (seconds, any monotonic clock)."""

    tokens: float
    at: float

    def refilled(self, now: float, limit: RateLimit) -> Bucket:
        gained = max(0.0, now - self.at) * limit.per_minute / 60.0
        return Bucket(min(limit.burst, self.tokens + gained), max(now, self.at))


@dataclass(frozen=True, slots=True)
class Contribution:
    """An accepted indicator, ready for `indicators.raw`."""

    key: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    raw: bytes
    reason: str
    kind: str               # INVALID | FORBIDDEN | RATE_LIMITED
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    """What to send (`accepted`), what to dead-letter (`refused`), what to remember."""

    accepted: list[Contribution]
    refused: list[Refusal]
    bucket: Bucket


def _document(raw: bytes) -> tuple[str, Any] | Refusal:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Refusal(raw, f"not JSON: {exc}"[:300], INVALID)
    if not isinstance(value, dict):
        return Refusal(raw, f"expected a JSON object (an indicator or a STIX 2.1 bundle), got "
                            f"{type(value).__name__}", INVALID)
    return ("stix" if value.get("type") == "bundle" else "jsonl"), value


def _forbidden(record: Mapping[str, Any]) -> str | None:
    for key in FORBIDDEN_TOP:
        if key in record:
            return key
    extra = record.get("extra")
    if isinstance(extra, Mapping):
        for key in FORBIDDEN_EXTRA:
            if key in extra:
                return f"extra.{key}"
    return None


def stamp(record: dict[str, Any], contributor: str) -> dict[str, Any]:
    """The record with its provenance taken from the topic it arrived on."""
    feed = dict(record.get("feed") or {})
    claimed = {k: feed[k] for k in ("name", "provider") if k in feed}
    feed.update(provider=contributor, name=topics.contributions_topic(contributor))
    extra = dict(record.get("extra") or {})
    extra["contributor"] = {"id": contributor, **({"claimed": claimed} if claimed else {})}
    return {**record, "feed": feed, "extra": extra}


def where_of(fmt: str, number: int) -> str:
    return f"item {number}: " if fmt == "stix" and number else ""


def judge_contribution(contributor: str, raw: bytes, bucket: Bucket | None, now: float,
                       limit: RateLimit = RateLimit()) -> Judgement:
    """Judge one message from `contributions.<contributor>`; `bucket` is what the previous
    judgement remembered for this contributor (None: a full allowance)."""
    bucket = (bucket or Bucket(limit.burst, now)).refilled(now, limit)
    document = _document(raw)
    if isinstance(document, Refusal):
        return Judgement([], [document], bucket)
    fmt, _ = document
    outcomes = list(parse_report(get_format(fmt), io.BytesIO(raw)))
    accepted: list[Contribution] = []
    refused: list[Refusal] = []
    for outcome in outcomes:
        if isinstance(outcome, Rejected):
            refused.append(Refusal(outcome.raw or raw,
                                   where_of(fmt, outcome.number) + outcome.reason, INVALID,
                                   outcome.field))
        elif isinstance(outcome, Accepted):
            field = _forbidden(outcome.record)
            if field is not None:
                # one steering attempt taints the whole contribution: refuse it all
                reason = (f"a contributor cannot set {field}: ownership and routing are "
                          "decided by the pipeline")
                return Judgement([], [Refusal(raw, reason, FORBIDDEN, field)], bucket)
            stamped = stamp(outcome.record, contributor)
            broken = violation(stamped)  # the record contract, again with the stamps added
            if broken is not None:
                refused.append(Refusal(raw, f"{where_of(fmt, outcome.number)}{broken[1]}",
                                       INVALID, broken[0]))
                continue
            accepted.append(Contribution(outcome.key, stamped))
    if not accepted and not refused:
        refused.append(Refusal(raw, "no indicator in the contribution (a STIX bundle needs "
                                    "indicator objects with supported patterns)", INVALID))
    if len(accepted) > bucket.tokens:
        # the whole message waits for the sender's next try: partial acceptance of a bundle
        # would leave the sender guessing which of its indicators got through
        reason = (f"rate limit: {len(accepted)} indicators, {int(bucket.tokens)} left of "
                  f"{limit.per_minute:g}/minute (burst {limit.burst:g}) for {contributor}")
        return Judgement([], [Refusal(raw, reason, RATE_LIMITED), *refused], bucket)
    return Judgement(accepted, refused, replace(bucket, tokens=bucket.tokens - len(accepted)))
