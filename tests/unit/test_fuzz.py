"""Hostile input, in-process: generated reports through every feed parser, generated messages
through the stages' record decoder, and everything accepted through the stages' transforms.

Nothing may raise; every item of a report is accounted for exactly (accepted, refused with its
bytes and a reason, or skipped); every accepted record holds the record contract and still
holds it after each enrichment stage; every refused item's dead letter fits in one message;
no traceback is logged. The figures are printed at the end of the run (tests/conftest.py).
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from confluent_kafka import Message
from hypothesis import example, given
from hypothesis import strategies as st

from tests import hostile
from tests.hostile import (
    ISSUE_LINES,
    ISSUE_STAGE_RECORDS,
    Report,
    check_outcome,
    fuzz_settings,
    stage_messages,
    stix_over_size,
)
from threatroute.contract import MAX_RECORD_BYTES, check_record
from threatroute.deadletter import dead_letter
from threatroute.enrichers.asn import AsnDatabase, enrich_asn
from threatroute.enrichers.databuild import build_demo_data
from threatroute.enrichers.geo import GeoDatabase, enrich_geo
from threatroute.enrichers.hoster import enrich_owner
from threatroute.errors import InvalidRecord
from threatroute.feeds import FORMATS, get_format
from threatroute.feeds.base import Accepted, Context, Rejected, parse_report
from threatroute.matchers.dedup import DedupPolicy, decide
from threatroute.matchers.formats import alert_record, render
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.ownership import OwnershipIndex
from threatroute.outcomes import AlertFacts, apply_feedback
from threatroute.registry import load_registry
from threatroute.streams.kafka.clients import encode
from threatroute.streams.runtime.loop import decode_batch

REPORTS = hostile.reports(size=60)
# examples per format: about 30 items each, so ~4,500 items per format, ~60,000 in all
EXAMPLES_PER_FORMAT = 150
MIN_ITEMS_PER_FORMAT = 3_000
DECODER_EXAMPLES, MIN_MESSAGES = 1_000, 30_000

REGISTRY = """
recipients:
  - id: examplehost
    name: Example Hosting
    owns: {prefixes: [192.0.2.0/24, "2001:db8::/32"], asns: [64500], domains: [example.com]}
    tlp_clearance: amber
  - id: cert-gb
    name: CERT GB
    subscribe: {countries: [GB, DE], asns: [64501], prefixes: [198.51.100.0/24],
                domains: [bad.example]}
    format: stix
  - id: csvco
    name: CSV Co
    owns: {domains: [xn--caf-dma.example]}
    subscribe: {asns: [65536]}
    format: csv
    min_confidence: 50
"""


class Pipeline:
    """The stages' pure transforms in order, on the demo databases and a small registry."""

    def __init__(self, data_dir: Any) -> None:
        data = build_demo_data(data_dir)
        self.asn = AsnDatabase(data.ipasn, data.asnames)
        self.geo = GeoDatabase(data.mmdb)
        recipients = load_registry(REGISTRY)
        self.ownership = OwnershipIndex.build(recipients)
        self.index = MatchIndex.build(recipients)
        self.formats = {r.id: r.format for r in recipients}
        self.policy = DedupPolicy(timedelta(days=7), timedelta(days=1))
        self.now = datetime(2024, 1, 2, tzinfo=UTC)

    def run(self, record: dict[str, Any]) -> int:
        """Enrich, check the contract after each stage (the next stage decodes it), route and
        render; returns the number of alerts."""
        for transform in (lambda r: enrich_asn(r, self.asn), lambda r: enrich_geo(r, self.geo),
                          lambda r: enrich_owner(r, self.ownership)):
            record = transform(record)
            value = encode(record)
            assert len(value) <= MAX_RECORD_BYTES
            assert check_record(orjson.loads(value), len(value)) is None, (
                check_record(record), record)
        alerts = 0
        key = "0" * 32
        for match in self.index.match(record):
            action, state = decide(None, match.recipient_id, key, self.now, self.policy)
            alert = alert_record(state, action, record, match.reasons, self.now.isoformat())
            assert render(alert, self.formats[match.recipient_id])
            alerts += 1
        return alerts


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return Pipeline(tmp_path_factory.mktemp("fuzz-data"))


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING)
    yield
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def parse(fmt: str, report: Report) -> list[Any]:
    context = Context(filename=f"fuzz.{fmt}", options=dict(report.options))
    return list(parse_report(get_format(fmt), io.BytesIO(report.data), context))


def account(fmt: str, report: Report, outcomes: list[Any], pipeline: Pipeline,
            counts: Counter[str]) -> None:
    """Every item accounted for exactly; every outcome checked; accepted records run on."""
    assert {o.number for o in outcomes} == report.numbers, (fmt, report.data[:300])
    per_item: dict[int, str] = {}
    for outcome in outcomes:
        check_outcome(outcome, encode, dead_letter)
        kind = type(outcome).__name__
        # an item yielding several events counts once: refused if any event was
        per_item[outcome.number] = "Rejected" if "Rejected" in (kind, per_item.get(
            outcome.number)) else kind
        if isinstance(outcome, Accepted):
            counts["alerts"] += pipeline.run(outcome.record)
        if isinstance(outcome, Rejected) and report.broken:
            assert outcome.raw == report.data
    items = Counter(per_item.values())
    assert items["Accepted"] + items["Rejected"] + items["Skipped"] == len(report.numbers)
    counts["items"] += len(report.numbers)
    counts["accepted"] += items["Accepted"]
    counts["dead-lettered"] += items["Rejected"]
    counts["skipped"] += items["Skipped"]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_feed_format_survives_hostile_reports(fmt, pipeline, no_tracebacks):
    counts: Counter[str] = Counter()

    @fuzz_settings(EXAMPLES_PER_FORMAT)
    @given(report=REPORTS[fmt])
    def run(report: Report) -> None:
        account(fmt, report, parse(fmt, report), pipeline, counts)

    run()
    hostile.COUNTS[f"feed parser {fmt}: items"] += counts["items"]
    hostile.COUNTS["feed parsers: items"] += counts["items"]
    for kind in ("accepted", "dead-lettered", "skipped", "alerts"):
        hostile.COUNTS[f"feed parsers: {kind}"] += counts[kind]
    print(f"{fmt}: {dict(counts)}")
    assert counts["items"] >= MIN_ITEMS_PER_FORMAT * hostile.SCALE
    assert counts["accepted"] and counts["dead-lettered"]  # both paths were reached


@pytest.mark.parametrize("fmt", ["jsonl", "intelmq"])
def test_issue_lines_are_dead_lettered_and_the_good_ones_around_them_accepted(fmt, pipeline):
    good = orjson.dumps({"classification.type": "scanner", "source.ip": "192.0.2.1"})
    lines = [good, *ISSUE_LINES.values(), good]
    report = Report(b"\n".join(lines) + b"\n", len(lines))
    outcomes = parse(fmt, report)
    counts: Counter[str] = Counter()
    account(fmt, report, outcomes, pipeline, counts)
    refused = {o.number: o for o in outcomes if isinstance(o, Rejected)}
    assert sorted(refused) == list(range(2, len(lines)))  # every issue line, and only those
    for number, name in enumerate(ISSUE_LINES, 2):
        assert refused[number].raw == lines[number - 1], name
    assert "scoped" in refused[list(ISSUE_LINES).index("scoped IPv6") + 2].reason


def test_stix_documents_over_the_message_size_are_dead_lettered_within_it(pipeline):
    report = Report(stix_over_size(2), 2)
    outcomes = parse("stix", report)
    account("stix", report, outcomes, pipeline, Counter())
    assert [type(o) for o in outcomes] == [Rejected, Rejected]
    letters = [encode(dead_letter(o.raw, o.reason, stage="ingest")) for o in outcomes]
    assert all(len(raw) > 1_000_000 for raw in (o.raw for o in outcomes))
    assert all(len(letter) < hostile.BROKER_MESSAGE_LIMIT for letter in letters)


def messages(keyed: list[tuple[bytes | None, bytes]]) -> list[Message]:
    return [Message(topic="indicators.raw", partition=0, offset=i, key=k, value=v)
            for i, (k, v) in enumerate(keyed)]


ISSUE_MESSAGES = [(b"0" * 32, value) for value in ISSUE_STAGE_RECORDS.values()]


def test_stage_decoding_refuses_what_breaks_the_contract_and_the_stages_take_the_rest(
        pipeline, no_tracebacks):
    counts: Counter[str] = Counter()

    @fuzz_settings(DECODER_EXAMPLES)
    @given(values=stage_messages(60))
    @example(values=ISSUE_MESSAGES)
    def run(values: list[tuple[bytes | None, bytes]]) -> None:
        inputs, refused = decode_batch(messages(values))
        assert len(inputs) + len(refused) == len(values)
        assert {r.raw for r in refused} <= {v for _, v in values}
        assert all(r.reason for r in refused)
        for item in inputs:
            counts["alerts"] += pipeline.run(item.record)
        counts["messages"] += len(values)
        counts["decoded"] += len(inputs)
        counts["dead-lettered"] += len(refused)

    run()
    for kind, count in counts.items():
        hostile.COUNTS[f"stage decoder: {kind}"] += count
    print(f"stage decoder: {dict(counts)}")
    assert counts["messages"] >= MIN_MESSAGES * hostile.SCALE
    assert counts["decoded"] and counts["dead-lettered"]


def test_issue_stage_records_are_refused_at_decoding():
    inputs, refused = decode_batch(messages(ISSUE_MESSAGES))
    assert not inputs
    assert [r.raw for r in refused] == list(ISSUE_STAGE_RECORDS.values())
    good = json.dumps(hostile.BASE_RECORD).encode()
    inputs, refused = decode_batch(messages([(b"\xff\xfe", good), (b"0" * 32, good)]))
    assert len(inputs) == 1 and "key" in refused[0].reason


FACTS = AlertFacts("a" * 22, "examplehost", "0" * 32, "phishing", "fuzz", "prefix x",
                   "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00+00:00")
FEEDBACK = {"alert_id": "a" * 22, "recipient": "examplehost", "status": "remediated",
            "time": "2024-01-01T01:00:00+00:00", "note": "done"}


def test_feedback_decoding_refuses_hostile_reports_with_a_reason():
    counts: Counter[str] = Counter()

    @fuzz_settings(3_000)
    @given(changes=st.dictionaries(st.sampled_from([*FEEDBACK, "extra"]) | hostile.text,
                                   hostile.json_values | st.sampled_from(
                                       ["acknowledged", "remediated", "examplehost", "a" * 22]),
                                   max_size=3),
           whole=st.none() | hostile.json_values)
    def run(changes: dict[str, Any], whole: Any) -> None:
        feedback = {**FEEDBACK, **changes} if whole is None else whole
        raw = hostile.dumps(feedback, True)
        try:
            apply_feedback(orjson.loads(raw), FACTS, None, datetime(2024, 1, 2, tzinfo=UTC))
            counts["accepted"] += 1
        except (InvalidRecord, ValueError):  # ValueError: orjson refused the bytes
            counts["dead-lettered"] += 1

    run()
    hostile.COUNTS["feedback decoder: reports"] += sum(counts.values())
    assert counts["accepted"] and counts["dead-lettered"]

