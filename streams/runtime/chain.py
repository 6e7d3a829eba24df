"""Enrichment stages fused into one consumer when they run in one process (`run all`).

Run as threads, three stages each consume, decode, encode and produce every record under one
GIL; fused, a batch is consumed and decoded once and passes asn -> geo -> hoster in one pass
(each stage's `prepare`, then its transforms), and only the last topic has to be written.

Semantics (README, "Running the stages"):
- The chain consumes its first stage's source as that stage's group (`threatroute-asn`), so
  it shares `indicators.raw` with any lone `run asn` process, and commits offsets of that
  group only: it never commits for a group it is not a member of.
- `[run] fused_intermediate_topics` (default true) says whether it also writes the
  intermediate topics (`indicators.asn`, `indicators.geo`) for their own subscribers. Those
  records carry the header `threatroute-carried`: a lone downstream stage (`run geo`,
  `run hoster`) commits past them without enriching them again, because the chain already
  took them to the end. So any mix of fused and lone processes enriches each record once, and
  switching between them neither loses nor repeats work.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from threatroute import topics
from threatroute.streams.runtime.step import BaseStage, Input, Output, Step, indicator_contract
from threatroute.streams.stages.enrich import EnrichStage, observation_times

_CARRIED_HEADERS = ((topics.CARRIED_HEADER, b"1"),)


class FusedChain(BaseStage):
    """Consecutive enrichment stages (each one's sink is the next one's source) as one stage."""

    check = staticmethod(indicator_contract)

    def __init__(self, stages: Sequence[EnrichStage], intermediate_topics: bool = True) -> None:
        for upstream, downstream in itertools.pairwise(stages):
            if upstream.sink != downstream.source:
                raise ValueError(f"{upstream.name} -> {downstream.name} is not a chain")
        self.stages = list(stages)
        self.intermediate_topics = intermediate_topics
        self.name = "+".join(stage.name for stage in stages)
        self.group = stages[0].group
        self.subscription = [stages[0].source]
        self.dead_letter_topic = stages[0].dead_letter_topic

    def process(self, inputs: list[Input], step: Step) -> None:
        alive = inputs
        last = self.stages[-1]
        for stage in self.stages:
            done = stage.run(alive, step)  # refusals stop a record here, as in a lone stage
            if stage is last:
                for item, record in done:
                    step.send(Output(stage.sink, item.key, record))
            else:
                if self.intermediate_topics:
                    for item, record in done:
                        step.send(Output(stage.sink, item.key, record,
                                         headers=_CARRIED_HEADERS))
                alive = [Input(item.key, record, item.raw, item.topic, item.partition,
                               item.offset) for item, record in done]
        step.observed.extend(observation_times(inputs))

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
