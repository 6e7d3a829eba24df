"""Enrichment stages fused into one consumer when they run in one process (`run all`).

Run as threads, three stages each consume, decode, encode and produce every record under one
GIL; fused, a record is consumed and decoded once and passes asn -> geo -> hoster in one
pass. Every intermediate topic is still produced, so subscribers of `indicators.asn` and
`indicators.geo` see what they always see, and after each batch the downstream stages' own
groups are committed past what was produced for them: switching back to separate stage
processes continues where the fused chain stopped instead of re-enriching everything.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

from threatroute.streams.config import Config
from threatroute.streams.runtime.loop import Input, Output, Refused
from threatroute.streams.stages.enrich import INVALID, EnrichStage, refusal

log = logging.getLogger(__name__)


class FusedChain:
    """Consecutive enrichment stages (each one's sink is the next one's source) as one stage."""

    dead_letter_topic = INVALID

    def __init__(self, config: Config, stages: list[EnrichStage], groups: Mapping[str, str]
                 ) -> None:
        for upstream, downstream in itertools.pairwise(stages):
            if upstream.sink != downstream.source:
                raise ValueError(f"{upstream.name} -> {downstream.name} is not a chain")
        self.stages = stages
        self.name = "+".join(stage.name for stage in stages)
        self.source = stages[0].source
        # committers: group members of nobody, only used to move the downstream groups on
        self._committers = {
            stage.source: Consumer({**config.kafka_settings(), "group.id": groups[stage.name],
                                    "enable.auto.commit": False})
            for stage in stages[1:]}
        self._warned = False

    def process(self, batch: list[Input]) -> Iterable[Output | Refused]:
        records = [item.record for item in batch]
        if self.stages[0].prepare:
            records = self.stages[0].prepare(records)
        for item, record in zip(batch, records, strict=True):
            for stage in self.stages:
                try:
                    record = stage.transform(record)
                except Exception as exc:  # as in a lone stage: this record stops here
                    yield refusal(stage.name, item.raw, exc)
                    break
                yield Output(stage.sink, item.key, record)

    def committed(self, acked: Mapping[tuple[str, int], int]) -> None:
        """After a batch: mark what was produced for each downstream stage as consumed."""
        for topic, committer in self._committers.items():
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in acked.items() if t == topic]
            if not offsets:
                continue
            try:
                committer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # that stage also runs as its own process: it consumes the topic itself
                if not self._warned:
                    log.warning("could not move the group of %s on (%s); is that stage running "
                                "separately too?", topic, exc)
                    self._warned = True

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
        for committer in self._committers.values():
            committer.close()
