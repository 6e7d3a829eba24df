"""Ownership: most specific prefix, then ASN, then longest domain suffix."""

from __future__ import annotations

import pytest

from threatroute.errors import InvalidRecord
from threatroute.matchers.ownership import Owner, OwnershipIndex, domain_suffixes
from threatroute.registry import load_registry

REGISTRY = """
recipients:
  - id: isp
    name: Transit ISP
    owns: {prefixes: [198.51.100.0/24, "2001:db8::/32"], asns: [64496]}
  - id: hoster
    name: Hoster Ltd
    owns:
      prefixes: [198.51.100.0/25, "2001:db8:1::/48"]
      asns: [64500]
      domains: [examplehost.example]
  - id: reseller
    name: Reseller
    owns: {prefixes: [198.51.100.64/26], domains: [shop.examplehost.example]}
  - id: registrar
    name: Registrar
    owns: {domains: [domains.example]}
"""


@pytest.fixture(scope="module")
def index() -> OwnershipIndex:
    return OwnershipIndex.build(load_registry(REGISTRY))


def owner(index, **source):
    return index.owner_of({"source": source})


@pytest.mark.parametrize(("ip", "expected"), [
    ("198.51.100.70", Owner("reseller", "Reseller", "prefix 198.51.100.64/26")),
    ("198.51.100.10", Owner("hoster", "Hoster Ltd", "prefix 198.51.100.0/25")),
    ("198.51.100.200", Owner("isp", "Transit ISP", "prefix 198.51.100.0/24")),
    ("2001:db8:1:2::5", Owner("hoster", "Hoster Ltd", "prefix 2001:db8:1::/48")),
    ("2001:db8:ffff::1", Owner("isp", "Transit ISP", "prefix 2001:db8::/32")),
    ("192.0.2.1", None),
])
def test_most_specific_prefix(index, ip, expected):
    assert owner(index, ip=ip) == expected


def test_network_needs_a_prefix_containing_all_of_it(index):
    assert owner(index, network="198.51.100.64/27").id == "reseller"
    assert owner(index, network="198.51.100.0/25").rule == "prefix 198.51.100.0/25"
    assert owner(index, network="198.51.100.0/24").id == "isp"
    assert owner(index, network="198.51.0.0/16") is None


def test_ip_beats_network(index):
    assert owner(index, ip="198.51.100.200", network="198.51.100.0/25").id == "isp"


def test_order_prefix_then_asn_then_domain(index):
    both = {"ip": "198.51.100.10", "asn": 64496, "fqdn": "a.domains.example"}
    assert owner(index, **both).rule == "prefix 198.51.100.0/25"
    assert owner(index, ip="192.0.2.1", asn=64500, fqdn="a.domains.example").rule == "asn 64500"
    assert owner(index, ip="192.0.2.1", asn=65000, fqdn="a.domains.example") == Owner(
        "registrar", "Registrar", "domain domains.example")


def test_ip_owner_beats_domain_owner(index):
    # hosted at the ISP, domain registered with the registrar: the hoster can take it down
    assert owner(index, ip="198.51.100.200", fqdn="phish.domains.example").id == "isp"


@pytest.mark.parametrize(("fqdn", "expected"), [
    ("examplehost.example", "domain examplehost.example"),
    ("evil.examplehost.example", "domain examplehost.example"),
    ("a.shop.examplehost.example", "domain shop.examplehost.example"),
    ("shop.examplehost.example", "domain shop.examplehost.example"),
    ("badexamplehost.example", None),
    ("examplehost.example.evil.example", None),
    ("Evil.ExampleHost.Example.", "domain examplehost.example"),
])
def test_domain_suffix_on_label_boundary(index, fqdn, expected):
    found = owner(index, fqdn=fqdn)
    assert (found.rule if found else None) == expected


def test_no_locator_no_owner(index):
    assert index.owner_of({"source": {}}) is None
    assert index.owner_of({}) is None


def test_bad_address_is_an_invalid_record(index):
    with pytest.raises(InvalidRecord) as caught:
        owner(index, ip="not-an-ip")
    assert caught.value.field == "source.ip"


def test_domain_suffixes():
    assert list(domain_suffixes("a.b.example")) == ["a.b.example", "b.example", "example"]


def test_owner_json():
    assert Owner("a", "A", "asn 1").to_json() == {"id": "a", "name": "A", "rule": "asn 1"}


def test_candidates_go_from_most_specific_prefix_to_asn_to_domain(index):
    source = {"ip": "198.51.100.70", "asn": 64500, "fqdn": "x.shop.examplehost.example"}
    from threatroute.matchers.ownership import record_address
    found = [(o.id, o.rule) for o in index.candidates(source, record_address(source))]
    assert found == [("reseller", "prefix 198.51.100.64/26"), ("hoster", "prefix 198.51.100.0/25"),
                     ("isp", "prefix 198.51.100.0/24"), ("hoster", "asn 64500"),
                     ("reseller", "domain shop.examplehost.example"),
                     ("hoster", "domain examplehost.example")]
    assert index.next_owner(source, record_address(source), {"reseller"}).rule == \
        "prefix 198.51.100.0/25"
    assert index.next_owner(source, record_address(source), {"reseller", "hoster"}).id == "isp"
    assert index.next_owner(source, record_address(source), {"reseller", "hoster", "isp"}) is None


def test_disowned_addresses_and_names_fall_through_to_the_next_owner():
    recipients = load_registry(REGISTRY + """
  - id: lessor
    name: Lessor
    owns: {prefixes: [203.0.113.0/24], domains: [lessor.example]}
    disowns: {prefixes: [203.0.113.8/29], domains: [rented.lessor.example]}
  - id: tenant
    name: Tenant
    owns: {asns: [64511], domains: [tenant.lessor.example]}
""")
    index = OwnershipIndex.build(recipients)
    assert index.owner_of({"source": {"ip": "203.0.113.9", "asn": 64511}}).id == "tenant"
    assert index.owner_of({"source": {"ip": "203.0.113.9"}}) is None
    assert index.owner_of({"source": {"ip": "203.0.113.20"}}).id == "lessor"
    assert index.owner_of({"source": {"fqdn": "a.rented.lessor.example"}}) is None
    assert index.owner_of({"source": {"fqdn": "x.tenant.lessor.example"}}).id == "tenant"
    assert index.owner_of({"source": {"fqdn": "b.lessor.example"}}).id == "lessor"


def test_disowns_are_validated_like_owns():
    with pytest.raises(Exception) as err:
        load_registry("""
recipients:
  - id: x
    name: X
    disowns: {prefixes: [not-a-prefix], asns: [1]}
""")
    assert "disowns.prefixes[0]" in str(err.value) and "disowns.asns: unknown key" in str(err.value)
