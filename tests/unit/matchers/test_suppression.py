"""The operator's suppression list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from threatroute.matchers.suppression import SuppressionError, load_suppressions

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LIST = """
suppressions:
  - addresses: [192.0.2.99, "2001:db8::99"]
    reason: our own sinkhole
    expires: 2027-01-01T00:00:00Z
  - prefixes: [198.51.100.0/28]
    domains: [research.example]
    reason: university scanner project
    expires: "2026-06-01"
  - addresses: [203.0.113.5]
    reason: expired entry
    expires: 2026-01-01T00:00:00Z
"""


@pytest.fixture(scope="module")
def sup():
    return load_suppressions(LIST)


def src(**source):
    return {"source": source}


def test_addresses_prefixes_and_domains_are_suppressed_with_their_reason(sup):
    hit = sup.match(src(ip="192.0.2.99", port=80), NOW)
    assert hit is not None and hit.reason == "our own sinkhole" and hit.what == "192.0.2.99"
    assert sup.match(src(ip="2001:db8::99"), NOW).reason == "our own sinkhole"
    assert sup.match(src(ip="198.51.100.7"), NOW).what == "198.51.100.0/28"
    assert sup.match(src(network="198.51.100.0/29"), NOW) is not None
    assert sup.match(src(fqdn="scan01.research.example"), NOW).what == "research.example"
    assert "university scanner project" in sup.match(src(fqdn="research.example"), NOW).explain()


def test_what_the_list_does_not_cover_passes(sup):
    assert sup.match(src(ip="192.0.2.98"), NOW) is None
    assert sup.match(src(ip="198.51.100.16"), NOW) is None
    assert sup.match(src(network="198.51.100.0/24"), NOW) is None  # wider than the entry
    assert sup.match(src(fqdn="notresearch.example"), NOW) is None
    assert sup.match(src(asn=64500), NOW) is None


def test_expired_entries_no_longer_suppress(sup):
    assert sup.match(src(ip="203.0.113.5"), NOW) is None
    assert sup.match(src(ip="198.51.100.7"), datetime(2026, 7, 1, tzinfo=UTC)) is None
    assert sup.match(src(ip="192.0.2.99"), datetime(2026, 7, 1, tzinfo=UTC)) is not None


def test_every_problem_is_reported_at_once():
    with pytest.raises(SuppressionError) as err:
        load_suppressions("""
suppressions:
  - addresses: [not-an-ip]
    reason: x
    expires: 2027-01-01
  - prefixes: [198.51.100.0/28]
    expires: 2027-01-01
  - domains: [a.example]
    reason: no expiry
  - reason: nothing listed
    expires: 2027-01-01
    adresses: [192.0.2.1]
""")
    text = "\n".join(err.value.errors)
    assert "entry 1: addresses[0]" in text and "entry 2: reason: missing" in text
    assert "entry 3: expires: missing" in text and "entry 4: adresses: unknown key" in text
    assert "entry 4: lists no addresses" in text


def test_an_empty_file_suppresses_nothing():
    assert len(load_suppressions("")) == 0
    assert load_suppressions("suppressions: []").match(src(ip="192.0.2.1"), NOW) is None
