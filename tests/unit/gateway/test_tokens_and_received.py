"""Tokens (issue, hash, check) and alerts read back from every delivery format; no broker."""

from __future__ import annotations

import pytest

from threatroute.errors import InvalidRecord
from threatroute.matchers.formats import render
from threatroute.matchers.received import locator, read_alert
from threatroute.tokens import TokenRecord, issue, token_hash

ALERT = {
    "alert_id": "A" * 22, "recipient": "examplehost", "indicator_key": "k" * 32,
    "notification": "new", "reasons": ["owner (prefix 192.0.2.0/24)", "subscribed"],
    "indicator": {"classification": {"type": "phishing"}, "tlp": "AMBER",
                  "source": {"url": "http://a.examplehost.example/x", "ip": "192.0.2.5",
                             "port": 80, "asn": 64500, "geolocation": {"cc": "GB"}},
                  "feed": {"name": "demo"}},
    "first_seen": "2026-01-02T03:04:05+00:00", "last_seen": "2026-01-02T03:04:05+00:00",
    "count": 2, "recurrence": False, "sent_at": "2026-01-02T03:04:05+00:00",
}


def test_a_token_is_stored_only_as_its_hash_and_checked_against_it():
    token, record = issue("examplehost")
    assert token not in str(record.to_json())
    assert record.hash == token_hash(token) and len(token) >= 43
    again = TokenRecord.from_json(record.to_json())
    assert again.matches(token) and not again.matches(token + "x")
    assert issue("examplehost")[0] != token  # every issue is a new token


@pytest.mark.parametrize("bad", [{}, {"hash": "x", "recipient": "a", "issued_at": "t"},
                                 {"algorithm": "md5", "hash": "0" * 64}])
def test_token_records_that_are_not_ours_are_refused(bad):
    with pytest.raises(InvalidRecord):
        TokenRecord.from_json(bad)


@pytest.mark.parametrize("fmt", ["json", "stix", "csv"])
def test_every_format_reads_back_to_the_alert_and_stix_objects(fmt):
    received = read_alert(render(ALERT, fmt), b"k" * 32, 1767323045000)
    alert = received.alert
    assert received.alert_id == ALERT["alert_id"]
    assert alert["reasons"] == ALERT["reasons"] and alert["count"] == 2
    assert alert["indicator"]["classification"]["type"] == "phishing"
    assert locator(alert) == "http://a.examplehost.example/x"
    assert {o["type"] for o in received.stix} >= {"indicator", "sighting"}
    assert all(o.get("spec_version") == "2.1" for o in received.stix if o["type"] != "bundle")


def test_the_same_alert_gives_the_same_stix_ids_whatever_its_format():
    ids = {fmt: sorted(o["id"] for o in read_alert(render(ALERT, fmt), b"k" * 32, 0).stix
                       if o["type"] == "indicator") for fmt in ("json", "csv")}
    assert ids["json"] == ids["csv"]


@pytest.mark.parametrize("value", [b"not,an,alert", b'{"some": "json"}', b"{broken",
                                   b'{"type": "bundle", "objects": []}'])
def test_what_is_not_an_alert_is_refused(value):
    with pytest.raises(InvalidRecord):
        read_alert(value, None, 0)
