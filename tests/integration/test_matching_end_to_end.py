"""Matching and delivery end to end on the real broker: 24 recipients with overlapping
ownership and subscriptions, 2,000+ indicators (real samples + generated), every alert in
exactly the topics an independent reference computes, TLP rules, repeats aggregated, and
Debian's kcat reading an alert topic."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from intelmq.lib.message import Event
from stix2validator import ValidationOptions, validate_instance

from tests.integration import routing_reference
from tests.integration.conftest import ROOT, threatroute
from tests.integration.kafka_helpers import end_offsets, read_since, wait_drained
from threatroute.matchers.formats import CSV_COLUMNS
from threatroute.matchers.stix import EXTENSION_ID
from threatroute.record import indicator_key, normalise_indicator
from threatroute.streams.runtime.schemas import errors

SHARED = Path(os.environ.get("THREATROUTE_SHARED_DATA",
                             Path(__file__).resolve().parents[3] / "shared" / "data"))
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not at {SHARED}")

# networks of the MaxMind test City database that the 2014 pyasn table also routes:
# (prefix to draw addresses from, country) -- real ASNs and countries for generated indicators
NETWORKS = [("81.2.69.128/26", "GB"), ("216.160.83.56/29", "US"), ("89.160.20.112/28", "SE"),
            ("175.16.199.0/24", "CN"), ("2001:218::/32", "JP"), ("2a02:cf40::/29", "NO")]
TYPES = ["phishing", "c2-server", "infected-system", "scanner", "malware-distribution", "ddos"]
TLPS = ["CLEAR", "GREEN", "GREEN", "AMBER", "AMBER+STRICT", "RED"]


def registry(run: str) -> list[dict]:
    """24 recipients: nested prefixes, ASN owners, domain owners, country/ASN/prefix/domain
    subscribers, classification filters, confidence floors and every TLP clearance."""
    r = []
    r.append({"id": f"gb-host-{run}", "name": "GB host", "owns": {"prefixes": ["81.2.69.0/24"]},
              "tlp_clearance": "amber"})
    r.append({"id": f"gb-nested-{run}", "name": "GB nested", "owns": {"prefixes": ["81.2.69.160/27"]},
              "tlp_clearance": "clear"})
    r.append({"id": f"us-host-{run}", "name": "US host", "owns": {"prefixes": ["216.160.83.0/24"]},
              "classifications": ["phishing", "c2-server"]})
    r.append({"id": f"se-asn-{run}", "name": "SE by ASN", "owns": {"asns": [29518]},
              "min_confidence": 50, "tlp_clearance": "amber+strict"})
    r.append({"id": f"cn-host-{run}", "name": "CN host", "owns": {"prefixes": ["175.16.0.0/16"]},
              "format": "csv"})
    r.append({"id": f"cn-nested-{run}", "name": "CN nested", "owns": {"prefixes": ["175.16.199.0/25"]},
              "format": "stix", "tlp_clearance": "amber"})
    r.append({"id": f"jp-v6-{run}", "name": "JP v6", "owns": {"prefixes": ["2001:218::/32"]},
              "format": "intelmq"})
    r.append({"id": f"no-v6-{run}", "name": "NO v6", "owns": {"prefixes": ["2a02:cf40::/29"]},
              "tlp_clearance": "amber"})
    r.append({"id": f"no-v6-sub-{run}", "name": "NO v6 customer",
              "owns": {"prefixes": ["2a02:cf40:1::/48"]}})
    for i in range(5):
        r.append({"id": f"domains-{i}-{run}", "name": f"Domain owner {i}",
                  "owns": {"domains": [f"d{i}-{run}.example"]},
                  "tlp_clearance": ["clear", "green", "amber", "amber+strict", "red"][i]})
    r.append({"id": f"sub-domain-{run}", "name": "Sub-domain owner",
              "owns": {"domains": [f"shop.d0-{run}.example"]}})
    for cc in ("GB", "US", "SE", "CN", "JP", "NO"):
        r.append({"id": f"cert-{cc.lower()}-{run}", "name": f"CERT {cc}",
                  "subscribe": {"countries": [cc]}, "tlp_clearance": "amber",
                  "min_confidence": 40})
    r.append({"id": f"transit-{run}", "name": "Transit ISP",
              "subscribe": {"asns": [29518, 4837]},
              "classifications": ["ddos", "scanner", "infected-system"]})
    r.append({"id": f"watch-{run}", "name": "Prefix watcher",
              "subscribe": {"prefixes": ["81.2.69.128/25", "2001:218:100::/40"],
                            "domains": [f"d3-{run}.example"]}, "tlp_clearance": "green"})
    return r


def generated(rng: random.Random, run: str, count: int) -> list[dict]:
    import ipaddress

    out = []
    for i in range(count):
        record = {"classification": {"type": rng.choice(TYPES)}, "tlp": rng.choice(TLPS),
                  "feed": {"name": f"e2e-{run}", "accuracy": rng.choice([20, 45, 60, 90, 100])}}
        if i % 4 == 3:
            domain = f"d{rng.randrange(5)}-{run}.example"
            host = rng.choice(["www.", "shop.", "", "a.b."]) + domain
            # half carry the hosting address (owner by prefix), half only the name (by domain)
            record["source"] = {"url": f"http://{host}/p{i}"}
            if i % 8 == 3:
                record["source"]["ip"] = "81.2.69.142"
        else:
            net = ipaddress.ip_network(rng.choice(NETWORKS)[0])
            record["source"] = {"ip": str(net[rng.randrange(min(net.num_addresses, 1 << 16))])}
        out.append(record)
    return out


def distinct(records: list[dict]) -> list[dict]:
    """The first record of each indicator (as the stages key it): every one is expected once."""
    unique, seen = [], set()
    for record in records:
        key = indicator_key(normalise_indicator(record))
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique


def real_samples(kafka_env) -> list[dict]:
    feeds = SHARED / "feeds"
    records = []
    for fmt, path in [("feodo-json", "feodotracker/ipblocklist.json"),
                      ("phishtank-json", "phishtank/online-valid.json"),
                      ("urlhaus-csv", "urlhaus/urlhaus_tld_ch_2019.csv"),
                      ("spamhaus-drop", "spamhaus/drop.txt"),
                      ("misp", "misp/circl_osint_sednit_existing_event.json"),
                      ("stix", "stix/poisonivy.json"), ("threatfox-json",
                                                         "threatfox/api_query_response.json")]:
        dry = threatroute("ingest", fmt, str(feeds / path), "--dry-run", env=kafka_env,
                          check=False)
        assert dry.returncode in (0, 1), dry.stderr  # 1: some sample items are refused
        records += [json.loads(line) for line in dry.stdout.splitlines()]
    return records


class Pipeline:
    """`threatroute run all` as a child process, enriching with the real shared data."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.process = env, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all", "--metrics-port", "0",
             "--ipasn", str(SHARED / "asn" / "ipasn6_20151101.dat.gz"),
             "--asnames", str(SHARED / "asn" / "asnames.json.gz"),
             "--geoip", str(SHARED / "mmdb" / "GeoIP2-City-Test.mmdb")],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no shutdown, no final commit
        self.process.communicate(timeout=30)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=90)
        assert self.process.returncode == 0, err.decode()[-3000:]


@pytest.fixture
def pipeline(kafka_env):
    running = Pipeline(kafka_env)
    running.start()
    yield running
    running.stop()


def ingest(kafka_env, tmp_path, records: list[dict]) -> None:
    path = tmp_path / f"{uuid.uuid4()}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    threatroute("ingest", "jsonl", str(path), env=kafka_env)


def wait_for(bootstrap, topic, since, feed_names, count, timeout=120):
    """Distinct records by indicator key: the enrichment stages are at-least-once, so a
    re-delivered batch may repeat records there (the match stage absorbs repeats)."""
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        found = {indicator_key(v): v for _, v in read_since(bootstrap, topic, since, idle=1.5)
                 if v.get("feed", {}).get("name") in feed_names}
        if len(found) >= count:
            break
    return list(found.values())


def test_every_alert_lands_in_exactly_the_right_topics(kafka_env, bootstrap, tmp_path, pipeline):
    wait_drained(bootstrap)
    run = uuid.uuid4().hex[:6]
    recipients = registry(run)
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump({"recipients": recipients}))
    threatroute("recipients", "import", str(tmp_path / "registry.yaml"), env=kafka_env)

    samples = real_samples(kafka_env)
    for record in samples:  # give the real samples this run's feed name, keep them unique
        record.setdefault("feed", {})["name"] = f"real-{run}"
        record.pop("time", None)
    unique = distinct(generated(random.Random(run), run, 3_000) + samples)
    assert len(unique) >= 2_000

    since_enriched = end_offsets(bootstrap, "indicators.enriched")
    ingest(kafka_env, tmp_path, unique)
    enriched = wait_for(bootstrap, "indicators.enriched", since_enriched,
                        {f"e2e-{run}", f"real-{run}"}, len(unique))
    assert len(enriched) == len(unique)

    expected: dict[str, set[str]] = {r["id"]: set() for r in recipients}
    for record in enriched:
        found = routing_reference.owner(record, recipients)
        stamped = record.get("extra", {}).get("owner")
        assert (stamped["id"], stamped["rule"]) == found if found else stamped is None, record
        for rid in routing_reference.recipients(record, recipients):
            expected[rid].add(indicator_key(record))
    assert sum(map(len, expected.values())) > 1_000  # the registry really routes most of them

    feeds = {f"e2e-{run}", f"real-{run}"}
    delivered = read_alert_topics(bootstrap, recipients, expected, feeds)
    for rid, keys in expected.items():
        assert sorted(delivered[rid]) == sorted(keys), rid  # exactly once, nowhere else
    by_key = {indicator_key(r): r for r in enriched}
    for rid, keys in delivered.items():
        for key in keys:
            tlp = by_key[key].get("tlp", "AMBER")
            assert tlp != "RED"
            if tlp == "AMBER+STRICT":
                assert by_key[key]["extra"]["owner"]["id"] == rid

    # repeats are aggregated: a second pass sends no new alert, the ledger counts them. The
    # whole chain is killed (-9) while the repeats are in flight and restarted: the dedup state
    # comes back from its changelog and the transactions keep every alert single.
    repeated = unique[:300]
    since_ledger = end_offsets(bootstrap, "alerts.ledger")
    since_alerts = {rid: end_offsets(bootstrap, f"alerts.{rid}") for rid in expected}
    ingest(kafka_env, tmp_path, repeated)
    time.sleep(1.0)
    pipeline.kill()
    pipeline.start()
    repeat_keys = {indicator_key(normalise_indicator(r)) for r in repeated}
    want = {(rid, k) for rid, keys in expected.items() for k in keys if k in repeat_keys}
    latest: dict[tuple[str, str], dict] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and set(latest) != want:
        for _, v in read_since(bootstrap, "alerts.ledger", since_ledger, idle=2.0):
            if v["recipient"].endswith(run):
                latest[(v["recipient"], v["indicator_key"])] = v
    assert set(latest) == want
    # at-least-once upstream may deliver a repeat twice: then the count is 3, never a new alert
    assert all(v["count"] >= 2 and v["notification"] == "repeat" for v in latest.values())
    for r in recipients:
        fresh = read_since(bootstrap, f"alerts.{r['id']}", since_alerts[r["id"]], idle=0.3,
                           raw=True)
        assert [v for _, v in fresh if _feed_of(v, r.get("format", "json")) in feeds] == []

    # Debian's kcat, a plain downstream client, reads a JSON alert topic that validates
    kcat = shutil.which("kcat")
    assert kcat, "kcat missing: make test installs it (deploy/system-packages.txt)"
    rid = f"gb-host-{run}"
    out = subprocess.run([kcat, "-C", "-b", bootstrap, "-t", f"alerts.{rid}", "-e", "-q",
                          "-f", "%s\n"], capture_output=True, timeout=60, check=True).stdout
    alerts = [json.loads(line) for line in out.splitlines()]
    assert len([a for a in alerts if _feed_of(json.dumps(a).encode(), "json") in feeds]) == len(
        expected[rid]) > 0
    assert [errors("alert", a) for a in alerts] == [[] for _ in alerts]

    # and `threatroute tail` shows the recipient the same alerts
    tailed = threatroute("tail", rid, "--json", env=kafka_env)
    assert sorted(json.loads(line)["alert_id"] for line in tailed.stdout.splitlines()) == sorted(
        a["alert_id"] for a in alerts)
    readable = threatroute("tail", rid, env=kafka_env).stdout.decode()
    assert len(readable.splitlines()) == len(alerts) and alerts[0]["alert_id"] in readable



def read_alert_topics(bootstrap, recipients, expected, feeds) -> dict[str, list[str]]:
    """Indicator keys per recipient topic, of this run's feeds (records left on the topics by
    earlier tests may reach this run's recipients too, rightly), waiting for the expected
    counts."""
    delivered: dict[str, list[str]] = {}
    for r in recipients:
        rid, fmt = r["id"], r.get("format", "json")
        deadline, values = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            values = [(k, v) for k, v in read_since(bootstrap, f"alerts.{rid}", None, idle=1.0,
                                                    raw=True) if _feed_of(v, fmt) in feeds]
            if len(values) >= len(expected[rid]):
                break
        delivered[rid] = [key.decode() for key, _ in values]
        assert all(_format_ok(v, fmt) for _, v in values), rid
    return delivered


STRICT = ValidationOptions(version="2.1", strict=True, enforce_refs=True)


def _feed_of(value: bytes, fmt: str) -> str | None:
    if fmt == "csv":
        return next(csv.reader([value.decode()]))[CSV_COLUMNS.index("feed")]
    document = json.loads(value)
    if fmt == "intelmq":
        return document.get("feed.name")
    indicator = document["objects"][0]["extensions"][EXTENSION_ID]["indicator"] \
        if fmt == "stix" else document["indicator"]
    return indicator.get("feed", {}).get("name")


def _format_ok(value: bytes, fmt: str) -> bool:
    if fmt == "csv":
        return value.count(b",") >= 16 and value.endswith(b"\n")
    document = json.loads(value)
    if fmt == "stix":  # what OASIS's validator accepts (tests/unit/interop has the checks)
        return document["type"] == "bundle" and [o["type"] for o in document["objects"]][:2] == [
            "indicator", "sighting"] and validate_instance(document, STRICT).is_valid
    if fmt == "intelmq":  # IntelMQ's harmonization takes every field as it is
        event = Event(harmonization=None)
        return all(event.add(k, v, sanitize=False, raise_failure=False) for k, v in document.items())
    return not errors("alert", document)
