"""Alerts carry what the recipient needs to act, not who the victims were (matchers/privacy.py)."""

from __future__ import annotations

import json

import pytest

from threatroute.errors import InvalidRecord
from threatroute.matchers.formats import csv_row, redacted_json, render
from threatroute.matchers.privacy import (
    DEFAULT,
    MASK,
    AlertContent,
    alert_content,
    mask_url,
    redact_alert,
    redact_indicator,
)
from threatroute.registry import RegistryError, load_registry

PHISH = ("https://login.example-bank.example/secure/verify.php"
         "?email=jane.doe%40corp.example&lang=en&session=9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"
         "&step=2#victim@corp.example")


def _indicator() -> dict:
    return {"classification": {"type": "phishing", "taxonomy": "fraud"},
            "source": {"url": PHISH, "fqdn": "login.example-bank.example", "ip": "192.0.2.7"},
            "destination": {"ip": "198.51.100.23", "account": "jane.doe@corp.example"},
            "event_description": {"url": "https://sandbox.example/report?key=abc"},
            "extra": {"dns": {"a": ["192.0.2.7"]}, "campaign": "c-1"},
            "feed": {"name": "demo", "url": "https://feed.example/list?apikey=zz"},
            "tlp": "AMBER"}


def _alert() -> dict:
    return {"alert_id": "a1", "recipient": "examplehost", "indicator_key": "k",
            "notification": "new", "indicator": _indicator(), "reasons": ["owner"],
            "first_seen": "2026-01-01T00:00:00+00:00", "last_seen": "2026-01-01T00:00:00+00:00",
            "count": 1, "recurrence": False, "sent_at": "2026-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(("url", "expected"), [
    (PHISH, "https://login.example-bank.example/secure/verify.php"
            f"?email={MASK}&lang=en&session={MASK}&step=2#{MASK}"),
    ("http://a.example/x?to=bob@corp.example", f"http://a.example/x?to={MASK}"),
    ("http://a.example/x?e=amFuZS5kb2VAY29ycC5leGFtcGxl", f"http://a.example/x?e={MASK}"),
    ("http://a.example/x?access_token=short", f"http://a.example/x?access_token={MASK}"),
    ("http://a.example/cb#access_token=xyz&state=1", f"http://a.example/cb#{MASK}"),
    ("http://a.example/x?id=42&page=2", "http://a.example/x?id=42&page=2"),
    ("http://a.example/kit/index.php", "http://a.example/kit/index.php"),
    ("http://a.example/x?flag", "http://a.example/x?flag"),
    ("http://a.example/x?%20q=a%26b#top", "http://a.example/x?%20q=a%26b#top"),
])
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_the_default_drops_victims_and_masks_urls_but_keeps_what_the_hoster_needs() -> None:
    indicator = _indicator()
    out = redact_indicator(indicator)
    assert "destination" not in out
    assert "jane.doe" not in json.dumps(out)
    assert out["source"]["url"].startswith("https://login.example-bank.example/secure/verify.php?")
    assert out["source"]["fqdn"] == "login.example-bank.example"
    assert out["source"]["ip"] == "192.0.2.7"
    assert out["event_description"]["url"] == f"https://sandbox.example/report?key={MASK}"
    assert out["feed"]["url"] == "https://feed.example/list?apikey=zz"  # the feed's, not a victim's
    assert out["extra"] == indicator["extra"]
    assert indicator == _indicator(), "the input (the ledger's copy) is not changed"


def test_a_recipient_can_be_given_more_or_less() -> None:
    more = redact_indicator(_indicator(), AlertContent(destination=True, mask_url_secrets=False))
    assert more["destination"]["ip"] == "198.51.100.23"
    assert more["source"]["url"] == PHISH
    indicator = _indicator()
    less = redact_indicator(indicator, AlertContent(omit=("extra.dns", "source.ip", "x.y")))
    assert "dns" not in less["extra"] and "ip" not in less["source"]
    assert less["extra"]["campaign"] == "c-1"
    assert indicator == _indicator(), "only copies of the input's objects are changed"
    assert less["feed"] is indicator["feed"], "what is not changed is shared, not copied"


@pytest.mark.parametrize("content", [DEFAULT, AlertContent(destination=True),
                                     AlertContent(omit=("extra.dns", "source.port"))])
def test_an_alert_rendered_around_its_indicators_json_is_the_same_alert(
        content: AlertContent) -> None:
    """The match stage serialises an indicator once per alert content and embeds it."""
    alert = _alert()
    alert["indicator"]["extra"]["note"] = "caf\u00e9 \u2603"  # not ASCII: kept as it is
    embedded = render(alert, "json", content, redacted_json(alert["indicator"], content))
    assert json.loads(embedded) == json.loads(render(alert, "json", content))
    assert "caf\u00e9".encode() in embedded


def test_json_that_orjson_refuses_is_still_rendered() -> None:
    alert = _alert()
    alert["indicator"]["extra"]["big"] = 2**70  # beyond 64 bits
    assert json.loads(render(alert, "json"))["indicator"]["extra"]["big"] == 2**70
    assert json.loads(render(alert, "json", DEFAULT, redacted_json(alert["indicator"])))[
        "indicator"]["extra"]["big"] == 2**70


@pytest.mark.parametrize("fmt", ["json", "stix", "csv"])
def test_every_format_renders_the_redacted_alert(fmt: str) -> None:
    body = render(_alert(), fmt).decode()
    assert "jane.doe" not in body and "198.51.100.23" not in body
    assert "login.example-bank.example" in body


def test_redact_alert_keeps_the_alert_fields() -> None:
    alert = _alert()
    out = redact_alert(alert)
    assert {k: v for k, v in out.items() if k != "indicator"} == \
        {k: v for k, v in alert.items() if k != "indicator"}
    assert csv_row(out).count(MASK) >= 1


def test_alert_content_is_validated() -> None:
    assert alert_content(None) == DEFAULT
    assert alert_content({"destination": True, "omit": ["extra.dns"]}) == \
        AlertContent(True, True, ("extra.dns",))
    for bad in ({"destination": "yes"}, {"omit": "extra.dns"}, {"everything": True}, [1]):
        with pytest.raises(InvalidRecord):
            alert_content(bad)


def test_the_registry_refuses_a_bad_alert_content_and_keeps_a_good_one() -> None:
    good = load_registry("recipients:\n  - id: h1\n    name: H\n"
                         "    alert_content: {destination: true}\n")
    assert good[0].extras["alert_content"] == {"destination": True}
    with pytest.raises(RegistryError) as refused:
        load_registry("recipients:\n  - id: h1\n    name: H\n    alert_content: {dest: 1}\n")
    assert "alert_content" in str(refused.value)
