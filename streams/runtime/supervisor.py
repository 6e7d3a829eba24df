"""`threatroute run STAGE|all`: run stages as their own consumer groups until SIGTERM/SIGINT.

Every stage is run alike: one thread, one consumer in the stage's group, the one consume
loop, the commit strategy the stage asks for (`exactly_once`) and dead letters to its topic.

`all` runs every stage in one process. With `fuse` (the default) asn, geo and hoster run as
one consumer (streams/runtime/chain.py: it consumes as the asn group, and whether it writes
the intermediate topics is `[run] fused_intermediate_topics`); match and feedback run beside
it.

publish runs as `[publish] workers` (or `--workers`) loops, each its own thread, consumer and
transactional producer: the publish group splits match.routed's partitions between them, so
each producer writes a share of the recipients' topics (streams/stages/publish.py says why).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer, consumer_settings
from threatroute.streams.kafka.transactions import (
    AfterAcknowledgement,
    CommitStrategy,
    InTransaction,
    transactional_producer,
)
from threatroute.streams.runtime import heap
from threatroute.streams.runtime.chain import FusedChain
from threatroute.streams.runtime.loop import (
    DeadLetters,
    Recovery,
    StageFailed,
    StageStats,
    run_stage,
)
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.step import Stage
from threatroute.streams.stages.contribute import ContributionsStage
from threatroute.streams.stages.enrich import STAGES, EnrichStage
from threatroute.streams.stages.feedback import FeedbackStage
from threatroute.streams.stages.match import MatchStage
from threatroute.streams.stages.publish import PublishStage

log = logging.getLogger(__name__)
ENRICHMENT = ("asn", "geo", "hoster")


def build(config: Config, name: str, metrics: Metrics) -> Stage:
    if name == "match":
        return MatchStage(config, metrics)
    if name == "feedback":
        return FeedbackStage(config, metrics, window=config.baseline_window())
    if name == "contributions":
        return ContributionsStage(config, metrics)
    if name == "publish":
        return PublishStage(config)
    return STAGES[name](config)


def build_all(config: Config, names: Sequence[str], metrics: Metrics, fuse: bool,
              publish_workers: int | None = None) -> list[Stage]:
    """The named stages, publish as `publish_workers` (default `[publish] workers`) stages."""
    workers = publish_workers or config.publish_workers
    stages = [stage for name in names for stage in (
        [PublishStage(config, worker=i) for i in range(workers)] if name == "publish"
        else [build(config, name, metrics)])]
    chain = [s for s in stages if isinstance(s, EnrichStage)]
    if not fuse or [s.name for s in chain] != list(ENRICHMENT):
        return stages
    fused = FusedChain(chain, intermediate_topics=config.fused_intermediate_topics)
    return [fused, *(s for s in stages if not isinstance(s, EnrichStage))]


def commit_strategy(config: Config, stage: Stage,
                    on_error: Callable[[KafkaError], None] | None = None) -> CommitStrategy:
    """The stage's commit strategy, able to replace its producer after a fatal error (the
    same transactional id: the new producer fences the old one and rejoins). `on_error`: the
    transactional producer's error_cb."""
    if stage.exactly_once:
        instance = stage.instance or f"{socket.gethostname()}-{os.getpid()}"

        def remake() -> Producer:
            return transactional_producer(config, stage.group, instance, on_error)

        return InTransaction(remake(), remake)
    return AfterAcknowledgement(AckedProducer(config), lambda: AckedProducer(config))


def run_one(config: Config, stage: Stage, stop: threading.Event, metrics: Metrics | None = None,
            stats: StageStats | None = None, batch_size: int | None = None,
            label: str | None = None) -> StageStats:
    """Run one stage in this thread until `stop` is set (the stage is closed at the end).
    `batch_size`: records per batch, when given; else the stage's own, else 2,000.
    `label`: what its log lines call it (one of several loops: `publish loop 3`)."""
    metrics = metrics or Metrics()
    try:
        # an exactly-once stage reads committed records only (its inputs come from
        # transactions); the at-least-once stages read as they always did
        extra: dict[str, Any] = ({"isolation.level": "read_committed"} if stage.exactly_once
                                 else {})
        extra.update(stage.consumer_extra)
        recovery = Recovery(label or stage.name)
        extra["error_cb"] = recovery.on_error  # the broker lost: said once, not per retry
        consumer = Consumer(consumer_settings(config, stage.group, **extra))
        commit = commit_strategy(config, stage, recovery.on_producer_error)
        stage.start()
        heap.freeze()  # its data is loaded and its indexes built
        return run_stage(stage, consumer, commit, DeadLetters(stage.dead_letter_topic, stage.name),
                         stop, stats, batch_size=batch_size or stage.batch_size or 2000,
                         metrics=metrics.stage(stage.name, getattr(stage, "worker", 0)),
                         recovery=recovery)
    finally:
        stage.close()


def run_stages(config: Config, names: Sequence[str], stop: threading.Event,
               batch_size: int | None = None, metrics: Metrics | None = None, fuse: bool = True,
               publish_workers: int | None = None) -> dict[str, StageStats]:
    """Build and run the named stages until `stop` is set; returns their stats (a stage run
    by several workers, publish: their sums).

    With `fuse`, asn, geo and hoster run as one consumer when all three are named.
    """
    metrics = metrics or Metrics()
    stages = build_all(config, names, metrics, fuse, publish_workers)
    metrics.serve(config.metrics_port, config.metrics_address)
    stats = [StageStats() for _ in stages]
    failures: list[BaseException] = []

    def work(stage: Stage, stat: StageStats) -> None:
        try:
            run_one(config, stage, stop, metrics, stat, batch_size, _label(stage, stages))
        except StageFailed as exc:  # says what the operator must mend: no traceback
            log.error("stage %s stopped: %s", stage.name, exc)
            failures.append(exc)
            stop.set()
        except BaseException as exc:  # one dead stage stops the process: a supervisor restarts it
            log.exception("stage %s stopped", stage.name)
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(s, stat), name=_thread_name(s, stages))
               for s, stat in zip(stages, stats, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    if failures:
        raise failures[0]
    totals: dict[str, StageStats] = {}
    for stage, stat in zip(stages, stats, strict=True):
        total = totals.setdefault(stage.name, StageStats())
        total.consumed += stat.consumed
        total.produced += stat.produced
        total.refused += stat.refused
        total.batches += stat.batches
    return totals


def _loop_number(stage: Stage, stages: Sequence[Stage]) -> int | None:
    """Which of the stage's loops in this process it is, when there are several."""
    worker = getattr(stage, "worker", None)
    several = sum(s.name == stage.name for s in stages) > 1
    return worker if several else None


def _thread_name(stage: Stage, stages: Sequence[Stage]) -> str:
    loop = _loop_number(stage, stages)
    return f"stage-{stage.name}" + (f"-{loop}" if loop is not None else "")


def _label(stage: Stage, stages: Sequence[Stage]) -> str:
    """The stage's name in log lines; one of several loops says which (`publish loop 3`)."""
    loop = _loop_number(stage, stages)
    return f"{stage.name} loop {loop}" if loop is not None else stage.name


def install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch, committing, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
