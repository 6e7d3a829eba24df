"""The demo's story on the real broker: feedback changes routing, with exact counts.

The match and feedback stages run in this process, each in the one consume loop, on a fake
clock the test moves; Prometheus scrapes their metrics. Round one of the demo world's
indicators goes out; the simulated recipients answer (`demoworld.answer`); the pipeline
reroutes hoster-12's not_ours to hoster-11, escalates silent hoster-23's C2 to the upstream
and then the CERT as the clock passes the deadline, and learns that the noisy phishing feed
is noisy. Round two (the next sightings) then sends only what the rules allow.

Every expected figure is derived by hand from the world (enrichers/demoworld.py), in the
comments beside it. Recipient ids and feed names carry a per-run tag, so a broker that
remembers an earlier run (dedup states, verdicts, feed trust) does not change the figures.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import threatroute
from tests.integration.kafka_helpers import end_offsets, read_since, wait_drained
from tests.integration.prometheus_helpers import start_prometheus
from tests.ports import free_port
from threatroute import topics
from threatroute.enrichers.demoworld import (
    COME_BACK,
    HOSTERS,
    NOISY_FEED,
    NOISY_ON_07,
    PHISHED,
    SINKHOLED,
    SOURCE_PORTS,
    answer,
    build_world,
    hoster_asn,
    hoster_cc,
    remediates_sinkhole,
)
from threatroute.matchers.escalation import EscalationPolicy
from threatroute.matchers.rules import RoutingRules
from threatroute.record import indicator_key, normalise_indicator
from threatroute.streams.config import load_config
from threatroute.streams.runtime.metrics import Metrics
from threatroute.streams.runtime.registry import import_registry, read_registry
from threatroute.streams.runtime.supervisor import run_one
from threatroute.streams.stages.feedback import FeedbackStage
from threatroute.streams.stages.match import MatchStage
from threatroute.streams.stages.publish import PublishStage

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)
WONT_FIX = [i for i in SINKHOLED if not remediates_sinkhole(i)]  # 3, 6, ..., 30


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def enriched(record: dict) -> dict:
    """What the enrichment chain adds that matters here: ASN and country of 198.18.<i>.x."""
    rec = normalise_indicator(record)
    ip = rec["source"].get("ip")
    if ip and ip.startswith("198.18."):
        i = int(ip.split(".")[2])
        rec["source"]["asn"] = hoster_asn(i)
        rec["source"]["geolocation"] = {"cc": hoster_cc(i)}
    return rec


def produce(bootstrap: str, topic: str, items: list[tuple[str, dict]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in items:
        producer.produce(topic, json.dumps(value).encode(), key.encode())
    assert producer.flush(30) == 0


def wait_for(predicate, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout}s")


class Story:
    """The world, the stages on a fake clock, and reading what recipients got."""

    def __init__(self, bootstrap: str, tmp_path) -> None:
        self.bootstrap = bootstrap
        self.clock = FakeClock(T0)
        self.world = build_world(T0, f"s{uuid.uuid4().hex[:6]}-")
        (tmp_path / "suppressions.yaml").write_text(self.world.suppressions_yaml())
        rules = RoutingRules(escalation=EscalationPolicy({"c2-server": timedelta(hours=1)}),
                             escalation_tick=timedelta(seconds=0.2),
                             suppressions=tmp_path / "suppressions.yaml")
        self.config = replace(load_config(bootstrap=bootstrap), rules=rules,
                              renotify_hours=1.0)
        import_registry(self.config, self.world.registry_yaml())
        self.metrics = Metrics()
        self.port = free_port()
        self.metrics.serve(self.port, "127.0.0.1")
        self.stop = threading.Event()
        self.threads = self.start_stages()
        for thread in self.threads:
            thread.start()
        # what earlier tests left on indicators.enriched goes through first; the story's
        # figures count from here
        wait_drained(bootstrap, groups=("threatroute-match", "threatroute-publish"))
        self.base = Counter(self.match.counts)

    def start_stages(self) -> list[threading.Thread]:
        """The match, publish (two loops) and feedback stages on the fake clock, each in the
        one consume loop in a thread of its own."""
        self.match = MatchStage(self.config, self.metrics, clock=self.clock, batch_size=500)
        self.feedback = FeedbackStage(self.config, self.metrics, clock=self.clock)
        publish = [PublishStage(self.config, worker=n) for n in range(2)]
        return [threading.Thread(target=run_one, args=(self.config, s, self.stop, self.metrics),
                                 daemon=True) for s in (self.match, *publish, self.feedback)]

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        # the run's 150 per-recipient topics go; the next run has its own
        names = [topics.alerts_topic(r) for r in self.world.ids] + \
            [topics.feedback_topic(r) for r in self.world.ids] + \
            [topics.contributions_topic(r) for r in self.world.ids]
        for future in AdminClient({"bootstrap.servers": self.bootstrap}).delete_topics(
                names, operation_timeout=60).values():
            with contextlib.suppress(KafkaException):  # already gone: fine
                future.result()

    def h(self, i: int) -> str:
        return self.world.hoster(i)

    def offsets(self) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for rid in self.world.ids:
            for attempt in range(60):  # topics the import just created may still elect leaders
                try:
                    out[rid] = end_offsets(self.bootstrap, topics.alerts_topic(rid))
                    break
                except KafkaException:
                    if attempt == 59:
                        raise
                    time.sleep(0.5)
        return out

    def alerts_since(self, since: dict[str, dict[int, int]]) -> dict[str, list[dict]]:
        return {rid: [v for _, v in read_since(self.bootstrap, topics.alerts_topic(rid),
                                               since[rid], idle=0.5)]
                for rid in self.world.ids}

    def counts(self) -> Counter[str]:
        """The match stage's figures since the story began."""
        return Counter(self.match.counts) - self.base

    def accepted(self) -> float:
        return self.metrics.registry.get_sample_value(
            "threatroute_feedback_records_total", {"outcome": "accepted"}) or 0.0

    def send_round(self, records: list[dict]) -> None:
        before = self.counts()["routed"]
        rows = [enriched(r) for r in records]
        produce(self.bootstrap, topics.ENRICHED, [(indicator_key(r), r) for r in rows])
        wait_for(lambda: self.counts()["routed"] - before == len(rows), "round routed")
        # routed is counted as match processes; the alerts reach the recipients' topics once
        # match has committed and publish has moved them (two hops)
        wait_drained(self.bootstrap, groups=("threatroute-match", "threatroute-publish"))

    def report(self, items: list[tuple[dict, str, str]]) -> None:
        """Post (alert, recipient, status) reports at the clock's time; wait until the feedback
        stage accepted them and the match stage applied them."""
        before, applied = self.accepted(), self.counts()["feedback"]
        produce(self.bootstrap, topics.FEEDBACK, [(a["alert_id"], {
            "alert_id": a["alert_id"], "recipient": rid, "status": status,
            "time": self.clock.now.isoformat()}) for a, rid, status in items])
        wait_for(lambda: self.accepted() - before == len(items), "reports accepted")
        wait_for(lambda: self.counts()["feedback"] - applied == len(items), "reports applied")


@pytest.fixture
def story(kafka_env, bootstrap, tmp_path):
    story = Story(bootstrap, tmp_path)
    try:
        yield story
    finally:
        story.close()


def sizes(alerts: dict[str, list[dict]]) -> dict[str, int]:
    return {rid: len(a) for rid, a in alerts.items() if a}


def test_feedback_acts_on_routing(story, kafka_env, tmp_path):
    world, h = story.world, story.h
    prometheus = start_prometheus(tmp_path / "prom", [f"127.0.0.1:{story.port}"], [])
    try:
        play(story, world, h, kafka_env)
        # -- the test's own counts, as derived; Prometheus scrapes the same -----------------
        counts = story.counts()
        derived = {"rerouted": 1, "escalated_upstream": 1, "escalated_cert": 1,
                   "corrections": 1, "suppressed": 1, "expired": 1,
                   "offline": 2 + (HOSTERS - 5),  # round one's two, round two's C2s
                   "muted": len(SOURCE_PORTS), "not_ours": 1,
                   "quiet": len(SOURCE_PORTS) * len(WONT_FIX)}
        assert {k: counts[k] for k in derived} == derived
        metric = {"rerouted": "sum(threatroute_match_rerouted_total)",
                  "escalated_upstream":
                      'sum(threatroute_match_escalated_total{kind="upstream"})',
                  "escalated_cert": 'sum(threatroute_match_escalated_total{kind="cert"})',
                  "corrections": "sum(threatroute_match_corrections_total)"}
        metric.update({k: f'sum(threatroute_match_screened_total{{reason="{k}"}})'
                       for k in ("suppressed", "expired", "offline")})
        metric.update({k: f'sum(threatroute_match_withheld_total{{reason="{k}"}})'
                       for k in ("muted", "not_ours", "quiet")})
        # the stage's own totals (leftovers of earlier tests included), as Prometheus sees them
        expected = {metric[k]: float(story.match.counts[k]) for k in derived}
        # the noisy feed: 15 answered alerts, 6 false positives: 1 - 6 / (15 + 5)
        expected[f'threatroute_feed_trust_factor{{feed="{world.feed(NOISY_FEED)}"}}'] = 0.7
        deadline = time.monotonic() + 60
        scraped: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            scraped = {}
            for expr in expected:
                result = prometheus.query(expr)
                scraped[expr] = float(result[0]["value"][1]) if result else None
            if scraped == pytest.approx(expected):
                break
            time.sleep(1)
        assert scraped == pytest.approx(expected)
    finally:
        prometheus.stop()


def play(story: Story, world, h, kafka_env) -> None:
    # -- round one: what the feeds say today --------------------------------------------------
    since = story.offsets()
    story.send_round(world.round_one)
    expected: Counter[str] = Counter()
    for i in range(1, HOSTERS + 1):
        expected[h(i)] += 1  # its C2 (hoster-12's sits in its reseller block)
    for i in SINKHOLED:
        expected[h(i)] += 1  # one infected host on five source ports: one alert
    expected[h(7)] += NOISY_ON_07  # the noisy feed's URLs on hoster-07
    for i in PHISHED:
        expected[h(i)] += i != 7  # one URL on each other phished hoster
    expected[h(41)] += 1  # the scanner on 198.18.41.5 (198.18.40.5 is suppressed)
    first = story.alerts_since(since)
    assert sizes(first) == dict(expected) and sum(expected.values()) == 94
    assert first[world.upstream] == first[world.cert] == []  # routinely DDoS only
    bot = [a for a in first[h(1)] if a["indicator"]["classification"]["type"] ==
           "infected-system"]
    assert len(bot) == 1 and bot[0]["count"] == 1
    ledger = {v["alert_id"]: v for _, v in read_since(story.bootstrap, topics.LEDGER, None,
                                                      idle=1.0) if v}
    assert ledger[bot[0]["alert_id"]]["count"] == len(SOURCE_PORTS)  # 5 rows, 1 alert, count 5
    assert {k: story.counts()[k] for k in ("suppressed", "offline", "expired")} == \
        {"suppressed": 1, "offline": 2, "expired": 1}

    # -- the recipients answer ----------------------------------------------------------------
    since = story.offsets()
    story.clock.now = T0 + timedelta(minutes=2)
    answers = [(alert, rid, status) for rid, alerts in first.items() for alert in alerts
               for status in answer(world, rid, alert)]
    statuses = Counter(status for _, _, status in answers)
    # hoster-07: 6 URLs + its "bot"; hoster-12: its C2; hoster-23 answers nothing
    assert statuses["false_positive"] == NOISY_ON_07 + 1 and statuses["not_ours"] == 1
    assert not [a for a in answers if a[1] == h(23)]
    story.report(answers)
    rerouted = story.alerts_since(since)
    # not_ours: the next owner of 198.18.11.70 (hoster-11's /24 around hoster-12's /26) gets it
    assert sizes(rerouted) == {h(11): 1}
    moved = rerouted[h(11)][0]
    assert moved["notification"] == "reroute"
    assert moved["indicator"]["source"]["ip"] == "198.18.11.70"
    assert moved["indicator"]["extra"]["owner"]["rerouted_from"] == h(12)
    assert moved["reasons"][0] == (f"rerouted: {h(12)} reported it is not theirs; next owner by "
                                   "prefix 198.18.11.0/24")
    mine = [c for _, c in read_since(story.bootstrap, topics.CORRECTIONS, None, idle=1.0)
            if c and c["recipient"] == h(12)]
    assert [(c["locator"], c["next_owner"], c["state"]) for c in mine] == \
        [("198.18.11.70/32", h(11), "open")]
    # hoster-11 looks into what it was passed
    story.report([(moved, h(11), s) for s in answer(world, h(11), moved)])

    # -- nobody acts on hoster-23's C2: the clock passes the deadline, then twice it ----------
    since = story.offsets()
    story.clock.now = T0 + timedelta(hours=1, minutes=1)
    wait_for(lambda: story.counts()["escalated"] >= 1, "first escalation")
    story.clock.now = T0 + timedelta(hours=2, minutes=1)
    wait_for(lambda: story.counts()["escalated"] >= 2, "second escalation")
    time.sleep(1)  # more ticks: nothing else is due
    escalated = story.alerts_since(since)
    assert sizes(escalated) == {world.upstream: 1, world.cert: 1}
    for rid, level, kind in ((world.upstream, 1, "upstream"), (world.cert, 2, "cert")):
        e = escalated[rid][0]
        assert e["notification"] == "escalation"
        assert e["escalation"]["level"] == level and e["escalation"]["kind"] == kind
        assert e["escalation"]["original_recipient"] == h(23)
        assert e["indicator"]["source"]["ip"] == "198.18.23.10"
    assert escalated[world.cert][0]["escalation"]["open_hours"] >= 2.0
    assert story.counts()["escalated"] == 2

    # -- round two: the next sightings ------------------------------------------------------
    story.clock.now = T0 + timedelta(hours=3)
    since = story.offsets()
    before = story.counts()
    second_round = world.round_two(story.clock.now)
    noisy = [enriched(r) for r in second_round if r["feed"]["name"] == world.feed(NOISY_FEED)]
    learned = story.match.acting.trust
    assert noisy and all(learned.confidence(r)[0] < 50 for r in noisy)  # hosters' min 50
    story.send_round(second_round)
    second = story.alerts_since(since)
    assert sizes(second) == {
        h(1): 1, h(2): 1,  # their C2s back after remediation: recurrences
        h(7): 1,  # its C2 (remediated) is back too; its muted "bot" and noisy URLs are not sent
        h(11): 1,  # the C2 it was passed, still active an hour later: re-notified
        h(23): 2,  # silent: its C2 and its bot re-notified
    }
    for i in (1, 2, 7):
        assert [a["notification"] for a in second[h(i)]] == ["recurrence"]
    assert [a["notification"] for a in second[h(11)]] == ["renotify"]
    assert sorted(a["notification"] for a in second[h(23)]) == ["renotify", "renotify"]
    assert sorted(f"hoster-{i:02d}" for i in (1, 2)) == sorted(COME_BACK)
    delta = {k: story.counts()[k] - before[k] for k in ("muted", "not_ours", "quiet",
                                                       "offline")}
    assert delta == {"muted": len(SOURCE_PORTS),  # hoster-07's "bot", five rows
                     "not_ours": 1,  # hoster-12 routed around for its old C2
                     "quiet": len(SOURCE_PORTS) * len(WONT_FIX),  # wont_fix: never again
                     "offline": HOSTERS - 5}  # every C2 but 01, 02, 07, 12, 23

    # -- the operator accepts hoster-12's correction: the registry now says so --------------
    result = threatroute("corrections", "accept", mine[0]["id"], env=kafka_env)
    assert b"198.18.11.70/32" in result.stdout
    registry = read_registry(story.config)
    assert registry[h(12)].disowns.prefixes == ("198.18.11.70/32",)
    listed = threatroute("corrections", "list", "--all", "--json", env=kafka_env)
    states = [json.loads(x) for x in listed.stdout.decode().splitlines()]
    assert [(c["id"], c["state"]) for c in states if c["recipient"] == h(12)] == \
        [(mine[0]["id"], "accepted")]
