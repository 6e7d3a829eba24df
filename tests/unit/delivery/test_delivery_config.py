"""Registry delivery settings, webhook signatures and the e-mail digest; no broker."""

from __future__ import annotations

import pytest

from threatroute.registry import Recipient, RegistryError, load_registry
from threatroute.streams.delivery.email import compose
from threatroute.streams.delivery.webhook import sign, verify

ALERT = {
    "alert_id": "A" * 22, "recipient": "hooked", "indicator_key": "k" * 32,
    "notification": "new", "reasons": ["owner (prefix 192.0.2.0/24)"],
    "indicator": {"classification": {"type": "phishing"}, "source": {"ip": "192.0.2.5"}},
    "first_seen": "2026-01-02T03:04:05+00:00", "last_seen": "2026-01-02T03:04:05+00:00",
    "count": 1, "recurrence": False, "sent_at": "2026-01-02T03:04:05+00:00",
}
BASE = """
recipients:
  - id: hooked
    name: Hooked Ltd
    contacts: [abuse@hooked.example, "https://hooked.example/abuse"]
    delivery:
{delivery}
"""


def registry(delivery: str) -> list[Recipient]:
    return load_registry(BASE.format(delivery=delivery))


def test_delivery_settings_round_trip_through_the_topic_value():
    (r,) = registry("""      webhook: {url: "https://hooks.example/tr", format: stix,
                 secret_env: HOOKED_SECRET, max_attempts: 3, timeout: 5}
      email: {interval_seconds: 600}""")
    assert r.delivery and r.delivery.webhook and r.delivery.email
    assert r.delivery.webhook.max_attempts == 3 and r.delivery.webhook.format == "stix"
    assert r.delivery.email.to == () and r.emails == ("abuse@hooked.example",)
    assert Recipient.from_json(r.to_json()) == r


@pytest.mark.parametrize("delivery, error", [
    ('      webhook: {url: "https://h.example/", secret: "s3cret"}', "webhook.secret"),
    ('      webhook: {url: "https://h.example/"}', "secret_file or secret_env"),
    ('      webhook: {url: "ftp://h.example/", secret_env: X}', "webhook.url"),
    ('      webhook: {url: "https://h.example/", secret_env: X, format: csv}', "webhook.format"),
    ('      webhook: {url: "https://h.example/", secret_env: X, max_attempts: 0}',
     "webhook.max_attempts"),
    ('      email: {to: [not-an-address]}', "email.to"),
    ('      email: {interval_seconds: 0}', "email.interval_seconds"),
    ('      sms: {}', "delivery.sms"),
])
def test_bad_delivery_settings_are_named(delivery, error):
    with pytest.raises(RegistryError) as caught:
        registry(delivery)
    assert any(error in message for message in caught.value.errors), caught.value.errors
    assert "s3cret" not in str(caught.value)


def test_signature_is_hmac_sha256_over_the_exact_body():
    body = b'{"alert_id": "x"}'
    signature = sign(b"key", body)
    assert signature.startswith("sha256=") and verify(b"key", body, signature)
    assert not verify(b"key", body + b" ", signature) and not verify(b"other", body, signature)


def test_digest_has_readable_text_with_links_and_a_csv_attachment():
    (r,) = registry('      email: {interval_seconds: 60}')
    message = compose(r, r.emails, "tr@localhost", [ALERT, {**ALERT, "alert_id": "B" * 22}],
                      "https://gw.example")
    text = message.get_body(("plain",)).get_content()
    assert "2 new alerts" in message["Subject"]
    assert f"https://gw.example/desk/alerts/{ALERT['alert_id']}" in text and "B" * 22 in text
    (attachment,) = list(message.iter_attachments())
    rows = attachment.get_content().splitlines()
    assert attachment.get_filename() == "alerts.csv" and len(rows) == 3
    assert rows[0].startswith("alert_id,")
