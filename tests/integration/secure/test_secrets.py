"""A secure run leaks no password: not in a log line, a dead letter, an error or any argv.

The run: registry import (provisioning), ingest with a bad line, every stage running with
debug logging, recipients posting good and bad feedback and contributions, a client with a
wrong password. Then every password the broker generated (the pipeline's, the recipients',
the broker's own) is searched for in: the broker's log files, everything every command
printed, every dead letter, and the argv of every process seen during the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.integration.conftest import ROOT
from tests.integration.secure.conftest import A, B, SecureBroker, read_properties, registry_yaml

INDICATORS = [
    {"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.44", "port": 8443},
     "tlp": "GREEN", "feed": {"name": "secrets-test"}},
    {"classification": {"type": "phishing"},
     "source": {"url": "http://198.51.100.8/login?email=jane@corp.example"}, "tlp": "GREEN",
     "feed": {"name": "secrets-test"}},
]


def _argv_watcher(stop: threading.Event, seen: set[bytes]) -> None:
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                seen.add(cmdline.read_bytes())
            except OSError:  # the process ended meanwhile
                continue
        time.sleep(0.3)


def _dead_letters(secure: SecureBroker) -> list[bytes]:
    from tests.integration.secure.test_provisioning import _read

    settings = {**read_properties(secure.pipeline_file), "log_level": "0"}
    topics = AdminClient(settings).list_topics(timeout=10).topics
    letters = []
    for topic in [t for t in topics if t.endswith(".invalid")]:
        letters += [json.dumps(value).encode() for _, value in _read(settings, topic)]
    return letters


@pytest.fixture(scope="module")
def secure_run(secure: SecureBroker, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("secure-run")
    seen_argv: set[bytes] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_argv_watcher, args=(stop, seen_argv), daemon=True)
    watcher.start()
    try:
        (work / "registry.yaml").write_text(registry_yaml())
        secure.run("recipients", "import", str(work / "registry.yaml"))
        secure.run("data", "build", "--dest", str(work / "data"))
        lines = [json.dumps(i) for i in INDICATORS] + ['{"classification": "broken"']
        secure.run("ingest", "jsonl", "-", input="\n".join(lines).encode(), check=False)
        log = work / "run.log"
        with log.open("wb") as out:
            run = subprocess.Popen(
                [sys.executable, "-m", "threatroute.streams.commands.cli", "--log-level",
                 "debug", "run", "all", "--metrics-port", "0",
                 "--ipasn", str(work / "data" / "ipasn.dat"),
                 "--asnames", str(work / "data" / "asnames.json"),
                 "--geoip", str(work / "data" / "demo-city.mmdb")],
                cwd=ROOT, env=secure.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _recipients_speak(secure)
            time.sleep(15)
        finally:
            run.terminate()
            run.wait(60)
    finally:
        stop.set()
        watcher.join(5)
    return {"argv": seen_argv, "run_log": log.read_bytes(), "dead_letters": _dead_letters(secure)}


def _recipients_speak(secure: SecureBroker) -> None:
    """Good and bad reports and contributions, and a client with a wrong password."""
    producer = Producer(secure.settings(A))
    bad = [b"not json", json.dumps({"alert_id": "x" * 22, "recipient": B,
                                    "status": "remediated", "time": "2026-01-01T00:00:00Z"})
           .encode()]
    for value in bad:
        for topic in (f"feedback.{A}", f"contributions.{A}"):
            producer.produce(topic, value, b"k")
    producer.produce(f"contributions.{A}", json.dumps(
        {**INDICATORS[0], "extra": {"owner": {"id": B}}}).encode(), b"k")
    assert producer.flush(30) == 0
    wrong = AdminClient({**secure.settings(A), "sasl.password": "wrong-" + "password"})
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the scan is the test
        wrong.list_topics(timeout=5)
    secure.kcat(A, "-C", "-t", f"alerts.{B}", "-e")


def _haystacks(secure: SecureBroker, run: dict) -> dict[str, list[bytes]]:
    logs = [p.read_bytes() for p in (secure.state / "broker" / "logs").rglob("*") if p.is_file()]
    return {"broker log": logs, "run log": [run["run_log"]], "command output": secure.outputs,
            "dead letter": run["dead_letters"], "argv": sorted(run["argv"])}


def test_the_run_had_something_to_leak(secure: SecureBroker, secure_run: dict) -> None:
    passwords = secure.passwords()
    assert len(passwords) >= 5, passwords.__len__()  # pipeline, A, B, broker, controller
    assert all(len(p) >= 32 for p in passwords)
    assert secure_run["dead_letters"], "the bad input was dead-lettered"
    assert any(b"kafka.Kafka" in argv for argv in secure_run["argv"]), "the broker was watched"
    assert any(b"run\0all" in argv for argv in secure_run["argv"]), "the stages were watched"
    assert b"running" in secure_run["run_log"]


def test_no_password_anywhere(secure: SecureBroker, secure_run: dict) -> None:
    leaks = []
    for password in secure.passwords():
        needle = password.encode()
        for where, blobs in _haystacks(secure, secure_run).items():
            leaks += [where for blob in blobs if needle in blob]
    assert leaks == []
