"""Ingest on the real broker: every sample feed in, read back from indicators.raw."""

from __future__ import annotations

import base64
import json
import os
import random
import re
from pathlib import Path

import pytest

from tests.integration.conftest import threatroute
from tests.integration.kafka_helpers import end_offsets, read_since
from threatroute.streams.runtime.schemas import errors

SHARED = Path(os.environ.get("THREATROUTE_SHARED_DATA",
                             Path(__file__).resolve().parents[3] / "shared" / "data"))
FEEDS = SHARED / "feeds"

# every sample format in ../shared/data/feeds and the format that reads it
SAMPLES = [
    ("feodo-json", "feodotracker/ipblocklist.json"),
    ("feodo-csv", "feodotracker/ipblocklist_2021.csv"),
    ("urlhaus-csv", "urlhaus/urlhaus_tld_ch_2019.csv"),
    ("threatfox-json", "threatfox/api_query_response.json"),
    ("phishtank-json", "phishtank/online-valid.json"),
    ("openphish", "openphish/feed.txt"),
    ("spamhaus-drop", "spamhaus/drop.txt"),
    ("spamhaus-asndrop", "spamhaus/asndrop.txt"),
    ("cymru", "cymru/infected_20171031.txt"),
    ("cymru", "cymru/certname_20190327.txt"),
    *[("shadowserver", f"shadowserver/{p.name}") for p in sorted(FEEDS.glob("shadowserver/*.csv"))],
    *[("misp", f"misp/{p.name}") for p in sorted(FEEDS.glob("misp/*.json"))],
    *[("stix", f"stix/{p.name}") for p in sorted(FEEDS.glob("stix/*.json"))],
    # IntelMQ's own expected events are IntelMQ output: the `intelmq` format reads them
    ("intelmq", "phishtank/online-valid.intelmq_expected_events.json"),
]

pytestmark = pytest.mark.skipif(not FEEDS.is_dir(), reason=f"shared feed samples not at {FEEDS}")

SUMMARY = re.compile(rb"accepted (\d+).*?invalid (\d+)")


def counts(stderr: bytes) -> tuple[int, int]:
    match = SUMMARY.search(stderr)
    assert match, stderr
    return int(match[1]), int(match[2])


@pytest.mark.parametrize(("fmt", "sample"), SAMPLES, ids=[s for _, s in SAMPLES])
def test_sample_feed_lands_on_raw_topic(kafka_env, bootstrap, fmt, sample):
    dry = threatroute("ingest", fmt, str(FEEDS / sample), "--dry-run", env=kafka_env, check=False)
    expected = [json.loads(line) for line in dry.stdout.splitlines()]
    before_raw = end_offsets(bootstrap, "indicators.raw")
    before_invalid = end_offsets(bootstrap, "indicators.invalid")

    result = threatroute("ingest", fmt, str(FEEDS / sample), env=kafka_env, check=False)
    accepted, invalid = counts(result.stderr)
    # exit code 1 when some item was refused, the same with and without --dry-run
    assert result.returncode == dry.returncode == (1 if invalid else 0)

    assert accepted == len(expected)
    # every item is accounted for; openphish's two samples are malformed on purpose (invalid),
    # the Xorist MISP event holds only hashes and references (skipped)
    skipped = re.search(rb"skipped (\d+)", result.stderr)
    assert accepted + invalid + (int(skipped[1]) if skipped else 0) > 0
    raw = read_since(bootstrap, "indicators.raw", before_raw, expect=accepted)
    assert len(raw) == accepted
    strip = lambda r: {k: v for k, v in r.items() if k != "time"}  # observation time differs
    assert sorted(json.dumps(strip(v), sort_keys=True) for _, v in raw) == sorted(
        json.dumps(strip(v), sort_keys=True) for v in expected)
    assert all(key and len(key) == 32 for key, _ in raw)
    assert [errors("indicator", v) for _, v in raw] == [[] for _ in raw]
    dead = read_since(bootstrap, "indicators.invalid", before_invalid, expect=invalid, idle=0.5,
                      timeout=10 if invalid else 2)
    assert len(dead) == invalid


def malformed_and_good_lines(rng: random.Random, bad: int, good: int) -> tuple[list[bytes], set[int]]:
    """`bad` malformed lines mixed with `good` valid ones; returns lines and the bad indexes."""
    def good_line(i: int) -> bytes:
        octets = f"198.51.{i // 250 % 250}.{i % 250 + 1}"
        return json.dumps({"classification": {"type": "c2-server"}, "source": {"ip": octets},
                           "feed": {"name": "mixed-test", "accuracy": 90}, "tlp": "green",
                           "extra": {"n": i}}).encode()

    breakers = [
        lambda i: b'{"classification": {"type": "phishing"}, "source": {"url": "http://x',
        lambda i: b"\xff\xfe\x00bad encoding " + str(i).encode(),
        lambda i: json.dumps({"classification": {"type": "phishing"},
                              "source": {"ip": f"999.1.2.{i}"}}).encode(),
        lambda i: json.dumps({"classification": {"type": 7}, "source": {"ip": "192.0.2.1"}}).encode(),
        lambda i: json.dumps({"classification": {"type": "phishing"},
                              "source": {"fqdn": "a" * 100_000 + ".example"}}).encode(),
        lambda i: json.dumps({"classification": {"type": "phishing"},
                              "source": {"url": "http://example.com/" + "p" * 300_000}}).encode(),
        lambda i: json.dumps({"classification": {"type": "scanner"}, "source": {"ip": "192.0.2.9"},
                              "source.port": 70000}).encode(),
        lambda i: json.dumps(["not", "an", "object", i]).encode(),
        lambda i: json.dumps({"classification": {"type": "no-such-type"},
                              "source": {"ip": "192.0.2.1"}}).encode(),
        lambda i: json.dumps({"classification": {"type": "spam"}, "source": {},
                              "tlp": "purple"}).encode(),
        lambda i: "{\"source\": {\"fqdn\": \"caf\u00e9.example\"}}".encode("latin-1"),
    ]
    lines, bad_indexes, b, g = [], set(), 0, 0
    while b < bad or g < good:
        if g >= good or (b < bad and rng.random() < bad / (bad + good)):
            bad_indexes.add(len(lines))
            lines.append(breakers[b % len(breakers)](b))
            b += 1
        else:
            lines.append(good_line(g))
            g += 1
    return lines, bad_indexes


def test_ten_thousand_malformed_lines_are_dead_lettered_and_counts_add_up(
        kafka_env, bootstrap, tmp_path):
    lines, bad_indexes = malformed_and_good_lines(random.Random(2024), bad=10_000, good=2_000)
    feed = tmp_path / "mixed.jsonl"
    feed.write_bytes(b"\n".join(lines) + b"\n")
    before_raw = end_offsets(bootstrap, "indicators.raw")
    before_invalid = end_offsets(bootstrap, "indicators.invalid")

    result = threatroute("ingest", "jsonl", str(feed), env=kafka_env, check=False)

    accepted, invalid = counts(result.stderr)
    assert (accepted, invalid) == (2_000, 10_000)
    assert result.returncode == 1  # some input refused
    raw = read_since(bootstrap, "indicators.raw", before_raw, expect=accepted)
    dead = read_since(bootstrap, "indicators.invalid", before_invalid, expect=invalid, timeout=60)
    assert len(raw) == 2_000 and len(dead) == 10_000
    assert sorted(v["extra"]["n"] for _, v in raw) == list(range(2_000))
    originals = sorted(base64.b64decode(v["original"]) for _, v in dead)
    truncated = [v for _, v in dead if v.get("original_truncated")]
    assert not truncated  # every bad line here is under the 1 MiB kept in a dead letter
    assert originals == sorted(lines[i] for i in bad_indexes)
    assert all(v["reason"] and v["stage"] == "ingest" and v["origin"]["format"] == "jsonl"
               for _, v in dead)
    assert not [e for _, v in dead[:500] if (e := errors("dead-letter", v))]
