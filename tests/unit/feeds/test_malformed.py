"""10,000 malformed lines mixed with good ones through the jsonl runner: nothing raises, every
bad line is dead-lettered with its exact bytes and a reason, every good line is accepted."""

from __future__ import annotations

import io
import json
import random

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, Tally, parse_report

SEED = 20240917
BAD_LINES = 10_000


def _good(rng: random.Random) -> bytes:
    ip = f"198.51.100.{rng.randrange(1, 255)}"
    return json.dumps({"source.ip": ip, "classification.type": "scanner",
                       "time.source": "2024-01-02T03:04:05Z", "feed.accuracy": 80}).encode()


def _bad(rng: random.Random) -> bytes:
    base = {"source.ip": "192.0.2.1", "classification.type": "scanner"}
    kind = rng.randrange(14)
    if kind == 0:  # broken JSON: a valid line cut short
        line = json.dumps(base).encode()
        return line[:rng.randrange(1, len(line) - 1)]
    if kind == 1:  # not an object
        return rng.choice([b"[1, 2]", b"42", b'"text"', b"null", b"true"])
    if kind == 2:  # wrong types
        field, value = rng.choice([("source.ip", 5), ("source.asn", "ASx"), ("source.port", 1e9),
                                   ("classification.type", ["scanner"]), ("feed.accuracy", True),
                                   ("time.source", {"a": 1}), ("extra", [1])])
        return json.dumps({**base, field: value}).encode()
    if kind == 3:  # a 100 KB string field
        return json.dumps({**base, "comment": "x" * 100_000}).encode()
    if kind == 4:  # a line over 256 KiB
        return json.dumps({**base, "extra": {"blob": "y" * (270 * 1024)}}).encode()
    if kind == 5:  # bad addresses
        field, value = rng.choice([("source.ip", "999.1.2.3"), ("source.ip", "1.2.3"),
                                   ("source.network", "10.0.0.0/33"),
                                   ("source.fqdn", "bad..example"), ("source.fqdn", "-x.example"),
                                   ("source.url", "http://"), ("source.url", "http://a b/")])
        return json.dumps({**base, field: value}).encode()
    if kind == 6:  # invalid UTF-8 (no newline, no leading '#', never blank)
        noise = bytes(rng.choice([b for b in range(128, 256)]) for _ in range(rng.randrange(1, 40)))
        return b'{"source.ip": "' + noise + b'", "classification.type": "scanner"}'
    if kind == 7:  # other encodings of a valid record
        text = json.dumps({**base, "comment": "caf\u00e9 \u00fcber"}, ensure_ascii=False)
        return text.encode(rng.choice(["latin-1", "utf-16-le", "cp1252"]))
    if kind == 8:  # out-of-range values
        field, value = rng.choice([("source.port", 70000), ("source.asn", 0),
                                   ("feed.accuracy", 101), ("time.source", "1970-01-01T00:00:00Z"),
                                   ("source.geolocation.latitude", 91)])
        return json.dumps({**base, field: value}).encode()
    if kind == 9:  # unknown classification / missing locator
        return rng.choice([json.dumps({**base, "classification.type": "nonsense"}),
                           json.dumps({"classification.type": "scanner"})]).encode()
    if kind == 10:  # nested deeper than the recursion limit
        depth = rng.randrange(1_000, 5_000)
        return b'{"extra": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 11:  # NaN and infinities
        return rng.choice([b'{"source.ip": "192.0.2.1", "classification.type": "scanner", '
                           b'"feed.accuracy": NaN}',
                           b'{"source.ip": "192.0.2.1", "classification.type": "scanner", '
                           b'"source.geolocation.longitude": -Infinity}'])
    if kind == 12:  # a value and a group under one name
        return json.dumps({**base, "source": "x"}).encode()
    return bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 200))).replace(
        b"\n", b"?").replace(b"\r", b"?").lstrip(b" \t\x0b\x0c#") or b"?"


def test_malformed_lines_never_stop_the_run():
    rng = random.Random(SEED)
    lines: list[tuple[bool, bytes]] = [(False, _bad(rng)) for _ in range(BAD_LINES)]
    lines += [(True, _good(rng)) for _ in range(2_000)]
    rng.shuffle(lines)
    report = b"\n".join(line for _, line in lines) + b"\n"
    tally = Tally()
    for outcome in parse_report(get_format("jsonl"), io.BytesIO(report)):
        tally.add(outcome)
        good, line = lines[outcome.number - 1]
        if good:
            assert isinstance(outcome, Accepted), outcome
        else:
            assert isinstance(outcome, Rejected), line[:200]
            assert outcome.raw == line
            assert outcome.reason.strip()
    assert tally.accepted == 2_000
    assert tally.invalid == BAD_LINES
    assert tally.accepted + tally.invalid == len(lines) and not tally.skipped
