"""The contributions stage: indicators recipients share back, onto `indicators.raw`.

It subscribes to every recipient's `contributions.<id>` by pattern; only recipient `id` can
write there (the broker's ACLs), so the topic says who contributed. The decision is
threatroute.contributions.judge_contribution, pure: parsed and normalised like ingest (JSON
records or STIX 2.1 bundles), provenance stamped from the topic, ownership and routing fields
refused, a token bucket per contributor. Accepted indicators go to `indicators.raw` and are
enriched and routed like any other; refusals are dead-lettered to `indicators.invalid` with
their original bytes and reason, and every outcome is counted per contributor
(`threatroute_contributions_total{recipient,outcome}`).

At-least-once like the enrichment stages: the rate-limit buckets live in memory (each
contributor's topic has one partition, so one worker sees all of its contributions); after a
restart every contributor starts with a full allowance.
"""

from __future__ import annotations

from threatroute import topics
from threatroute.contributions import Bucket, RateLimit, judge_contribution
from threatroute.streams.config import Config
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.step import BaseStage, Clock, Input, Output, Step, utc_now


class ContributionsStage(BaseStage):
    name = "contributions"
    group = topics.group_id("contributions")
    subscription = (topics.CONTRIBUTIONS_PATTERN,)
    dead_letter_topic = topics.INVALID
    raw_input = True  # a message is a record or a STIX bundle: judge_contribution parses it
    # a new recipient's topic joins the pattern subscription within this long
    consumer_extra = {"topic.metadata.refresh.interval.ms": 30_000}

    def __init__(self, config: Config, metrics: Metrics, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.limit = RateLimit(config.contributions_per_minute, config.contributions_burst)
        self.buckets: dict[str, Bucket] = {}
        self.counter = metrics.contributions

    def process(self, inputs: list[Input], step: Step) -> None:
        now = step.now.timestamp()
        for item in inputs:
            contributor = topics.recipient_of(item.topic, topics.CONTRIBUTIONS_PREFIX)
            if contributor is None:  # the pattern matched a topic that is no recipient's
                step.refuse(item.raw, f"{item.topic} is not a recipient's contributions topic",
                            origin=item)
                continue
            judged = judge_contribution(contributor, item.raw, self.buckets.get(contributor),
                                        now, self.limit)
            self.buckets[contributor] = judged.bucket
            for contribution in judged.accepted:
                step.send(Output(topics.RAW, contribution.key, contribution.record))
                time = contribution.record.get("time", {}).get("observation")
                if isinstance(time, str):
                    step.observed.append(time)
            step.count(f"{contributor}\0accepted", len(judged.accepted))
            for refusal in judged.refused:
                step.refuse(refusal.raw, refusal.reason, refusal.field, origin=item)
                step.count(f"{contributor}\0{refusal.kind}")

    def committed(self, step: Step) -> None:
        for key, n in step.counts.items():
            contributor, outcome = key.split("\0")
            if n:
                self.counter.labels(contributor, outcome).inc(n)
