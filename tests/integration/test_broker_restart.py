"""The broker stopped and started again under a running `threatroute run all`: the same
process rides the outage out and finishes the run, nothing lost, nothing duplicated, and the
outage costs the log a handful of lines, not one per retry.

Runs on a broker of its own (TEST_PORT+10, controller +11), started and stopped with the
project's `threatroute broker` command, so the session broker is untouched.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.integration import routing_reference
from tests.integration.conftest import ROOT, own_broker, threatroute
from tests.integration.kafka_helpers import read_since
from tests.integration.test_matching_end_to_end import SHARED, distinct, generated, registry
from threatroute.record import indicator_key
from threatroute.streams.kafka.transactions import COMMIT_SECONDS, TXN_STUCK_SECONDS

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not at {SHARED}")
PORT_OFFSET = 10  # and 11, its controller: conftest lists the ports a run takes
OUTAGE_SECONDS = 15


def run_all(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all",
         "--metrics-port", "0",
         "--ipasn", str(SHARED / "asn" / "ipasn6_20151101.dat.gz"),
         "--asnames", str(SHARED / "asn" / "asnames.json.gz"),
         "--geoip", str(SHARED / "mmdb" / "GeoIP2-City-Test.mmdb")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def ingest(env: dict[str, str], path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    threatroute("ingest", "jsonl", str(path), env=env)


def distinct_enriched(bootstrap: str, count: int, timeout: float = 150) -> dict[str, dict]:
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and len(found) < count:
        found = {indicator_key(v): v for _, v in read_since(bootstrap, "indicators.enriched",
                                                            None, idle=1.5)}
    return found


def alert_counts(bootstrap: str, rids: list[str]) -> Counter[tuple[str, str]]:
    """Alerts per (recipient, indicator key) on the alert topics (every alert there is a
    notifying one: `new`, as no re-notify window passes in this test)."""
    counts: Counter[tuple[str, str]] = Counter()
    for rid in rids:
        for key, _ in read_since(bootstrap, f"alerts.{rid}", None, idle=0.5, raw=True):
            counts[(rid, (key or b"").decode())] += 1
    return counts


def still_failing(text: str) -> list[str]:
    """The stages (loops: `publish loop 3`) whose last word in the log is "Kafka failing"."""
    failing = set(re.findall(r"loop: (.+?): Kafka failing", text))
    return sorted(stage for stage in failing if text.rfind(f"{stage}: Kafka answers again")
                  < text.rfind(f"{stage}: Kafka failing"))


@pytest.fixture
def restarted_broker(tmp_path):
    with own_broker(tmp_path / "broker", PORT_OFFSET) as env:
        yield env


def test_run_all_rides_out_a_broker_restart(restarted_broker, tmp_path):
    env, bootstrap = restarted_broker, restarted_broker["THREATROUTE_BOOTSTRAP"]
    run = uuid.uuid4().hex[:6]
    recipients = registry(run)
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump({"recipients": recipients}))
    threatroute("recipients", "import", str(tmp_path / "registry.yaml"), env=env)
    unique = distinct(generated(random.Random(run), run, 4_000))
    first, rest = unique[: len(unique) // 2], unique[len(unique) // 2:]

    log = tmp_path / "run-all.log"
    process = run_all(env, log)
    try:
        ingest(env, tmp_path / "first.jsonl", first)
        # stop the broker while the pipeline is at work on the first half
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not read_since(bootstrap, "alerts.ledger", None,
                                                             expect=1, timeout=1):
            time.sleep(0.2)
        threatroute("broker", "stop", env=env)
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        assert process.poll() is None, log.read_text()[-3000:]
        threatroute("broker", "start", env=env)
        print(f"broker away {time.monotonic() - stopped:.1f} s")
        ingest(env, tmp_path / "rest.jsonl", rest)

        enriched = distinct_enriched(bootstrap, len(unique))
        assert len(enriched) == len(unique)
        expected = {(rid, key) for key, record in enriched.items()
                    for rid in routing_reference.recipients(record, recipients)}
        assert len(expected) > 1_000
        rids = [r["id"] for r in recipients]
        deadline, counts = time.monotonic() + 120, Counter()
        while time.monotonic() < deadline:
            counts = alert_counts(bootstrap, rids)
            if set(counts) >= expected:
                break
            time.sleep(1)
        time.sleep(3)  # a late duplicate would have arrived by now
        counts = alert_counts(bootstrap, rids)
        # a loop whose commit was caught in the restart may settle it after the last alert
        # arrived (a commit resumed for up to COMMIT_SECONDS, a call given up after
        # TXN_STUCK_SECONDS): it must still say it is back, before it is stopped
        deadline = time.monotonic() + COMMIT_SECONDS + TXN_STUCK_SECONDS
        while still_failing(log.read_text()) and time.monotonic() < deadline:
            time.sleep(1)
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    text = log.read_text()
    missing = expected - set(counts)
    unexpected = set(counts) - expected
    duplicated = {k for k, n in counts.items() if n > 1}
    print(f"alerts expected {len(expected)}, delivered {sum(counts.values())}: missing "
          f"{len(missing)}, unexpected {len(unexpected)}, duplicated {len(duplicated)}")
    noisy = [line for line in text.splitlines()
             if re.search(r" (WARNING|ERROR|CRITICAL) |Connection refused|Traceback", line)]
    print(f"{len(noisy)} warning/error lines in the log of run all:")
    print("\n".join(noisy[:40]))
    assert process.returncode == 0, text[-3000:]
    assert (len(missing), len(unexpected), len(duplicated)) == (0, 0, 0)
    assert "Traceback" not in text
    # an outage is about one warning per stage's loop (12 in run all: the chain, match,
    # feedback, contributions, 8 publish loops; a loop whose commit the restart caught may
    # say a second) and a few of librdkafka's, not one per retry (hundreds here)
    assert len(noisy) <= 20, text[-5000:]
    # each stage that said Kafka was failing said, after that, that it answers again
    assert "match: Kafka failing" in text, text[-5000:]
    assert not still_failing(text), f"{still_failing(text)} never said it recovered\n" \
        f"{text[-5000:]}"
