"""not_ours: the next candidate owner, and the correction for the operator."""

from __future__ import annotations

import pytest

from threatroute.matchers.ownership import OwnershipIndex
from threatroute.matchers.reroute import accept, correction, correction_id, reroute
from threatroute.registry import load_registry

REGISTRY = """
recipients:
  - id: isp
    name: Transit ISP
    owns: {prefixes: [198.51.100.0/24], asns: [64496]}
  - id: hoster
    name: Hoster Ltd
    owns: {prefixes: [198.51.100.0/25], asns: [64500], domains: [examplehost.example]}
  - id: reseller
    name: Reseller
    owns: {prefixes: [198.51.100.64/26], domains: [shop.examplehost.example]}
"""
AT = "2026-03-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def recipients():
    return {r.id: r for r in load_registry(REGISTRY)}


@pytest.fixture(scope="module")
def index(recipients):
    return OwnershipIndex.build(recipients.values())


def rec(**source):
    return {"source": source}


def test_the_next_less_specific_prefix_owner_gets_it_with_the_reason(index):
    r = reroute(rec(ip="198.51.100.70", asn=64500), index, "reseller", (), note="moved out")
    assert r.owner.id == "hoster" and r.owner.rule == "prefix 198.51.100.0/25"
    assert r.reason == ("rerouted: reseller reported it is not theirs (moved out); "
                        "next owner by prefix 198.51.100.0/25")


def test_everyone_who_said_not_ours_is_passed_over_then_the_asn_owner(index):
    r = reroute(rec(ip="198.51.100.70", asn=64500), index, "hoster", {"reseller"})
    assert r.owner.id == "isp"
    # the ASN's owner comes after every prefix
    r = reroute(rec(ip="198.51.100.70", asn=64500), index, "isp", {"reseller", "hoster"})
    assert r.owner is None and "no other owner" in r.reason
    r = reroute(rec(ip="192.0.2.1", asn=64500), index, "nobody", ())
    assert r.owner.id == "hoster" and r.owner.rule == "asn 64500"


def test_domains_fall_back_to_the_parent_domain_owner(index):
    r = reroute(rec(fqdn="a.shop.examplehost.example"), index, "reseller", ())
    assert r.owner.id == "hoster" and r.owner.rule == "domain examplehost.example"


def test_the_correction_names_what_to_disown_and_accepting_updates_the_registry(recipients,
                                                                                  index):
    record = rec(ip="198.51.100.70", asn=64500)
    nxt = reroute(record, index, "reseller", ())
    c = correction(record, "reseller", "prefix 198.51.100.64/26", "k" * 32, AT, nxt, "moved")
    assert (c.kind, c.locator, c.next_owner, c.state) == ("prefixes", "198.51.100.70/32",
                                                          "hoster", "open")
    assert c.id == correction_id("reseller", "198.51.100.70/32")
    updated = accept(recipients["reseller"], c)
    assert updated.disowns.prefixes == ("198.51.100.70/32",)
    assert accept(updated, c) == updated  # twice is once
    # ownership now falls through for every indicator at that address, not just this one
    after = OwnershipIndex.build([updated if r.id == "reseller" else r
                                  for r in recipients.values()])
    assert after.owner_of(rec(ip="198.51.100.70")).id == "hoster"
    assert after.owner_of(rec(ip="198.51.100.71")).id == "reseller"
    assert updated.to_json()["disowns"] == {"prefixes": ["198.51.100.70/32"], "domains": []}
    assert type(updated).from_json(updated.to_json()) == updated
    with pytest.raises(ValueError):
        accept(recipients["hoster"], c)
    assert c.decided("accepted", AT).state == "accepted"
    with pytest.raises(ValueError):
        c.decided("open", AT)


def test_domain_rules_disown_the_name(index):
    record = rec(fqdn="bad.shop.examplehost.example")
    c = correction(record, "reseller", "domain shop.examplehost.example", "k" * 32, AT,
                   reroute(record, index, "reseller", ()))
    assert (c.kind, c.locator, c.next_owner) == ("domains", "bad.shop.examplehost.example",
                                                 "hoster")
    assert correction(rec(asn=64500), "hoster", "asn 64500", "k" * 32, AT,
                      reroute(rec(asn=64500), index, "hoster", ())) is None
