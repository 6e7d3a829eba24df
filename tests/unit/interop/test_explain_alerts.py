"""Acceptance: every alert `threatroute explain --alerts` renders passes its ecosystem's own
validator. STIX bodies: stix2-validator (strict) and the stix2 library; IntelMQ bodies: IntelMQ
3.5's `Event`; JSON bodies: the alert schema. For the demo (deploy/demo with the example
registry) and for every real feed sample, routed to one recipient per format."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from interop_validators import intelmq_rejections, stix_errors

from threatroute.enrichers.asn import AsnDatabase
from threatroute.enrichers.databuild import build_demo_data
from threatroute.enrichers.geo import GeoDatabase
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Context, parse_report
from threatroute.matchers.formats import CSV_COLUMNS, FORMATS
from threatroute.matchers.intelmq import intelmq_event
from threatroute.registry import load_registry
from threatroute.streams.commands.explain import Explainer, explain_lines
from threatroute.streams.runtime.schemas import errors as schema_errors

ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("THREATROUTE_SHARED_DATA", ROOT.parent / "shared" / "data"))
FEEDS = SHARED / "feeds"
SAMPLES = [("feodo-json", "feodotracker/ipblocklist.json"), ("feodo-csv", "feodotracker/ipblocklist_2021.csv"),
           ("phishtank-json", "phishtank/online-valid.json"), ("urlhaus-csv", "urlhaus/urlhaus_tld_ch_2019.csv"),
           ("spamhaus-drop", "spamhaus/drop.txt"), ("spamhaus-asndrop", "spamhaus/asndrop.txt"),
           ("misp", "misp/circl_osint_sednit_existing_event.json"), ("misp", "misp/circl_osint_sunorcal_event.json"),
           ("misp", "misp/57c4445b-c548-4654-af0b-4be3950d210f.json"), ("misp", "misp/intelmq_misp_event.json"),
           ("stix", "stix/poisonivy.json"), ("stix", "stix/apt1.json"), ("stix", "stix/indicator-for-c2-ip-address.json"),
           ("stix", "stix/indicators-for-C2-with-COA.json"), ("threatfox-json", "threatfox/api_query_response.json"),
           ("openphish", "openphish/feed.txt"), ("cymru", "cymru/certname_20190327.txt"),
           ("cymru", "cymru/infected_20171031.txt")] + [
    ("shadowserver", f"shadowserver/{p.name}") for p in sorted((FEEDS / "shadowserver").glob("*.csv"))]


def check(line: dict) -> list[str]:
    """What the body's own validator says about it (empty: accepted)."""
    body = line["body"]
    if line["format"] == "stix":
        return stix_errors(json.loads(body))
    if line["format"] == "intelmq":
        return intelmq_rejections(json.loads(body))
    if line["format"] == "csv":
        (row,) = list(csv.reader(io.StringIO(body)))
        return [] if len(row) == len(CSV_COLUMNS) else [f"{len(row)} CSV columns"]
    return schema_errors("alert", json.loads(body))


def run(explainer: Explainer, lines: list[str]) -> tuple[list[dict], int]:
    out, err = io.StringIO(), io.StringIO()
    invalid = explain_lines(explainer, lines, out, as_json=False, as_alerts=True, errors=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], invalid


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("data"))


def test_demo_alerts_pass_their_validators(demo_data):
    registry = load_registry((ROOT / "deploy" / "recipients.example.yaml").read_text())
    explainer = Explainer(asn=AsnDatabase(demo_data.ipasn, demo_data.asnames),
                          geo=GeoDatabase(demo_data.mmdb), recipients=registry)
    lines = (ROOT / "deploy" / "demo" / "indicators.jsonl").read_text().splitlines()
    alerts, invalid = run(explainer, lines)
    assert invalid == 1  # the demo's last line, on purpose
    assert {a["format"] for a in alerts} == set(FORMATS)  # the demo exercises every format
    assert {a["recipient"]: a["format"] for a in alerts}["cert-gb"] == "intelmq"
    assert [(a["recipient"], check(a)) for a in alerts if check(a)] == []
    # the same recipients `explain --json` names, one alert each
    out = io.StringIO()
    explain_lines(explainer, lines, out, as_json=True)
    expected = sorted((n, r["id"]) for n, doc in enumerate(map(json.loads, out.getvalue().splitlines()), 1)
                      for r in doc.get("recipients", []))
    assert sorted((a["line"], a["recipient"]) for a in alerts) == expected


def catch_all_registry(records: list[dict]) -> list:
    """One recipient per format, each subscribed to every address, AS and domain seen."""
    asns = sorted({r["source"]["asn"] for r in records if "asn" in r["source"]})
    domains = sorted({r["source"]["fqdn"] for r in records if "fqdn" in r["source"]})
    return load_registry(yaml.safe_dump({"recipients": [
        {"id": f"all-{fmt}", "name": f"everything as {fmt}", "format": fmt,
         "tlp_clearance": "amber", "subscribe": {"prefixes": ["0.0.0.0/0", "::/0"],
                                                 "asns": asns, "domains": domains}}
        for fmt in FORMATS]}))


@pytest.mark.skipif(not FEEDS.is_dir(), reason=f"no feed samples at {FEEDS} (THREATROUTE_SHARED_DATA)")
def test_feed_sample_alerts_pass_their_validators():
    records = []
    for fmt, path in SAMPLES:
        with open(FEEDS / path, "rb") as stream:
            outcomes = parse_report(get_format(fmt), stream, Context(filename=Path(path).name))
            records += [o.record for o in outcomes if isinstance(o, Accepted)]
    routable = [r for r in records if r.get("tlp") not in ("RED", "AMBER+STRICT")]
    assert len(records) > 200 and len(routable) == len(records)
    explainer = Explainer(recipients=catch_all_registry(records))
    # entries the feed marks offline are screened out (never alerted); their alerts are still
    # checked here, as they would be while online
    offline = [i for i, r in enumerate(records) if r.get("status") == "offline"]
    assert offline and all(explainer.explain(json.dumps(records[i]))[3].dropped == "offline"
                           for i in offline)
    records = [{k: v for k, v in r.items() if k != "status"} if i in offline else r
               for i, r in enumerate(records)]
    alerts, invalid = run(explainer, [json.dumps(r) for r in records])
    assert invalid == 0
    # every record reaches every format's recipient: nothing is left out of the check
    assert len(alerts) == len(records) * len(FORMATS)
    failures = [(a["format"], a["line"], check(a)) for a in alerts if check(a)]
    assert failures == []
    # CLEAR travels as IntelMQ's WHITE; the JSON format keeps TLP 2.0
    clear = [a for a in alerts if records[a["line"] - 1].get("tlp") == "CLEAR"]
    assert clear
    for a in clear:
        if a["format"] == "intelmq":
            assert json.loads(a["body"])["tlp"] == "WHITE"
        if a["format"] == "json":
            assert json.loads(a["body"])["indicator"]["tlp"] == "CLEAR"


@pytest.mark.parametrize(("tlp", "intelmq", "kept"), [("CLEAR", "WHITE", "CLEAR"), ("GREEN", "GREEN", "GREEN"),
                                                      ("AMBER", "AMBER", "AMBER"),
                                                      ("AMBER+STRICT", "AMBER", "AMBER+STRICT")])
def test_intelmq_tlp_is_its_own_vocabulary_and_the_exact_level_travels_in_extra(tlp, intelmq, kept):
    record = {"classification": {"type": "c2-server", "taxonomy": "malicious-code"},
              "source": {"ip": "192.0.2.15", "port": 443, "geolocation": {"cc": "GB"}},
              "feed": {"name": "x", "accuracy": 90.0}, "tlp": tlp,
              "time": {"observation": "2026-11-22T10:00:00+00:00"},
              "extra": {"owner": {"id": "examplehost", "name": "E", "rule": "prefix 192.0.2.0/24"}}}
    alert = {"alert_id": "a1", "recipient": "examplehost", "indicator_key": "k", "notification": "new",
             "indicator": record, "reasons": ["owner"], "first_seen": "2026-11-22T10:00:00+00:00",
             "last_seen": "2026-11-22T10:00:00+00:00", "count": 1, "recurrence": False,
             "sent_at": "2026-11-22T10:00:00+00:00"}
    event = intelmq_event(alert)
    assert intelmq_rejections(event) == []
    assert event["tlp"] == intelmq and event["extra.tlp_2_0"] == kept
    assert event["source.ip"] == "192.0.2.15" and event["extra.owner"]["id"] == "examplehost"
    assert event["extra.alert_id"] == "a1"


def test_cli_alerts_lines_carry_recipient_format_and_body():
    result = subprocess.run([sys.executable, "-m", "threatroute.streams.commands.cli", "explain", "--alerts",
                             "--registry", str(ROOT / "deploy" / "recipients.example.yaml")],
                            input=(ROOT / "deploy" / "demo" / "indicators.jsonl").read_bytes(),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 1 and result.stderr.count(b"invalid") == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(set(line) == {"line", "recipient", "format", "body"} for line in lines)
