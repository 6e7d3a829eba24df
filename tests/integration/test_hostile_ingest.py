"""Hostile input against the real broker: a generated file of hostile lines through
`threatroute ingest` (jsonl and intelmq), then generated hostile messages straight onto
indicators.raw, all through the running stages (`threatroute run all`).

Ingest exits 0 and accounts for every line (accepted + dead-lettered = lines given, and the
topics grew by exactly those counts, as an in-process parse predicts); the stages refuse
exactly the messages the record contract refuses (computed in-process with the stages' own
decoder), pass every other record on, and log no traceback. The figures are printed at the
end of the run.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Message, Producer
from hypothesis import given

from tests import hostile
from tests.hostile import (
    ISSUE_LINES,
    ISSUE_STAGE_RECORDS,
    Vocab,
    fuzz_settings,
    stix_over_size,
    vocabularies,
)
from tests.integration.conftest import ROOT, threatroute
from tests.integration.kafka_helpers import end_offsets, read_since, wait_drained
from threatroute.enrichers.databuild import build_demo_data
from threatroute.feeds import get_format
from threatroute.feeds.base import Tally, parse_report
from threatroute.streams.runtime.loop import decode_batch

LINES = {"jsonl": 16_000, "intelmq": 4_000}
STAGE_MESSAGES = 4_000
SUMMARY = re.compile(rb"accepted (\d+).*?invalid (\d+)")
REGISTRY = """
recipients:
  - id: {rid}
    name: Fuzz Owner
    owns: {{prefixes: [192.0.2.0/24, "2001:db8::/32"]}}
    tlp_clearance: amber
"""


def generate(build: Callable[[Vocab], Any], count: int) -> list[Any]:
    """`count` items from hypothesis-drawn vocabularies, 200 per vocabulary."""
    items: list[Any] = []

    @fuzz_settings(max(1, count // 200))
    @given(vocab=vocabularies)
    def draw(vocab: Vocab) -> None:
        items.extend(build(vocab) for _ in range(200))

    draw()
    return items


def moved(before: dict[int, int], after: dict[int, int]) -> int:
    return sum(after[p] - before.get(p, 0) for p in after)


@pytest.fixture
def stages(kafka_env, tmp_path):
    """`threatroute run all` with the demo data; stderr kept in a file (never a full pipe)."""
    data = build_demo_data(tmp_path / "data")
    log = (tmp_path / "stages.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "threatroute.streams.commands.cli", "run", "all",
         "--metrics-port", "0", "--ipasn", str(data.ipasn), "--asnames", str(data.asnames),
         "--geoip", str(data.mmdb)],
        cwd=ROOT, env=kafka_env, stdout=log, stderr=subprocess.STDOUT)
    yield process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    log.close()
    output = (tmp_path / "stages.log").read_bytes()
    assert process.returncode == 0, output[-3000:]
    assert b"Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("fmt", list(LINES))
def test_hostile_files_ingest_every_line_accounted(fmt, kafka_env, bootstrap, tmp_path):
    flat = fmt == "intelmq"
    lines = generate(lambda v: hostile.json_line(v, flat=flat), LINES[fmt])
    lines += list(ISSUE_LINES.values())
    feed = tmp_path / f"hostile.{fmt}"
    feed.write_bytes(b"\n".join(lines) + b"\n")
    expected = Tally()
    for outcome in parse_report(get_format(fmt), io.BytesIO(feed.read_bytes())):
        expected.add(outcome)
    before = {t: end_offsets(bootstrap, t) for t in ("indicators.raw", "indicators.invalid")}

    started = time.monotonic()
    result = threatroute("ingest", fmt, str(feed), env=kafka_env, check=False)
    seconds = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]  # done, some input refused

    accepted, invalid = map(int, SUMMARY.search(result.stderr).groups())
    assert b"Traceback" not in result.stderr
    assert accepted + invalid == len(lines) and not expected.skipped
    assert (accepted, invalid) == (expected.accepted, expected.invalid)
    assert accepted and invalid >= len(ISSUE_LINES)
    assert moved(before["indicators.raw"], end_offsets(bootstrap, "indicators.raw")) == accepted
    assert moved(before["indicators.invalid"],
                 end_offsets(bootstrap, "indicators.invalid")) == invalid
    hostile.COUNTS["ingest (broker): lines"] += len(lines)
    hostile.COUNTS["ingest (broker): accepted"] += accepted
    hostile.COUNTS["ingest (broker): dead-lettered"] += invalid
    print(f"ingest {fmt}: {len(lines)} lines, {accepted} accepted, {invalid} dead-lettered, "
          f"{seconds:.1f}s")


def test_hostile_messages_on_the_stages_inputs_are_refused_and_the_rest_enriched(
        kafka_env, bootstrap, tmp_path, stages):
    rid = f"fuzz-{uuid.uuid4().hex[:8]}"
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY.format(rid=rid))
    threatroute("recipients", "import", str(registry), env=kafka_env)
    wait_drained(bootstrap)  # what earlier tests left is through before counting starts

    values = generate(lambda v: (hostile.stage_key(v), hostile.stage_message(v)), STAGE_MESSAGES)
    values += [(uuid.uuid4().hex.encode(), value) for value in ISSUE_STAGE_RECORDS.values()]
    inputs, refused = decode_batch([Message(topic="indicators.raw", key=k, value=v)
                                    for k, v in values])
    before = {t: end_offsets(bootstrap, t) for t in (
        "indicators.invalid", "indicators.enriched", f"alerts.{rid}")}
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in values:
        producer.produce("indicators.raw", value, key)
        producer.poll(0)
    assert producer.flush(60) == 0
    del producer  # no reconnect attempts once the session's broker stops

    wait_drained(bootstrap, timeout=240)
    assert stages.poll() is None, "the stages stopped"
    dead = read_since(bootstrap, "indicators.invalid", before["indicators.invalid"],
                      expect=len(refused), timeout=60)
    by_stage = Counter(letter["stage"] for _, letter in dead)
    # the fused enrichment chain refuses at its decoding; nothing the contract admitted is
    # refused later, by any transform or by the match stage
    reasons = Counter(letter["reason"][:60] for _, letter in dead if letter["stage"] == "match")
    assert sum(by_stage.values()) == len(refused), (by_stage, reasons.most_common(5))
    assert all(stage.startswith("asn") for stage in by_stage), by_stage
    assert moved(before["indicators.enriched"],
                 end_offsets(bootstrap, "indicators.enriched")) == len(inputs)
    alerts = moved(before[f"alerts.{rid}"], end_offsets(bootstrap, f"alerts.{rid}"))
    hostile.COUNTS["stages (broker): messages"] += len(values)
    hostile.COUNTS["stages (broker): dead-lettered"] += len(refused)
    hostile.COUNTS["stages (broker): enriched"] += len(inputs)
    print(f"stages: {len(values)} messages, {len(refused)} dead-lettered at decoding, "
          f"{len(inputs)} enriched, {alerts} alerts to {rid}")


@pytest.mark.parametrize(("document", "refused"), [
    (stix_over_size(2), 2),                             # two indicators over the message size
    (stix_over_size(1)[: 1500 * 1024 // 2], 1),         # a broken document, 600 KiB of it
    (b"[" * 400_000 + b"]" * 400_000, 1),               # nested past any parser's limit
], ids=["over-size objects", "broken document", "deep document"])
def test_stix_documents_over_the_message_size_are_dead_lettered(
        document, refused, kafka_env, bootstrap, tmp_path):
    feed = tmp_path / "bundle.json"
    feed.write_bytes(document)
    before = end_offsets(bootstrap, "indicators.invalid")
    result = threatroute("ingest", "stix", str(feed), env=kafka_env, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert b"Traceback" not in result.stderr
    assert tuple(map(int, SUMMARY.search(result.stderr).groups())) == (0, refused)
    letters = read_since(bootstrap, "indicators.invalid", before, expect=refused, raw=True)
    assert len(letters) == refused and all(len(v) < 1_000_000 for _, v in letters)
