"""Contributions are judged like ingest, stamped from the topic, limited per contributor."""

from __future__ import annotations

import json

from threatroute.contributions import (
    FORBIDDEN,
    INVALID,
    RATE_LIMITED,
    Bucket,
    RateLimit,
    judge_contribution,
)
from threatroute.record import indicator_key


def _raw(record: dict) -> bytes:
    return json.dumps(record).encode()


C2 = {"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.15", "port": 443},
      "tlp": "AMBER", "feed": {"accuracy": 80, "name": "my-honeypot", "provider": "spamhaus"}}

BUNDLE = {"type": "bundle", "id": "bundle--6f2b3c1e-8f4b-4e0a-9a55-1d2a3b4c5d6e", "objects": [
    {"type": "indicator", "spec_version": "2.1",
     "id": "indicator--0f7c5a4e-2b9d-4c1e-8f3a-6d5e4c3b2a19",
     "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
     "valid_from": "2026-01-01T00:00:00Z", "pattern_type": "stix",
     "pattern": "[ipv4-addr:value = '198.51.100.9'] OR [domain-name:value = 'bad.example']",
     "indicator_types": ["malicious-activity"], "labels": ["c2-server"],
     "object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]}]}


def test_a_valid_record_is_stamped_with_its_contributor_and_keeps_its_tlp() -> None:
    judged = judge_contribution("hoster-a", _raw(C2), None, now=0.0)
    assert judged.refused == []
    [accepted] = judged.accepted
    record = accepted.record
    assert accepted.key == indicator_key(record)
    assert record["feed"]["provider"] == "hoster-a"
    assert record["feed"]["name"] == "contributions.hoster-a"
    assert record["feed"]["accuracy"] == 80
    assert record["extra"]["contributor"] == {
        "id": "hoster-a", "claimed": {"name": "my-honeypot", "provider": "spamhaus"}}
    assert record["tlp"] == "AMBER"
    assert record["source"]["ip"] == "192.0.2.15"


def test_a_stix_bundle_gives_one_indicator_per_observable() -> None:
    judged = judge_contribution("hoster-a", _raw(BUNDLE), None, now=0.0)
    assert judged.refused == []
    sources = sorted(json.dumps(c.record["source"], sort_keys=True) for c in judged.accepted)
    assert len(sources) == 2
    assert all(c.record["extra"]["contributor"]["id"] == "hoster-a" for c in judged.accepted)
    assert {c.record["tlp"] for c in judged.accepted} == {"AMBER"}


def test_ownership_and_routing_fields_refuse_the_contribution() -> None:
    for steer in ({"extra": {"owner": {"id": "hoster-b"}}}, {"recipient": "hoster-b"},
                  {"extra": {"contributor": {"id": "cert-gb"}}}, {"alert_id": "x" * 22}):
        raw = _raw({**C2, **steer})
        judged = judge_contribution("hoster-a", raw, None, now=0.0)
        assert judged.accepted == []
        [refusal] = judged.refused
        assert (refusal.kind, refusal.raw) == (FORBIDDEN, raw)
        assert refusal.field and refusal.field in refusal.reason


def test_invalid_input_is_refused_with_its_bytes_and_a_reason() -> None:
    for raw in (b"not json", b"[1,2]", _raw({"classification": {"type": "c2-server"}}),
                _raw({**C2, "source": {"ip": "not-an-ip"}}),
                _raw({"type": "bundle", "id": "bundle--x", "objects": []})):
        judged = judge_contribution("hoster-a", raw, None, now=0.0)
        assert judged.accepted == []
        assert [r.kind for r in judged.refused] == [INVALID]
        assert judged.refused[0].reason
        assert judged.refused[0].raw in (raw, b"") or judged.refused[0].raw in raw


def test_the_rate_limit_refuses_the_excess_and_refills_with_time() -> None:
    limit = RateLimit(per_minute=60, burst=2)
    bucket = None
    kinds = []
    for _ in range(3):
        judged = judge_contribution("hoster-a", _raw(C2), bucket, now=0.0, limit=limit)
        kinds.append([r.kind for r in judged.refused] or ["accepted"])
        bucket = judged.bucket
    assert kinds == [["accepted"], ["accepted"], [RATE_LIMITED]]
    assert "rate limit" in judge_contribution("hoster-a", _raw(C2), bucket, now=0.0,
                                              limit=limit).refused[0].reason
    later = judge_contribution("hoster-a", _raw(C2), bucket, now=1.5, limit=limit)
    assert len(later.accepted) == 1  # 1.5 s at 1/s refilled one token
    bundle = judge_contribution("hoster-a", _raw(BUNDLE), Bucket(1.0, 0.0), now=0.0,
                                limit=limit)
    assert bundle.accepted == [] and [r.kind for r in bundle.refused] == [RATE_LIMITED]
    assert bundle.bucket.tokens == 1.0, "a refused message costs nothing"


def test_the_stage_sends_refuses_and_counts_per_contributor() -> None:
    """The stage only carries judge_contribution's decisions to a Step (no Kafka here)."""
    from datetime import UTC, datetime, timedelta

    from prometheus_client import CollectorRegistry

    from threatroute.streams.config import load_config
    from threatroute.streams.runtime.metrics import Metrics
    from threatroute.streams.runtime.step import Input, Step
    from threatroute.streams.stages.contribute import ContributionsStage

    config = load_config().with_overrides(contributions_per_minute=60.0, contributions_burst=1.0)
    metrics = Metrics(CollectorRegistry())
    stage = ContributionsStage(config, metrics)
    steer = _raw({**C2, "extra": {"owner": {"id": "hoster-b"}}})
    inputs = [Input(None, {}, raw, "contributions.hoster-a", 0, n)
              for n, raw in enumerate([_raw(C2), _raw(C2), steer, b"nope"])]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    step = Step(start)
    stage.process(inputs, step)
    assert [(o.topic, o.value["extra"]["contributor"]["id"]) for o in step.outputs] == [
        ("indicators.raw", "hoster-a")]
    assert sorted(r.reason.split(":")[0] for r in step.refused) == [
        "a contributor cannot set extra.owner", "not JSON", "rate limit"]
    assert all(r.origin is not None and r.origin.topic == "contributions.hoster-a"
               for r in step.refused)
    stage.committed(step)
    counted = {s.labels["outcome"]: s.value for m in metrics.registry.collect()
               if m.name == "threatroute_contributions" for s in m.samples
               if s.name.endswith("_total")}
    assert counted == {"accepted": 1, "rate_limited": 1, "forbidden": 1, "invalid": 1}
    later = Step(start + timedelta(seconds=2))
    stage.process(inputs[:1], later)
    assert len(later.outputs) == 1, "the bucket refilled with the stage's clock"
