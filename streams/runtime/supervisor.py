"""`threatroute run STAGE|all`: run stages as their own consumer groups until SIGTERM/SIGINT.

`all` runs every stage in one process. The enrichment stages are fused into one consumer
(streams/chain.py) that still produces every intermediate topic and keeps each stage's group
offsets, so the same topics and offsets serve whether stages run together or apart; match
and feedback run beside it, one thread each.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence

from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer, make_consumer
from threatroute.streams.runtime.chain import FusedChain
from threatroute.streams.runtime.loop import StageStats, run_stage
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.stages.enrich import STAGES, EnrichStage
from threatroute.streams.stages.feedback import FeedbackStage
from threatroute.streams.stages.match import NOTIFYING, MatchStage

log = logging.getLogger(__name__)
Runnable = EnrichStage | FusedChain | MatchStage | FeedbackStage
ENRICHMENT = ("asn", "geo", "hoster")


def group_id(stage: str) -> str:
    return f"threatroute-{stage}"


def build(config: Config, name: str, metrics: Metrics, batch_size: int) -> Runnable:
    if name == "match":
        return MatchStage(config, metrics.stage(name), batch_size=batch_size)
    if name == "feedback":
        return FeedbackStage(config, metrics, window=config.baseline_window())
    return STAGES[name](config)


def build_all(config: Config, names: Sequence[str], metrics: Metrics, batch_size: int,
              fuse: bool) -> list[Runnable]:
    stages = [build(config, name, metrics, batch_size) for name in names]
    chain = [s for s in stages if isinstance(s, EnrichStage)]
    if not fuse or [s.name for s in chain] != list(ENRICHMENT):
        return stages
    fused = FusedChain(config, chain, {s.name: group_id(s.name) for s in chain})
    return [fused, *(s for s in stages if not isinstance(s, EnrichStage))]


def run_stages(config: Config, names: Sequence[str], stop: threading.Event,
               batch_size: int = 2000, metrics: Metrics | None = None, fuse: bool = True
               ) -> dict[str, StageStats]:
    """Build and run the named stages until `stop` is set; returns their stats.

    With `fuse`, asn, geo and hoster run as one consumer when all three are named.
    """
    metrics = metrics or Metrics()
    stages = build_all(config, names, metrics, batch_size, fuse)
    metrics.serve(config.metrics_port, config.metrics_address)
    stats = {stage.name: StageStats() for stage in stages}
    failures: list[BaseException] = []

    def work(stage: Runnable) -> None:
        try:
            if isinstance(stage, MatchStage | FeedbackStage):
                stage.run(stop)
                return
            stage_metrics = metrics.stage(stage.name)
            # a fused chain consumes as its first stage: the groups continue across topologies
            group = group_id(stage.stages[0].name if isinstance(stage, FusedChain) else stage.name)
            consumer = make_consumer(config, group, [stage.source],
                                     on_revoke=lambda c, ps: stage_metrics.forget_partitions(ps))
            run_stage(stage, consumer, AckedProducer(config), stop, stats[stage.name],
                      batch_size=batch_size, metrics=stage_metrics)
        except BaseException as exc:  # one dead stage stops the process: a supervisor restarts it
            log.exception("stage %s stopped", stage.name)
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(s,), name=f"stage-{s.name}") for s in stages]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    finally:
        for stage in stages:
            if isinstance(stage, EnrichStage | FusedChain):
                stage.close()
    if failures:
        raise failures[0]
    for stage in stages:
        if isinstance(stage, MatchStage):
            stats[stage.name].consumed = stage.counts["consumed"]
            stats[stage.name].produced = sum(stage.counts[a] for a in NOTIFYING)
            stats[stage.name].refused = stage.counts["refused"]
            stats[stage.name].batches = 1 if stage.counts["consumed"] else 0
    return stats


def install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch, committing, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
