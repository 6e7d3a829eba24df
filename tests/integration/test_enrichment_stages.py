"""The enrichment chain on the real broker: raw -> asn -> geo -> hoster -> enriched, with a
registry change and a replaced data file picked up while the stages keep running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.integration.conftest import ROOT, threatroute
from tests.integration.kafka_helpers import end_offsets, read_since, wait_drained
from threatroute.enrichers.databuild import DEMO_NETWORKS, DemoNetwork, build_demo_data
from threatroute.streams.runtime.schemas import errors

REGISTRY = """
recipients:
  - id: {owner}
    name: Owner of 192.0.2.0/24
    contacts: [abuse@{owner}.example]
    owns: {{prefixes: [192.0.2.0/24]}}
  - id: domainco-{run}
    name: Domain Co
    owns: {{domains: [domainco-{run}.example]}}
"""


def indicator(feed: str, ip: str = "192.0.2.10", **extra: object) -> dict:
    return {"classification": {"type": "c2-server"}, "source": {"ip": ip},
            "feed": {"name": feed, "accuracy": 90}, "tlp": "GREEN", "extra": dict(extra)}


@pytest.fixture
def stages(kafka_env, tmp_path):
    data = build_demo_data(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all", "--metrics-port", "0", "--ipasn", str(data.ipasn),
         "--asnames", str(data.asnames), "--geoip", str(data.mmdb)],
        cwd=ROOT, env={**kafka_env, "THREATROUTE_CONFIG": str(_fast_reload_config(tmp_path))},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield data
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()[-3000:]


def _fast_reload_config(tmp_path):
    text = (ROOT / "deploy" / "threatroute.toml").read_text().replace(
        "reload_seconds = 10", "reload_seconds = 1")
    path = tmp_path / "threatroute.toml"
    path.write_text(text)
    return path


def ingest(kafka_env, tmp_path, records: list[dict]) -> None:
    feed = tmp_path / f"{uuid.uuid4()}.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in records))
    threatroute("ingest", "jsonl", str(feed), env=kafka_env)


def enriched_for(bootstrap, since, feed: str, count: int, timeout: float = 60) -> list[dict]:
    deadline, found = time.monotonic() + timeout, []
    while time.monotonic() < deadline and len(found) < count:
        found = [v for _, v in read_since(bootstrap, "indicators.enriched", since, idle=1.0)
                 if v.get("feed", {}).get("name") == feed]
    return found


def probe_until(kafka_env, bootstrap, tmp_path, predicate, timeout: float = 45) -> dict:
    """Send fresh probes until one comes out enriched the way `predicate` wants."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed = f"probe-{uuid.uuid4()}"
        since = end_offsets(bootstrap, "indicators.enriched")
        ingest(kafka_env, tmp_path, [indicator(feed)])
        records = enriched_for(bootstrap, since, feed, 1, timeout=20)
        if records and predicate(records[0]):
            return records[0]
        time.sleep(1)
    raise AssertionError("the running stages never picked up the change")


def test_chain_enriches_and_follows_registry_and_data_changes(kafka_env, bootstrap, tmp_path,
                                                              stages):
    run = uuid.uuid4().hex[:8]
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY.format(owner=f"alpha-{run}", run=run))
    imported = threatroute("recipients", "import", str(registry), env=kafka_env).stdout
    assert f"created    alerts.alpha-{run}".encode() in imported
    again = threatroute("recipients", "import", str(registry), env=kafka_env).stdout
    assert again.strip() == b"registry unchanged"
    listed = threatroute("recipients", "list", env=kafka_env).stdout.decode()
    assert f"alpha-{run}" in listed and f"domainco-{run}" in listed
    shown = json.loads(threatroute("recipients", "show", f"alpha-{run}", env=kafka_env).stdout)
    assert shown["owns"]["prefixes"] == ["192.0.2.0/24"]

    feed = f"chain-{run}"
    since = end_offsets(bootstrap, "indicators.enriched")
    since_asn = end_offsets(bootstrap, "indicators.asn")
    since_geo = end_offsets(bootstrap, "indicators.geo")
    ingest(kafka_env, tmp_path, [
        indicator(feed, "192.0.2.10", n=1),
        indicator(feed, "2001:db8:beef::10", n=2),
        {"classification": {"type": "phishing"}, "feed": {"name": feed}, "tlp": "GREEN",
         "source": {"url": f"http://www.domainco-{run}.example/login"}, "extra": {"n": 3}},
    ])
    records = {r["extra"]["n"]: r for r in enriched_for(bootstrap, since, feed, 3)}

    assert set(records) == {1, 2, 3}
    first = records[1]["source"]
    assert (first["asn"], first["network"], first["geolocation"]["cc"]) == (
        64500, "192.0.2.0/24", "GB")
    assert first["geolocation"]["city"] == "London"
    assert records[1]["extra"]["owner"] == {"id": f"alpha-{run}",
                                            "name": "Owner of 192.0.2.0/24",
                                            "rule": "prefix 192.0.2.0/24"}
    assert records[2]["source"]["asn"] == 65551
    assert records[2]["source"]["geolocation"]["cc"] == "SE"
    assert "owner" not in records[2].get("extra", {})
    assert records[3]["extra"]["owner"]["rule"] == f"domain domainco-{run}.example"
    assert [errors("enriched-indicator", r) for r in records.values()] == [[], [], []]

    # each intermediate topic carries what its stage added, for its own subscribers
    def first(topic: str, since: dict) -> dict:
        return next(v for _, v in read_since(bootstrap, topic, since, idle=1.0)
                    if v.get("feed", {}).get("name") == feed and v["extra"]["n"] == 1)

    after_asn, after_geo = first("indicators.asn", since_asn), first("indicators.geo", since_geo)
    assert after_asn["source"]["asn"] == 64500 and "geolocation" not in after_asn["source"]
    assert after_geo["source"]["geolocation"]["cc"] == "GB" and "owner" not in after_geo["extra"]

    # a changed registry re-routes later indicators; nothing is restarted
    registry.write_text(REGISTRY.format(owner=f"beta-{run}", run=run))
    changed = threatroute("recipients", "import", str(registry), env=kafka_env).stdout.decode()
    assert f"written    beta-{run}" in changed and f"tombstoned alpha-{run}" in changed
    assert threatroute("recipients", "show", f"alpha-{run}", env=kafka_env,
                       check=False).returncode == 1
    moved = probe_until(kafka_env, bootstrap, tmp_path,
                        lambda r: r.get("extra", {}).get("owner", {}).get("id") == f"beta-{run}")
    assert moved["extra"]["owner"]["rule"] == "prefix 192.0.2.0/24"

    # a replaced data file is picked up too: 192.0.2.0/24 now originates from AS64999
    changed = [DemoNetwork("192.0.2.0/24", 64999, "REPLACED Example, GB", "GB", "United Kingdom")
               if n.prefix == "192.0.2.0/24" else n for n in DEMO_NETWORKS]
    build_demo_data(stages.ipasn.parent, changed)
    reloaded = probe_until(kafka_env, bootstrap, tmp_path,
                           lambda r: r["source"].get("asn") == 64999)
    assert reloaded["source"]["as_name"] == "REPLACED Example, GB"


def test_each_stage_runs_as_its_own_process_and_continues_where_the_fused_chain_stopped(
        kafka_env, bootstrap, tmp_path):
    """`run asn`, `run geo`, `run hoster` as three processes (three consumer groups). They
    start from offsets the fused `run all` of earlier tests committed for them, so they
    have no backlog to re-enrich: the first record out is the one sent now."""
    data = build_demo_data(tmp_path / "data")
    processes = [subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", stage, "--metrics-port", "0",
         "--ipasn", str(data.ipasn), "--asnames", str(data.asnames), "--geoip", str(data.mmdb)],
        cwd=ROOT, env=kafka_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stage in ("asn", "geo", "hoster")]
    try:
        wait_drained(bootstrap, groups=("threatroute-asn", "threatroute-geo",
                                        "threatroute-hoster"))
        feed = f"separate-{uuid.uuid4().hex[:8]}"
        since = end_offsets(bootstrap, "indicators.enriched")
        ingest(kafka_env, tmp_path, [indicator(feed, "198.51.100.7", n=1)])
        records = enriched_for(bootstrap, since, feed, 1)
        assert [(r["source"]["asn"], r["source"]["geolocation"]["cc"]) for r in records] == [
            (64501, "DE")]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err.decode()[-2000:]
