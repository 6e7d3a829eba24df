"""A live scrape of a worker's metrics passes Prometheus's own linter (`promtool check metrics`,
Debian's prometheus package, deploy/system-packages.txt) and has no `*_created` series."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime

import pytest

from tests.ports import free_port
from threatroute.matchers.dedup import Action, AlertState
from threatroute.matchers.formats import alert_record
from threatroute.outcomes import alert_facts, summarise
from threatroute.streams.runtime.metrics import Metrics

PROMTOOL = shutil.which("promtool")


def scrape(metrics: Metrics) -> str:
    port = free_port()
    metrics.serve(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def busy_worker() -> Metrics:
    """Every metric family with series: stage counters, histograms, lag, outcomes."""
    metrics = Metrics()
    for name in ("asn", "match"):
        metrics.stage(name).batch(100, 98, 2, 0.05, ["2026-01-01T00:00:00+00:00"] * 10)
    metrics.lag.labels("asn", "indicators.raw", "0").set(5)
    metrics.feedback_records.labels("accepted").inc(3)
    state = AlertState("a1", "alpha", "k1", "2026-01-01T00:00:00+00:00",
                       "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", 1)
    record = {"classification": {"type": "phishing", "taxonomy": "fraud"},
              "source": {"url": "http://x.example/"}, "feed": {"name": "urlhaus"},
              "extra": {"owner": {"id": "alpha", "name": "A", "rule": "domain x.example"}}}
    facts = [alert_facts(alert_record(state, Action.NEW, record, ["owner"],
                                      "2026-01-01T00:00:00+00:00"))]
    snapshot = summarise(facts, {}, datetime(2026, 1, 2, tzinfo=UTC))
    metrics.add_outcomes(lambda: snapshot)
    return metrics


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make deps)")
def test_promtool_finds_nothing_to_say_about_a_live_scrape():
    text = scrape(busy_worker())
    assert "threatroute_stage_records_in_total" in text and "threatroute_alerts_sent" in text
    assert "_created" not in text
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_a_stage_of_several_workers_shows_its_least_recent_progress():
    metrics = Metrics()
    busy, stalled = metrics.stage("publish", 0), metrics.stage("publish", 1)
    assert metrics.stage("publish", 1) is stalled
    gauge = metrics.last_progress.labels("publish")
    stalled_at = metrics.progress["publish"][1]
    busy.batch(10, 10, 0, 0.01, [])
    busy.idle()
    assert gauge._value.get() == stalled_at  # the busy worker does not hide the other
    stalled.idle()
    assert gauge._value.get() > stalled_at
    # workers of one stage count into the stage's series together
    assert metrics.records_in.labels("publish")._value.get() == 10
