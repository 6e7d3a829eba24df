"""`threatroute explain` without Kafka: the demo data, the example registry, stdin lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from threatroute.enrichers.asn import AsnDatabase
from threatroute.enrichers.databuild import build_demo_data
from threatroute.enrichers.geo import GeoDatabase
from threatroute.registry import load_registry
from threatroute.streams.commands.explain import Explainer, explain_lines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def explainer(tmp_path_factory):
    data = build_demo_data(tmp_path_factory.mktemp("data"))
    registry = load_registry((ROOT / "deploy" / "recipients.example.yaml").read_text())
    return Explainer(asn=AsnDatabase(data.ipasn, data.asnames), geo=GeoDatabase(data.mmdb),
                     recipients=registry)


def run(explainer, lines, as_json):
    out = io.StringIO()
    invalid = explain_lines(explainer, lines, out, as_json)
    return invalid, out.getvalue()


def test_json_gives_enriched_record_owner_and_every_recipient_with_reasons(explainer):
    line = json.dumps({"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.15"},
                       "tlp": "GREEN", "feed": {"accuracy": 90}})
    invalid, out = run(explainer, [line], as_json=True)
    result = json.loads(out)
    assert invalid == 0
    assert result["source"]["asn"] == 64500 and result["source"]["geolocation"]["cc"] == "GB"
    assert result["extra"]["owner"] == {"id": "examplehost", "name": "Example Hosting Ltd",
                                        "rule": "prefix 192.0.2.0/24"}
    assert result["recipients"] == [
        {"id": "examplehost", "reasons": ["owner (prefix 192.0.2.0/24)"]},
        {"id": "cert-gb", "reasons": ["subscribed country GB"]},
        {"id": "upstream-isp", "reasons": ["subscribed asn 64500"]},
    ]


def test_readable_output_names_blocked_recipients_and_why(explainer):
    line = json.dumps({"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.15"},
                       "tlp": "AMBER+STRICT"})
    _, out = run(explainer, [line], as_json=False)
    assert "owner     examplehost (Example Hosting Ltd) by prefix 192.0.2.0/24" in out
    assert "reaches   examplehost: owner (prefix 192.0.2.0/24)" in out
    assert "blocked   cert-gb" in out and "goes to the owner only" in out


def test_invalid_lines_are_reported_and_counted_not_fatal(explainer):
    lines = ["{broken", json.dumps({"classification": {"type": "phishing"},
                                    "source": {"ip": "999.0.0.1"}}), ""]
    invalid, out = run(explainer, lines, as_json=True)
    results = [json.loads(x) for x in out.splitlines()]
    assert invalid == 2
    assert results[0]["line"] == 1 and "broken JSON" in results[0]["error"]
    assert results[1]["line"] == 2 and results[1]["error"].startswith("source.ip:")


def test_without_data_files_stages_are_skipped_and_routing_still_explained(explainer):
    bare = Explainer(recipients=explainer.recipients)
    line = json.dumps({"classification": {"type": "phishing"}, "tlp": "CLEAR",
                       "source": {"url": "http://shop.examplehost.example/x"}})
    _, out = run(bare, [line], as_json=False)
    assert "asn       skipped" in out and "geo       skipped" in out
    assert "by domain examplehost.example" in out


def test_screening_shows_suppression_and_offline_and_nobody_is_reached(explainer, tmp_path):
    from datetime import UTC, datetime

    from threatroute.matchers.rules import RoutingRules

    (tmp_path / "s.yaml").write_text("suppressions:\n  - addresses: [192.0.2.99]\n"
                                     "    reason: our sinkhole\n"
                                     "    expires: 2030-01-01T00:00:00Z\n")
    screening = Explainer(recipients=explainer.recipients,
                          rules=RoutingRules(suppressions=tmp_path / "s.yaml"),
                          clock=lambda: datetime(2026, 6, 1, tzinfo=UTC))
    lines = [json.dumps({"classification": {"type": "infected-system"},
                         "source": {"ip": "192.0.2.99"}}),
             json.dumps({"classification": {"type": "c2-server"}, "status": "offline",
                         "source": {"ip": "192.0.2.15"}})]
    _, out = run(screening, lines, as_json=False)
    assert "screened  suppressed: suppressed by the operator's list (192.0.2.99: our " \
           "sinkhole; until 2030-01-01T00:00:00+00:00)" in out
    assert "screened  offline: the feed marks it offline" in out
    assert out.count("reaches   nobody: screened out before matching") == 2
    _, out = run(screening, lines, as_json=True)
    assert [json.loads(x)["screening"]["dropped"] for x in out.splitlines()] == \
        ["suppressed", "offline"]
    assert all(json.loads(x)["recipients"] == [] for x in out.splitlines())


def test_learned_feed_trust_lowers_the_confidence_below_min_confidence(explainer):
    from threatroute.matchers.trust import FeedTrust

    # 8 false positives of 10 answered: factor 1 - 8 / (10 + 5) = 0.4667; 90 x that = 42
    trust = FeedTrust.from_rows([{"feed": "noisy", "partition": 0, "answered": 6,
                                  "false_positive": 5, "not_ours": 0},
                                 {"feed": "noisy", "partition": 3, "answered": 4,
                                  "false_positive": 3, "not_ours": 0}])
    learned = Explainer(recipients=explainer.recipients, trust=trust)
    line = json.dumps({"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.15"},
                       "tlp": "GREEN", "feed": {"name": "noisy", "accuracy": 90}})
    _, out = run(learned, [line], as_json=False)
    assert "screen    passed; confidence 42 (feed noisy trust x0.47 (8 false positive, " \
           "0 not ours of 10 answered))" in out
    assert "blocked   examplehost" in out and "accuracy 42 is below its min_confidence" in out
    _, out = run(learned, [line], as_json=True)
    result = json.loads(out)
    assert result["feed"]["accuracy"] == 42 and result["extra"]["trust"]["feed_accuracy"] == 90
    assert result["recipients"] == [r for r in result["recipients"] if r["id"] != "examplehost"]
    _, plain = run(explainer, [line], as_json=False)
    assert "screen    passed; confidence 90 (the feed's own accuracy)" in plain
