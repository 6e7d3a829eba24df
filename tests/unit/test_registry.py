"""Registry validation, JSON round-trip and import diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from threatroute.errors import ThreatrouteError
from threatroute.registry import (
    Owns,
    Recipient,
    RegistryError,
    Subscribe,
    diff_registry,
    load_registry,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "recipients.example.yaml"

GOOD = """
recipients:
  - id: examplehost
    name: Example Hosting Ltd
    contacts: [abuse@examplehost.example]
    owns:
      asns: [64500, AS64510]
      prefixes: [192.0.2.0/24, "2001:db8:1::/48"]
      domains: [ExampleHost.Example.]
    subscribe:
      countries: [gb]
      asns: [64501]
    classifications: [phishing, C&C]
    min_confidence: 50
    tlp_clearance: amber
    format: stix
    ticket_queue: abuse-7          # unknown optional key: kept
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(RegistryError) as caught:
        load_registry(text)
    assert isinstance(caught.value, ThreatrouteError)
    return caught.value.errors


def entry(body: str, first: str = "") -> str:
    """A registry with a valid entry 1 (`ok`) and the given entry 2."""
    return f"""
recipients:
  - id: ok
    name: OK
{first}
  - {body}
"""


def test_good_registry_is_canonical():
    (r,) = load_registry(GOOD)
    assert r.id == "examplehost"
    assert r.owns == Owns(asns=(64500, 64510), prefixes=("192.0.2.0/24", "2001:db8:1::/48"),
                          domains=("examplehost.example",))
    assert r.subscribe == Subscribe(countries=("GB",), asns=(64501,))
    assert r.classifications == ("phishing", "c2-server")
    assert r.min_confidence == 50
    assert r.tlp_clearance == "AMBER"
    assert r.format == "stix"
    assert r.extras == {"ticket_queue": "abuse-7"}
    assert r.topic == "alerts.examplehost"


def test_defaults():
    (r,) = load_registry("recipients:\n  - {id: a, name: A}\n")
    assert r.classifications is None
    assert r.min_confidence == 0
    assert r.tlp_clearance == "GREEN"
    assert r.format == "json"
    assert r.owns == Owns() and r.subscribe == Subscribe()


def test_example_registry_loads_cleanly():
    recipients = load_registry(EXAMPLE.read_text())
    assert 5 <= len(recipients) <= 6
    assert any(r.subscribe.countries for r in recipients)
    assert any(r.subscribe.asns for r in recipients)


@pytest.mark.parametrize(("body", "expected"), [
    ("{id: Bad_Id, name: x}", "recipient 'Bad_Id' (entry 2, line 6): id: 'Bad_Id' does not match"),
    ("{id: -x, name: x}", "(entry 2, line 6): id:"),
    ("{id: ledger, name: x}", "id: 'ledger' is reserved: alerts.ledger or feedback.ledger"),
    ("{id: status, name: x}", "id: 'status' is reserved"),
    ("{id: invalid, name: x}", "id: 'invalid' is reserved"),
    ("{name: x}", "recipient <no id> (entry 2, line 6): id: missing"),
    ("{id: x}", "recipient 'x' (entry 2, line 6): name: missing"),
    ("{id: x, name: x, owns: {prefixes: [10.0.0.0/8, 10.0.0.0/33]}}",
     "recipient 'x' (entry 2, line 6): owns.prefixes[1]: not an IP network: '10.0.0.0/33'"),
    ("{id: x, name: x, owns: {prefixes: [192.0.2.1/24]}}",
     "owns.prefixes[0]: host bits set"),
    ("{id: x, name: x, subscribe: {prefixes: ['2001:db8::/129']}}", "subscribe.prefixes[0]:"),
    ("{id: x, name: x, owns: {asns: [64500, 4294967296]}}", "owns.asns[1]: ASN out of range"),
    ("{id: x, name: x, subscribe: {asns: [ASX]}}", "subscribe.asns[0]: expected an integer"),
    ("{id: x, name: x, owns: {domains: [good.example, 'bad domain.example']}}",
     "owns.domains[1]: not a valid domain name"),
    ("{id: x, name: x, owns: {domains: [192.0.2.1]}}", "owns.domains[0]: an IP address"),
    ("{id: x, name: x, tlp_clearance: purple}", "tlp_clearance: unknown TLP"),
    ("{id: x, name: x, classifications: [phishing, phish]}",
     "classifications[1]: unknown classification type 'phish'"),
    ("{id: x, name: x, min_confidence: 101}", "min_confidence: confidence out of range"),
    ("{id: x, name: x, format: xml}", "format: unknown format 'xml'"),
    ("{id: x, name: x, subscribe: {countries: [GBR]}}", "subscribe.countries[0]: not an ISO"),
    ("{id: x, name: x, subscribe: {countries: [NO]}}", "quote country codes"),
    ("{id: x, name: x, owns: {prefix: [10.0.0.0/8]}}", "owns.prefix: unknown key"),
    ("{id: x, name: x, owns: {prefixes: 10.0.0.0/8}}", "owns.prefixes: expected a list"),
    ("{id: x, name: x, contacts: [nobody]}", "contacts[0]: not an email address or"),
])
def test_errors_name_entry_and_field(body, expected):
    errors = errors_of(entry(body))
    assert any(expected in message for message in errors), errors


def test_all_errors_are_collected():
    errors = errors_of(entry("{id: BAD, owns: {asns: [0]}, tlp_clearance: x, format: y}"))
    fields = {message.split(": ")[1] for message in errors}
    assert {"id", "name", "owns.asns[0]", "tlp_clearance", "format"} <= fields


def test_duplicate_id():
    errors = errors_of(entry("{id: ok, name: again}"))
    assert errors == ["recipient 'ok' (entry 2, line 6): id: duplicate id, "
                      "already used by recipient 'ok' (entry 1, line 3)"]


@pytest.mark.parametrize(("owns1", "owns2", "what"), [
    ("{prefixes: [192.0.2.0/24]}", "{prefixes: [192.0.2.0/24]}", "owns.prefixes[0]: 192.0.2.0/24"),
    ("{prefixes: ['2001:db8::/32']}", "{prefixes: ['2001:0db8:0::/32']}",
     "owns.prefixes[0]: 2001:db8::/32"),
    ("{asns: [64500]}", "{asns: [AS64500]}", "owns.asns[0]: 64500"),
    ("{domains: [examplehost.example]}", "{domains: [EXAMPLEHOST.example]}",
     "owns.domains[0]: examplehost.example"),
])
def test_double_ownership_names_both(owns1, owns2, what):
    errors = errors_of(entry(f"{{id: second, name: S, owns: {owns2}}}", f"    owns: {owns1}"))
    assert errors == [f"recipient 'second' (entry 2, line 6): {what} is already owned by "
                      "recipient 'ok' (entry 1, line 3)"]


def test_nested_prefixes_may_have_different_owners():
    text = entry("{id: customer, name: C, owns: {prefixes: [10.1.0.0/16]}}",
                 "    owns: {prefixes: [10.0.0.0/8]}")
    assert [r.id for r in load_registry(text)] == ["ok", "customer"]


@pytest.mark.parametrize("text", ["", "[]", "recipients: 3", "recipients: [\n", "other: []"])
def test_bad_document(text):
    assert len(errors_of(text)) == 1


def test_empty_registry():
    assert load_registry("recipients:\n") == []


def test_json_round_trip_and_unknown_fields():
    (r,) = load_registry(GOOD)
    value = r.to_json()
    assert value["tlp_clearance"] == "amber" and value["min_confidence"] == 50
    assert Recipient.from_json(value) == r
    value["added_later"] = {"x": 1}
    value["owns"]["urls"] = ["http://x.example/"]  # unknown nested key: ignored on the topic
    again = Recipient.from_json(value)
    assert again.extras == {"ticket_queue": "abuse-7", "added_later": {"x": 1}}
    assert again.owns == r.owns
    assert Recipient.from_json(again.to_json()) == again


def test_from_json_validates():
    with pytest.raises(RegistryError, match=r"owns\.prefixes\[0\]: not an IP network"):
        Recipient.from_json({"id": "x", "name": "X", "owns": {"prefixes": ["nope"]}})


def test_diff_registry():
    a, b, c = (Recipient(id=i, name=i.upper()) for i in "abc")
    b2 = Recipient(id="b", name="B", min_confidence=10)
    current = {"a": a, "b": b, "c": c}
    assert diff_registry(current, [a, b, c]) == ([], [])
    d = Recipient(id="d", name="D")
    assert diff_registry(current, [b2, a, d]) == ([b2, d], ["c"])
    assert diff_registry({}, [a]) == ([a], [])
    assert diff_registry(current, []) == ([], ["a", "b", "c"])


@pytest.mark.parametrize(("given", "canonical"), [
    ("192.0.2.0/24", "192.0.2.0/24"), ("192.0.2.7", "192.0.2.7/32"),
    ("2001:DB8:0::/48", "2001:db8::/48"), ("198.51.100[.]0/24", "198.51.100.0/24"),
])
def test_prefixes_are_canonical(given, canonical):
    (r,) = load_registry(f"recipients:\n  - {{id: a, name: A, owns: {{prefixes: ['{given}']}}}}\n")
    assert r.owns.prefixes == (canonical,)


@pytest.mark.parametrize("mapped", ["::ffff:192.0.2.0/120", "::ffff:c000:200/120"])
def test_ipv4_mapped_prefix_is_refused(mapped):
    errors = errors_of(f"recipients:\n  - {{id: a, name: A, owns: {{prefixes: ['{mapped}']}}}}\n")
    assert "IPv4-mapped" in errors[0]


def test_alert_partitions_optional_and_bounded():
    (r,) = load_registry("recipients:\n  - {id: a, name: A}\n")
    assert r.alert_partitions is None and "alert_partitions" not in r.to_json()
    (r,) = load_registry("recipients:\n  - {id: a, name: A, alert_partitions: 3}\n")
    assert r.alert_partitions == 3 and r.extras == {}
    assert Recipient.from_json(r.to_json()) == r
    errors = errors_of("recipients:\n  - {id: a, name: A, alert_partitions: 0}\n")
    assert "alert_partitions: 0 is not between 1 and 64" in errors[0]
