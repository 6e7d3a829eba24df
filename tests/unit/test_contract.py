"""The record contract: what ingest admits, what a stage's decoding refuses, and why."""

from __future__ import annotations

import json

import orjson
import pytest

from threatroute.contract import (
    MAX_RECORD_BYTES,
    MAX_UNIT_BYTES,
    admit,
    admit_json,
    check_record,
    decode_object,
    seal,
)
from threatroute.deadletter import dead_letter, original_bytes
from threatroute.errors import InvalidRecord
from threatroute.streams.config import PACKAGE_DATA
from threatroute.streams.kafka.clients import encode
from threatroute.streams.runtime.schemas import errors

GOOD = {"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.10", "port": 443},
        "feed": {"name": "t", "accuracy": 90}, "tlp": "GREEN", "extra": {"tags": ["a"]}}


def enriched() -> dict:
    record = admit(GOOD).record
    record["source"].update({"asn": 64500, "network": "192.0.2.0/24", "as_name": "X",
                             "geolocation": {"cc": "GB", "city": "London", "latitude": 51.5}})
    record["extra"]["owner"] = {"id": "examplehost", "name": "X", "rule": "prefix"}
    return record


def test_what_normalisation_produces_holds_the_contract_and_the_schema():
    lines = (PACKAGE_DATA / "demo" / "indicators.jsonl").read_bytes().splitlines()
    admitted = []
    for line in lines:  # the demo file has a bad line on purpose
        try:
            admitted.append(admit_json(line))
        except InvalidRecord as exc:
            assert "not-an-ip" in exc.reason
    assert len(admitted) == len(lines) - 1
    for item in admitted:
        assert check_record(item.record) is None
        assert item.value == orjson.dumps(item.record)
        assert errors("indicator", item.record) == []
    assert check_record(enriched()) is None


@pytest.mark.parametrize("field, value", [
    ("source.ip", "fe80::1%eth0"), ("source.ip", "[fe80::1%eth0]"),
    ("source.network", "fe80::%eth0/64"), ("source.url", "http://[fe80::1%25eth0]/x"),
])
def test_scoped_ipv6_is_refused_at_ingest(field, value):
    with pytest.raises(InvalidRecord) as refused:
        admit({"classification.type": "scanner", field: value})
    assert "scoped" in refused.value.reason or refused.value.field == field


@pytest.mark.parametrize("path, value, field", [
    (("source", "ip"), "fe80::1%eth0", "source.ip"),
    (("source", "ip"), "2001:DB8::1", "source.ip"),            # not canonical
    (("source", "ip"), "::ffff:192.0.2.1", "source.ip"),       # mapped: IPv4 is canonical
    (("source", "ip"), {"v": "192.0.2.1"}, "source.ip"),
    (("source", "network"), "192.0.2.1/24", "source.network"),  # host bits
    (("source", "port"), "443", "source.port"),
    (("source", "port"), True, "source.port"),
    (("source", "asn"), 64500.0, "source.asn"),
    (("source", "asn"), 2**32, "source.asn"),
    (("source", "fqdn"), "Example.COM", "source.fqdn"),
    (("source", "geolocation"), "GB", "source.geolocation"),
    (("source", "geolocation", "cc"), 44, "source.geolocation.cc"),
    (("feed", "accuracy"), "90", "feed.accuracy"),
    (("feed", "accuracy"), float("inf"), "feed.accuracy"),
    (("tlp",), "green", "tlp"),
    (("classification", "type"), "nonsense", "classification.type"),
    (("classification", "taxonomy"), "fraud", "classification.taxonomy"),
    (("time", "observation"), "2024-01-02T03:04:05Z", "time.observation"),
    (("extra",), [1, 2], "extra"),
    (("extra", "n"), 2**64, "extra.n"),
    (("extra", "deep"), json.loads("[" * 20 + "]" * 20), "extra.deep"),
    (("extra", "list"), list(range(2000)), "extra.list"),
    (("unknown",), 5, "unknown"),
    (("a", "b", "c", "d"), {"e": "f"}, "a.b.c.d"),
])
def test_stage_decoding_refuses_wrong_types_and_forms_naming_the_field(path, value, field):
    record = enriched()
    node = record
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    reason = check_record(record)
    assert reason and reason.startswith(field), reason


@pytest.mark.parametrize("record, reason", [
    ([1], "record: expected a JSON object"),
    ({**enriched(), "source": {"port": 80}}, "source: no routable locator"),
    ({k: v for k, v in enriched().items() if k != "time"}, "time.observation: missing"),
])
def test_required_parts(record, reason):
    assert check_record(record).startswith(reason)


def test_size_is_checked_before_anything_else():
    assert "bytes" in check_record(enriched(), MAX_RECORD_BYTES + 1)
    with pytest.raises(InvalidRecord, match="bytes"):
        seal({**enriched(), "extra": {f"k{i}": "x" * 4000 for i in range(20)}})


def test_lone_surrogates_are_refused_with_the_field_that_holds_one():
    with pytest.raises(InvalidRecord) as refused:
        admit({**GOOD, "comment": "caf\udce9"})
    assert refused.value.field == "comment" and "Unicode" in refused.value.reason
    with pytest.raises(InvalidRecord) as refused:
        admit({**GOOD, "extra": {"note": ["ok", "\ud800"]}})
    assert refused.value.field == "extra.note[1]"


@pytest.mark.parametrize("raw", [
    b'{"classification.type": "scanner", "source.ip": "192.0.2.1", "comment": "\\ud800"}',
    b'{"classification.type": "scanner", "source.ip": "192.0.2.1", "feed.accuracy": NaN}',
    b"\xff\xfe{}", b"[1]", b"{" * 5000, b'{"a": 1', b"",
])
def test_decoding_a_line_refuses_with_a_reason(raw):
    with pytest.raises(InvalidRecord) as refused:
        decode_object(raw)
    assert refused.value.reason


def test_an_over_size_line_is_refused_undecoded():
    with pytest.raises(InvalidRecord, match="too large"):
        decode_object(b"{" + b" " * MAX_UNIT_BYTES + b"}")


def test_encode_never_fails_on_text_that_is_not_unicode():
    letter = dead_letter(b"x", "bad \ud800 reason", stage="ingest",
                         origin={"path": "feed-\udcff.jsonl"})
    value = encode(letter)
    decoded = orjson.loads(value)
    assert decoded["reason"] == "bad \ufffd reason" and decoded["origin"]["path"] == "feed-\ufffd.jsonl"
    assert orjson.loads(encode({"n": 2**70})) == {"n": 2**70}


def test_a_dead_letter_fits_in_one_message_whatever_it_carries():
    huge = b"y" * (5 << 20)
    letter = dead_letter(huge, "r" * 10_000, stage="ingest")
    assert len(encode(letter)) < 1_000_000
    assert original_bytes(letter) == huge[:len(original_bytes(letter))]
    assert letter["original_size"] == len(huge) and letter["original_truncated"]
    small = dead_letter(b"z" * 300_000, "r", stage="ingest")
    assert original_bytes(small) == b"z" * 300_000
