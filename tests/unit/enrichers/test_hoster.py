"""Hoster enrichment: extra.owner is set from the registry, and only from it."""

from __future__ import annotations

import copy

from threatroute.enrichers.hoster import enrich_owner
from threatroute.matchers.ownership import OwnershipIndex
from threatroute.registry import load_registry

INDEX = OwnershipIndex.build(load_registry("""
recipients:
  - id: examplehost
    name: Example Hosting Ltd
    owns: {prefixes: [192.0.2.0/24], asns: [64500], domains: [examplehost.example]}
"""))


def record(**source):
    return {"classification": {"type": "phishing"}, "source": source, "tlp": "GREEN"}


def test_sets_owner_with_rule():
    original = record(ip="192.0.2.9")
    enriched = enrich_owner(original, INDEX)
    assert enriched["extra"]["owner"] == {
        "id": "examplehost", "name": "Example Hosting Ltd", "rule": "prefix 192.0.2.0/24"}
    assert "extra" not in original  # input untouched


def test_keeps_other_extra_fields():
    original = record(fqdn="x.examplehost.example")
    original["extra"] = {"dns": {"a": ["192.0.2.1"]}}
    before = copy.deepcopy(original)
    enriched = enrich_owner(original, INDEX)
    assert enriched["extra"]["dns"] == {"a": ["192.0.2.1"]}
    assert enriched["extra"]["owner"]["rule"] == "domain examplehost.example"
    assert original == before


def test_no_owner_leaves_none():
    enriched = enrich_owner(record(ip="203.0.113.1"), INDEX)
    assert "extra" not in enriched


def test_owner_from_a_feed_is_discarded():
    forged = record(ip="203.0.113.1")
    forged["extra"] = {"owner": {"id": "examplehost", "name": "x", "rule": "forged"}, "n": 1}
    enriched = enrich_owner(forged, INDEX)
    assert enriched["extra"] == {"n": 1}
    forged["source"] = {"asn": 64500}
    assert enrich_owner(forged, INDEX)["extra"]["owner"]["rule"] == "asn 64500"
