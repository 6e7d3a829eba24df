"""Push delivery against the real broker and real peers on loopback: an HTTP receiver that
checks every webhook signature, one that fails N times (exactly the expected dead letters, no
alert lost once it recovers), and aiosmtpd receiving the e-mail digests over STARTTLS with
authentication."""

from __future__ import annotations

import email
import email.policy
import json
import ssl
import subprocess
import time
from email.message import EmailMessage, Message

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.integration.conftest import ROOT
from tests.integration.gateway_helpers import (
    WebhookEndpoint,
    config_file,
    issue_tokens,
    metric,
    route,
    start,
    start_gateway,
    stop,
)
from tests.integration.kafka_helpers import end_offsets, read_since
from tests.integration.prometheus_helpers import dashboard_queries, start_prometheus
from tests.ports import free_port
from threatroute import topics
from threatroute.deadletter import original_bytes
from threatroute.matchers.received import read_alert
from threatroute.streams.delivery.webhook import SIGNATURE_HEADER, verify

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "operations.json"
FAILURES, ATTEMPTS = 5, 2  # the failing receiver refuses 5 requests; 2 attempts per alert
SMTP_USER, SMTP_PASSWORD = "threatroute", "smtp-pass-for-tests"


class Receiver:
    """A webhook endpoint: records every request and whether its signature was right."""

    def __init__(self, secret: bytes, fail_first: int = 0) -> None:
        self.secret, self.fail_first = secret, fail_first
        self.requests: list[dict] = []
        self.endpoint = WebhookEndpoint(self._answer)
        self.url = self.endpoint.url

    def _answer(self, headers: Message, body: bytes) -> int:
        signed = verify(self.secret, body, headers.get(SIGNATURE_HEADER, ""))
        self.requests.append({"alert_id": headers["X-Threatroute-Alert-Id"], "body": body,
                              "signed": signed})
        failing = len(self.requests) <= self.fail_first
        return 500 if failing or not signed else 204

    def accepted(self) -> list[dict]:
        return [r for i, r in enumerate(self.requests) if i >= self.fail_first and r["signed"]]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        assert session.authenticated and isinstance(session.ssl, dict)  # STARTTLS, then AUTH
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=email.policy.default))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, data) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(), SMTP_PASSWORD.encode())
    return AuthResult(success=ok)


@pytest.fixture
def smtp(tmp_path):
    key, cert = tmp_path / "smtp-key.pem", tmp_path / "smtp-cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, authenticator=authenticator,
                            auth_required=True)
    controller.start()
    yield mailbox, controller.port, cert
    controller.stop()


def test_webhooks_signed_dead_lettered_and_digests_mailed(kafka_env, bootstrap, tmp_path, smtp):
    mailbox, smtp_port, smtp_cert = smtp
    good, failing = Receiver(b"secret-a"), Receiver(b"secret-b", fail_first=FAILURES)
    (tmp_path / "b.secret").write_text("secret-b\n")
    delivery = {
        "ga": {"webhook": {"url": good.url, "secret_env": "GA_HOOK_SECRET"}},
        "gb": {"webhook": {"url": failing.url, "secret_file": str(tmp_path / "b.secret"),
                           "max_attempts": ATTEMPTS, "format": "stix"}},
        "gc": {"email": {"interval_seconds": 2}},
    }
    since_dead = end_offsets(bootstrap, topics.DELIVERY_FAILED)
    world, pipeline, log = route(kafka_env, bootstrap, tmp_path, {"ga": 6, "gb": 4, "gc": 3},
                                 delivery)
    stop(pipeline, log)
    metrics_port = free_port()
    config = config_file(
        tmp_path / "deliver.toml",
        delivery={"backoff_seconds": 0.05},
        smtp={"port": smtp_port, "starttls": True, "cafile": str(smtp_cert),
              "username": SMTP_USER},
        gateway={"public_url": "https://gateway.example"})
    env = {**world.env, "GA_HOOK_SECRET": "secret-a", "THREATROUTE_SMTP_PASSWORD": SMTP_PASSWORD}
    a, b, c = world.rid("ga"), world.rid("gb"), world.rid("gc")
    expected_b = {x["alert_id"] for x in world.alerts[b]}
    # the gateway too, so that the dashboard's delivery row has every path to show
    issue_tokens(world, tmp_path)
    gateway = start_gateway(world.env, tmp_path)
    prometheus = start_prometheus(tmp_path / "prom", [f"127.0.0.1:{metrics_port}",
                                                      f"127.0.0.1:{gateway.metrics_port}"], [])
    deliver_log = tmp_path / "deliver.log"
    deliverer = start(["deliver", "--config", str(config), "--metrics-port", str(metrics_port)],
                      env, deliver_log)
    try:
        with gateway.client(world.tokens[a]) as client:
            assert client.get("/taxii2/alerts/collections/").status_code == 200
            assert client.post(f"/api/v1/alerts/{world.alerts[a][0]['alert_id']}/feedback",
                               json={"status": "acknowledged"}).status_code == 202
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                len(good.requests) >= 6 and len(failing.accepted()) >= 2
                and {x["alert_id"] for x in world.alerts[c]} <= mailed_ids(mailbox)):
            assert deliverer.poll() is None, deliver_log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(15)  # nothing more arrives (no duplicates, no late extras); a few scrapes
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        # every panel of the operations dashboard's delivery row has data
        queries = [(title, expr) for title, expr in dashboard_queries(DASHBOARD)
                   if "threatroute_delivery_" in expr or "threatroute_gateway_" in expr]
        assert len(queries) == 6
        assert [(t, e) for t, e in queries if not prometheus.query(e)] == []
    finally:
        stop(deliverer, deliver_log)
        stop(gateway.process, gateway.log)
        prometheus.stop()

    # A: every alert once, every signature right, the body the alert itself
    assert all(r["signed"] for r in good.requests)
    assert sorted(r["alert_id"] for r in good.requests) == sorted(
        x["alert_id"] for x in world.alerts[a])
    assert {json.loads(r["body"])["alert_id"] for r in good.requests} == {
        r["alert_id"] for r in good.requests}

    # B: FAILURES refusals at ATTEMPTS per alert: exactly FAILURES // ATTEMPTS dead letters,
    # and every other alert delivered after the receiver recovered: nothing lost
    assert all(r["signed"] for r in failing.requests)
    assert len(failing.requests) == FAILURES + len(expected_b) - FAILURES // ATTEMPTS
    dead = [v for _, v in read_since(bootstrap, topics.DELIVERY_FAILED, since_dead, idle=2.0)
            if v["stage"] == f"webhook.{b}"]
    assert len(dead) == FAILURES // ATTEMPTS
    assert all(f"HTTP 500 on each of {ATTEMPTS} attempts" in d["reason"] for d in dead)
    dead_ids = {read_alert(original_bytes(d), None, 0).alert_id for d in dead}
    delivered = {r["alert_id"] for r in failing.accepted()}
    assert dead_ids | delivered == expected_b and not dead_ids & delivered
    assert all(json.loads(r["body"])["type"] == "bundle" for r in failing.requests)  # STIX

    # C: digests over STARTTLS + AUTH with every alert, a link each, and the CSV
    assert {x["alert_id"] for x in world.alerts[c]} == mailed_ids(mailbox)
    for message in mailbox.messages:
        text = message.get_body(("plain",)).get_content()
        assert "https://gateway.example/desk/alerts/" in text
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_filename() == "alerts.csv"
    assert SMTP_PASSWORD not in deliver_log.read_text() and "secret-b" not in deliver_log.read_text()

    # metrics for every push path
    assert metric(scrape, "threatroute_delivery_sent_total", path="webhook", recipient=a) == 6
    assert metric(scrape, "threatroute_delivery_failed_total", path="webhook",
                  recipient=b) == FAILURES // ATTEMPTS
    assert metric(scrape, "threatroute_delivery_retried_total", path="webhook",
                  recipient=b) == FAILURES // ATTEMPTS + (FAILURES % ATTEMPTS)
    assert metric(scrape, "threatroute_delivery_sent_total", path="email", recipient=c) == 3
    assert metric(scrape, "threatroute_delivery_latency_seconds_count", path="email") == 3


def mailed_ids(mailbox: Mailbox) -> set[str]:
    ids = set()
    for message in mailbox.messages:
        (attachment,) = list(message.iter_attachments())
        ids |= {row.split(",")[0] for row in attachment.get_content().splitlines()[1:]}
    return ids

