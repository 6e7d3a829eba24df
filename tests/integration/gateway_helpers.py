"""A small world for the gateway and delivery tests: this run's recipients (one per delivery
format), the real pipeline routing indicators to them, gateway tokens, and the gateway itself
as a subprocess of the real CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml

from tests.integration.conftest import ROOT, threatroute
from tests.integration.kafka_helpers import end_offsets, read_since, wait_drained
from tests.ports import free_port
from threatroute import topics
from threatroute.enrichers.databuild import build_demo_data

PACKAGED_CONFIG = ROOT / "deploy" / "threatroute.toml"


def config_file(path: Path, **sections: dict[str, object]) -> Path:
    """The packaged configuration with some [section] keys replaced."""
    text = PACKAGED_CONFIG.read_text()
    for section, values in sections.items():
        for key, value in values.items():
            rendered = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
            pattern = rf"(\[{section}\][^\[]*?^){key} = [^\n]*"
            text, found = re.subn(pattern, rf"\g<1>{key} = {rendered}", text, count=1,
                                  flags=re.MULTILINE | re.DOTALL)
            assert found, f"[{section}] {key} not in {PACKAGED_CONFIG}"
    path.write_text(text)
    return path


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "threatroute.streams.commands.cli", *args],
                            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, log: Path | None = None) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode in (0, -signal.SIGTERM), \
        (log.read_text()[-3000:] if log else process.returncode)


@dataclass
class World:
    run: str
    env: dict[str, str]
    recipients: list[dict]
    alerts: dict[str, list[dict]] = field(default_factory=dict)  # ledger records per recipient
    tokens: dict[str, str] = field(default_factory=dict)

    def rid(self, name: str) -> str:
        return f"{name}-{self.run}"


def recipients(run: str, delivery: dict[str, dict] | None = None) -> list[dict]:
    """A (json), B (csv), C (stix); each owns one documentation range."""
    out = [
        {"id": f"ga-{run}", "name": "Gateway host A", "contacts": [f"abuse@a-{run}.example"],
         "owns": {"prefixes": ["192.0.2.0/24"]}, "tlp_clearance": "amber", "format": "json"},
        {"id": f"gb-{run}", "name": "Gateway host B", "contacts": [f"abuse@b-{run}.example"],
         "owns": {"prefixes": ["198.51.100.0/24"]}, "format": "csv"},
        {"id": f"gc-{run}", "name": "Gateway host C", "contacts": [f"abuse@c-{run}.example"],
         "owns": {"prefixes": ["203.0.113.0/24"]}, "format": "stix"},
    ]
    for entry in out:
        extra = (delivery or {}).get(entry["id"].split("-")[0])
        if extra:
            entry["delivery"] = extra
    return out


def indicators(run: str, counts: dict[str, int]) -> list[dict]:
    prefix = {"ga": "192.0.2", "gb": "198.51.100", "gc": "203.0.113"}
    kinds = ["phishing", "c2-server", "scanner", "infected-system"]
    return [{"classification": {"type": kinds[i % 4]}, "source": {"ip": f"{prefix[name]}.{i + 1}"},
             "tlp": "GREEN", "feed": {"name": f"gw-feed-{run}", "accuracy": 90}}
            for name, count in counts.items() for i in range(count)]


def route(kafka_env: dict[str, str], bootstrap: str, tmp: Path, counts: dict[str, int],
          delivery: dict[str, dict] | None = None, run_feedback: bool = False,
          ) -> tuple[World, subprocess.Popen, Path]:
    """Import this run's recipients, ingest and route indicators with `run all` (left
    running, for feedback), return the world once every alert is on the ledger and on its
    recipient's topic (the publish stage's second hop)."""
    data = build_demo_data(tmp / "data")
    run_all = ["run", "all", "--metrics-port", str(free_port()), "--ipasn", str(data.ipasn),
               "--asnames", str(data.asnames), "--geoip", str(data.mmdb)]
    # records earlier tests left part-way through the pipeline go through first, before this
    # run's recipients exist, so they can neither hold up the drain nor land on them
    drain = start(run_all, kafka_env, tmp / "drain.log")
    try:
        wait_drained(bootstrap)
    finally:
        stop(drain)
    run = uuid.uuid4().hex[:6]
    world = World(run, dict(kafka_env), recipients(run, delivery))
    (tmp / "registry.yaml").write_text(yaml.safe_dump({"recipients": world.recipients}))
    threatroute("recipients", "import", str(tmp / "registry.yaml"), env=kafka_env)
    log = tmp / "pipeline.log"
    pipeline = start(run_all, kafka_env, log)
    since = end_offsets(bootstrap, topics.LEDGER)
    path = tmp / "indicators.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in indicators(run, counts)))
    threatroute("ingest", "jsonl", str(path), env=kafka_env)
    expected, deadline = sum(counts.values()), time.monotonic() + 120
    latest: dict[str, dict] = {}
    while len(latest) < expected and time.monotonic() < deadline:
        for _, value in read_since(bootstrap, topics.LEDGER, since, idle=1.0):
            if value["recipient"].endswith(run):
                latest[value["alert_id"]] = value
    assert len(latest) == expected, (len(latest), log.read_text()[-2000:])
    for alert in latest.values():
        world.alerts.setdefault(alert["recipient"], []).append(alert)
    published: dict[str, int] = {}
    while published != {r: len(a) for r, a in world.alerts.items()} and \
            time.monotonic() < deadline:
        published = {rid: len(read_since(bootstrap, topics.alerts_topic(rid), None, idle=0.5,
                                         raw=True)) for rid in world.alerts}
    assert published == {r: len(a) for r, a in world.alerts.items()}, (
        published, log.read_text()[-2000:])
    return world, pipeline, log


def issue_tokens(world: World, tmp: Path) -> None:
    for entry in world.recipients:
        out = tmp / f"{entry['id']}.token"
        result = threatroute("recipients", "token", entry["id"], "--out", str(out), env=world.env)
        token = out.read_text().strip()
        assert out.stat().st_mode & 0o777 == 0o600 and token
        assert token.encode() not in result.stdout + result.stderr
        world.tokens[entry["id"]] = token


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen
    log: Path
    metrics_port: int

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text


def start_gateway(env: dict[str, str], tmp: Path, *, scheme: str = "http",
                  tls: tuple[Path, Path] | None = None, verify: object = True,
                  **gateway_settings: object) -> Gateway:
    port, metrics_port = free_port(), free_port()
    config = config_file(tmp / f"gateway-{port}.toml",
                         gateway={"refresh_seconds": 0.2, **gateway_settings})
    log = tmp / f"gateway-{port}.log"
    args = ["gateway", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--metrics-port", str(metrics_port)]
    if tls:
        args += ["--certfile", str(tls[0]), "--keyfile", str(tls[1])]
    process = start(args, env, log)
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/taxii2/", timeout=2, verify=verify).status_code == 401:
                return Gateway(url, process, log, metrics_port)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(process, log)
    raise AssertionError(f"gateway did not start: {log.read_text()[-3000:]}")


class WebhookEndpoint:
    """A loopback HTTP endpoint for push delivery: `answer(headers, body)` sees each POST and
    returns the status to send. `url` is where to point a recipient's webhook."""

    def __init__(self, answer: Callable[[Message, bytes], int]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status = answer(self.headers, self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
