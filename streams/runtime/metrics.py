"""All Prometheus metrics, declared together against one explicit registry (docs/metrics.md).

Stage metrics are counted as batches commit. Outcome metrics (alerts, statuses, times to
acknowledge and remediate, reduction) are not counters at all: a collector computes them at
scrape time from the ledger and status tables of the partitions the worker owns, so re-delivered
records never count twice and workers' figures sum exactly after a rebalance.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from threatroute.outcomes import Snapshot

log = logging.getLogger(__name__)
SCREENED = ("suppressed", "offline", "expired")  # matchers/screen.py DROP_KINDS
WITHHELD = ("muted", "not_ours", "quiet")  # matchers/verdicts.py gates
ESCALATED = ("upstream", "cert")  # matchers/escalation.py LEVELS
LATENCY_SAMPLE = 100  # record latencies observed per batch
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class StageMetrics:
    """The metrics of one stage, labels bound once (no per-record label lookups)."""

    def __init__(self, metrics: Metrics, stage: str, worker: int = 0) -> None:
        self.stage = stage
        self.worker = worker
        self._metrics = metrics
        self.records_in = metrics.records_in.labels(stage)
        self.records_out = metrics.records_out.labels(stage)
        self.records_invalid = metrics.records_invalid.labels(stage)
        self.batch_duration = metrics.batch_duration.labels(stage)
        self.record_latency = metrics.record_latency.labels(stage)
        self.last_progress = metrics.last_progress.labels(stage)
        # a process running a stage as several workers (publish's loops) exports the least
        # recent progress of them: one stalled worker is not hidden by the busy ones
        self._progress = metrics.progress.setdefault(stage, {})
        self._progressed(time.time())

    def _progressed(self, now: float) -> None:
        self._progress[self.worker] = now
        self.last_progress.set(min(self._progress.values()))

    def batch(self, consumed: int, produced: int, invalid: int, seconds: float,
              observed: Sequence[str]) -> None:
        """One committed batch; `observed` are the records' time.observation stamps, of which
        an even sample of at most LATENCY_SAMPLE is observed (a quantile needs no more)."""
        self.records_in.inc(consumed)
        self.records_out.inc(produced)
        self.records_invalid.inc(invalid)
        self.batch_duration.observe(seconds)
        now = time.time()
        step = max(1, len(observed) // LATENCY_SAMPLE)
        for stamp in observed[::step]:
            try:
                ingested = datetime.fromisoformat(stamp).timestamp()
                self.record_latency.observe(max(0.0, now - ingested))
            except (TypeError, ValueError):
                continue
        self._progressed(now)

    def idle(self) -> None:
        """Nothing to read is progress too: a caught-up stage is not stalled."""
        self._progressed(time.time())

    def lag(self, consumer: Consumer) -> None:
        """Export high watermark minus position for every assigned partition."""
        try:
            assignment = consumer.assignment()
            positions = consumer.position(assignment)
        except Exception:  # a rebalance in progress: next batch reports again
            return
        for tp in positions:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                         cached=True)
            except Exception:
                continue
            if high >= 0 and tp.offset >= 0:
                self._metrics.lag.labels(self.stage, tp.topic, str(tp.partition)).set(
                    max(0, high - tp.offset))

    def forget_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop lag series of partitions this worker no longer owns (no stale double series)."""
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(self.stage, tp.topic, str(tp.partition))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # no `*_created` series: they double every counter and histogram, and Prometheus
        # reads the start time from the counter resets it sees (process-wide switch)
        disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_in = Counter("threatroute_stage_records_in", "Records consumed",
                                  ["stage"], registry=r)
        self.records_out = Counter("threatroute_stage_records_out", "Records produced downstream",
                                   ["stage"], registry=r)
        self.records_invalid = Counter("threatroute_stage_records_invalid",
                                       "Records dead-lettered", ["stage"], registry=r)
        self.batch_duration = Histogram("threatroute_stage_batch_duration_seconds",
                                        "Processing time of one batch", ["stage"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.record_latency = Histogram("threatroute_stage_record_latency_seconds",
                                        "Commit time minus the record's ingest time", ["stage"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.last_progress = Gauge("threatroute_stage_last_progress_timestamp_seconds",
                                   "Unix time the stage last made progress (of several workers "
                                   "in one process, the least recent)", ["stage"], registry=r)
        self.progress: dict[str, dict[int, float]] = {}  # stage -> worker -> last progress
        self.lag = Gauge("threatroute_consumer_lag", "High watermark minus position",
                         ["stage", "topic", "partition"], registry=r)
        self.feedback_records = Counter("threatroute_feedback_records",
                                        "Feedback records accepted or invalid", ["outcome"],
                                        registry=r)
        # per contributing recipient: accepted (indicators to indicators.raw), invalid,
        # forbidden (ownership/routing fields) and rate_limited (messages dead-lettered)
        self.contributions = Counter("threatroute_contributions",
                                     "Contributions judged, per recipient and outcome",
                                     ["recipient", "outcome"], registry=r)
        # delivery paths: taxii, api and page (the gateway), webhook and email (push)
        self.delivery_sent = Counter("threatroute_delivery_sent",
                                     "Alerts delivered (push) or served (gateway), per path",
                                     ["path", "recipient"], registry=r)
        self.delivery_failed = Counter("threatroute_delivery_failed",
                                       "Alerts dead-lettered (push) or requests failed (gateway)",
                                       ["path", "recipient"], registry=r)
        self.delivery_retried = Counter("threatroute_delivery_retried",
                                        "Delivery attempts repeated after a failure",
                                        ["path", "recipient"], registry=r)
        self.delivery_latency = Histogram("threatroute_delivery_latency_seconds",
                                          "Push: alert on its topic to delivered; gateway: "
                                          "request to response", ["path"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.gateway_requests = Counter("threatroute_gateway_requests",
                                        "Gateway responses by path and HTTP status",
                                        ["path", "code"], registry=r)
        self.gateway_answers = Counter("threatroute_gateway_answers",
                                       "Feedback written through the gateway", ["path", "status"],
                                       registry=r)
        self.gateway_contributions = Counter("threatroute_gateway_contributions",
                                             "Records written to contributions.<id>",
                                             ["recipient"], registry=r)
        # feedback that acts (the match stage): reason labels made up front, so every series
        # exists, at 0, from the first scrape
        self.screened = Counter("threatroute_match_screened",
                                "Indicators not routed at all: on the operator's suppression "
                                "list, marked offline by the feed, or expired", ["reason"],
                                registry=r)
        self.withheld = Counter("threatroute_match_withheld",
                                "Sightings not sent to one recipient because of its feedback: "
                                "muted (false positive), not_ours, quiet (remediated or "
                                "wont_fix: no re-notification)", ["reason"], registry=r)
        self.rerouted = Counter("threatroute_match_rerouted",
                                "Alerts sent to the next owner after a not_ours", registry=r)
        self.escalated = Counter("threatroute_match_escalated",
                                 "Escalation alerts sent, to the upstream or the CERT",
                                 ["kind"], registry=r)
        self.corrections = Counter("threatroute_match_corrections",
                                   "Ownership corrections recorded for the operator", registry=r)
        self.feed_trust = Gauge("threatroute_feed_trust_factor",
                                "Factor a feed's accuracy is routed with, learned from feedback",
                                ["feed"], registry=r)
        # bounded state (threatroute/expiry.py): flat once the windows turn over
        self.table_rows = Gauge("threatroute_table_rows",
                                "Rows a stateful stage holds in memory, per table (its "
                                "owned partitions)", ["stage", "table"], registry=r)
        for reason in SCREENED:
            self.screened.labels(reason)
        for reason in WITHHELD:
            self.withheld.labels(reason)
        for kind in ESCALATED:
            self.escalated.labels(kind)
        self._stages: dict[tuple[str, int], StageMetrics] = {}

    def stage(self, name: str, worker: int = 0) -> StageMetrics:
        """The metrics of stage `name` as run by `worker` (its number in this process)."""
        if (name, worker) not in self._stages:
            self._stages[(name, worker)] = StageMetrics(self, name, worker)
        return self._stages[(name, worker)]

    def feedback_rules(self, counts: Mapping[str, int], trust: Mapping[str, float]) -> None:
        """What the feedback rules did in one committed batch (`counts`: event -> number, as
        the match stage counts them) and every feed's current trust factor."""
        for reason in SCREENED:
            if counts.get(reason):
                self.screened.labels(reason).inc(counts[reason])
        for reason in WITHHELD:
            if counts.get(reason):
                self.withheld.labels(reason).inc(counts[reason])
        for kind in ESCALATED:
            if counts.get(f"escalated_{kind}"):
                self.escalated.labels(kind).inc(counts[f"escalated_{kind}"])
        if counts.get("rerouted"):
            self.rerouted.inc(counts["rerouted"])
        if counts.get("corrections"):
            self.corrections.inc(counts["corrections"])
        for feed, factor in trust.items():
            self.feed_trust.labels(feed).set(factor)

    def table_sizes(self, stage: str, sizes: Mapping[str, int]) -> None:
        """The rows a stage holds now, per table."""
        for table, rows in sizes.items():
            self.table_rows.labels(stage, table).set(rows)

    def add_outcomes(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self.registry.register(OutcomesCollector(snapshot))

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=address, registry=self.registry)
            log.info("metrics on http://%s:%d/metrics", address, port)


class OutcomesCollector(Collector):
    """Outcome gauges and histograms computed from the current tables at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self._snapshot = snapshot
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self._snapshot()
        if snap is None:
            return
        yield _gauge("threatroute_alerts_sent", "Distinct alerts in the ledger",
                     ["recipient", "classification"], snap.sent)
        yield _gauge("threatroute_alerts_open", "Alerts without feedback",
                     ["recipient", "classification"], snap.open)
        yield _gauge("threatroute_alerts_by_status", "Alerts by current status",
                     ["recipient", "classification", "status"], snap.by_status)
        for name, doc, data in (
                ("threatroute_time_to_acknowledge_seconds", "Alert sent to first feedback",
                 snap.time_to_acknowledge),
                ("threatroute_time_to_remediate_seconds", "Alert sent to remediated",
                 snap.time_to_remediate)):
            family = HistogramMetricFamily(name, doc, labels=["recipient"])
            for recipient, hist in sorted(data.items()):
                buckets = [(_le(b), c) for b, c in zip(hist.buckets, hist.counts, strict=True)]
                family.add_metric([recipient], [*buckets, ("+Inf", hist.count)], hist.sum)
            yield family
        # ratios are not exported per worker (a worker sees only its partitions, and ratios
        # don't sum): deploy/prometheus/rules.yml records them from the summed counts
        yield _gauge("threatroute_feed_alerts", "Alerts per feed", ["feed"],
                     {(k,): v for k, v in snap.feed_alerts.items()})
        yield _gauge("threatroute_feed_answered", "Alerts with any feedback, per feed", ["feed"],
                     {(k,): v for k, v in snap.feed_answered.items()})
        yield _gauge("threatroute_feed_false_positives", "false_positive feedback per feed",
                     ["feed"], {(k,): v for k, v in snap.feed_false_positives.items()})
        yield _gauge("threatroute_not_ours", "not_ours feedback per ownership rule",
                     ["recipient", "rule"], snap.not_ours)
        yield _gauge("threatroute_active_indicators", "Distinct indicators active now",
                     ["recipient"], {(k,): v for k, v in snap.active_now.items()})
        yield _gauge("threatroute_active_indicators_baseline",
                     "Distinct indicators active in the baseline window", ["recipient"],
                     {(k,): v for k, v in snap.active_baseline.items()})


def _le(bound: float) -> str:
    return repr(float(bound))


def _gauge(name: str, doc: str, labels: list[str], values: dict) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key if isinstance(key, tuple) else (key,)), value)
    return family
