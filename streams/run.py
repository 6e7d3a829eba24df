"""`threatroute run STAGE|all`: run stages as their own consumer groups until SIGTERM/SIGINT.

`all` runs every stage in one process, one thread each, each still its own consumer group,
so the same topics and offsets serve whether stages run together or apart.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence

from streams.config import Config
from streams.feedback import FeedbackStage
from streams.kafka import AckedProducer, make_consumer
from streams.loop import StageStats, run_stage
from streams.match import NOTIFYING, MatchStage
from streams.metrics import Metrics
from streams.stages import STAGES, EnrichStage

log = logging.getLogger(__name__)
Runnable = EnrichStage | MatchStage | FeedbackStage


def group_id(stage: str) -> str:
    return f"threatroute-{stage}"


def build(config: Config, name: str, metrics: Metrics, batch_size: int) -> Runnable:
    if name == "match":
        return MatchStage(config, metrics.stage(name), batch_size=batch_size)
    if name == "feedback":
        return FeedbackStage(config, metrics, window=config.baseline_window())
    return STAGES[name](config)


def run_stages(config: Config, names: Sequence[str], stop: threading.Event,
               batch_size: int = 2000, metrics: Metrics | None = None) -> dict[str, StageStats]:
    """Build and run the named stages until `stop` is set; returns their stats."""
    metrics = metrics or Metrics()
    stages = [build(config, name, metrics, batch_size) for name in names]
    metrics.serve(config.metrics_port, config.metrics_address)
    stats = {stage.name: StageStats() for stage in stages}
    failures: list[BaseException] = []

    def work(stage: Runnable) -> None:
        try:
            if not isinstance(stage, EnrichStage):
                stage.run(stop)
                return
            stage_metrics = metrics.stage(stage.name)
            consumer = make_consumer(config, group_id(stage.name), [stage.source],
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
            if isinstance(stage, EnrichStage):
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
