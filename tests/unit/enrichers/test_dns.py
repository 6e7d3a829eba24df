"""Resolver and enrich_dns against a real dnsmasq on loopback."""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from tests.ports import free_port
from threatroute.enrichers.dns import DnsAnswer, Resolver, TtlCache, enrich_dns

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
RECORDS = [
    "--host-record=web.test,192.0.2.10",
    "--host-record=dual.test,192.0.2.11,2001:db8::11",
    "--host-record=six.test,2001:db8::6",
    *(f"--host-record=n{i}.test,192.0.2.{100 + i}" for i in range(12)),
]


# dnsmasq exits with 2 when it cannot bind its port (EC_BADNET in dnsmasq.h).
DNSMASQ_CANNOT_BIND = 2
START_ATTEMPTS = 5


class PortTaken(RuntimeError):
    """dnsmasq lost its port to another process between our probe and its bind."""


def _wait_until_answering(port: int, process: subprocess.Popen) -> None:
    probe = dns.resolver.Resolver(configure=False)
    probe.nameservers, probe.port, probe.lifetime = ["127.0.0.1"], port, 0.2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() == DNSMASQ_CANNOT_BIND:
            raise PortTaken(f"port {port}")
        if process.poll() is not None:
            raise RuntimeError(f"dnsmasq exited with {process.returncode}")
        try:
            probe.resolve("web.test.", "A", search=False)
            return
        except dns.exception.DNSException:
            time.sleep(0.05)
    raise RuntimeError("dnsmasq did not answer within 10 s")


@pytest.fixture(scope="module")
def start_dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], tuple]]:
    """Start a dnsmasq on a free loopback port: returns (port, stop)."""
    if not Path(DNSMASQ).exists():
        pytest.skip("dnsmasq not installed (Debian package dnsmasq-base)")
    log_dir = tmp_path_factory.mktemp("dnsmasq")
    processes: list[subprocess.Popen] = []

    def start() -> tuple[int, Callable[[], None]]:
        for _attempt in range(START_ATTEMPTS - 1):
            try:
                return start_once()
            except PortTaken:
                continue  # the port is still racy after the probe: take another
        return start_once()

    def start_once() -> tuple[int, Callable[[], None]]:
        port = free_port(udp=True)  # dnsmasq binds UDP and TCP
        log = open(log_dir / f"{port}.log", "w")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", f"--port={port}", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
             "--user=root", "--pid-file=", "--local=/test/", "--local-ttl=300",
             "--log-facility=-", *RECORDS],
            stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(5)
            log.close()

        try:
            _wait_until_answering(port, process)
        except PortTaken:
            log.close()
            raise
        return port, stop

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(5)


@pytest.fixture(scope="module")
def dnsmasq_port(start_dnsmasq) -> int:
    port, _stop = start_dnsmasq()
    return port


@pytest.fixture
def resolver(dnsmasq_port: int) -> Iterator[Resolver]:
    with Resolver("127.0.0.1", dnsmasq_port, timeout=2, concurrency=4) as res:
        yield res


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback UDP port that receives queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _record(**source: object) -> dict:
    return {"classification": {"type": "phishing"}, "source": dict(source)}


def test_a_and_aaaa(resolver: Resolver) -> None:
    answers = resolver.resolve_many(["dual.test", "web.test", "six.test"])
    assert answers["dual.test"].a == ("192.0.2.11",)
    assert answers["dual.test"].aaaa == ("2001:db8::11",)
    assert answers["dual.test"].ttl == 300
    assert (answers["web.test"].a, answers["web.test"].aaaa) == (("192.0.2.10",), ())
    assert answers["six.test"].address == "2001:db8::6"


def test_enrich_prefers_a_and_records_both(resolver: Resolver) -> None:
    records = [_record(fqdn="dual.test", url="http://dual.test/x"), _record(fqdn="six.test")]
    before = copy.deepcopy(records)
    out = enrich_dns(records, resolver)
    assert records == before
    assert out[0]["source"]["ip"] == "192.0.2.11"
    assert out[0]["extra"]["dns"] == {"name": "dual.test", "a": ["192.0.2.11"],
                                      "aaaa": ["2001:db8::11"]}
    assert out[1]["source"]["ip"] == "2001:db8::6"


def test_nxdomain_recorded_and_record_untouched(resolver: Resolver) -> None:
    record = _record(fqdn="missing.test")
    record["extra"] = {"note": "kept"}
    (out,) = enrich_dns([record], resolver)
    assert out["source"] == record["source"]
    assert out["extra"] == {"note": "kept", "dns": {"name": "missing.test", "error": "nxdomain"}}


def test_refused_recorded(resolver: Resolver) -> None:
    # dnsmasq has no upstream, so a name outside .test is refused
    assert resolver.resolve("example.com").error == "refused"


def test_timeout_recorded(silent_port: int) -> None:
    with Resolver("127.0.0.1", silent_port, timeout=0.3) as res:
        started = time.monotonic()
        (out,) = enrich_dns([_record(fqdn="web.test")], res)
        assert time.monotonic() - started < 2
    assert out["extra"]["dns"] == {"name": "web.test", "error": "timeout"}
    assert "ip" not in out["source"]
    assert len(res.cache) == 0  # transient failures are not cached


def test_cache_answers_when_server_gone(start_dnsmasq) -> None:
    port, stop = start_dnsmasq()
    with Resolver("127.0.0.1", port, timeout=0.3) as res:
        first = res.resolve_many(["web.test", "missing.test"])
        sent = res.queries
        stop()
        again = res.resolve_many(["web.test", "missing.test"])
        assert again == first
        assert res.queries == sent
        assert again["missing.test"].error == "nxdomain"  # negative answers are cached too


def test_ttl_expiry_queries_again(dnsmasq_port: int) -> None:
    now = [0.0]
    with Resolver("127.0.0.1", dnsmasq_port, clock=lambda: now[0]) as res:
        res.resolve("web.test")
        sent = res.queries
        now[0] = 299
        res.resolve("web.test")
        assert res.queries == sent
        now[0] = 301
        res.resolve("web.test")
        assert res.queries == sent + 2  # A and AAAA again


def test_duplicates_in_batch_queried_once(resolver: Resolver) -> None:
    out = enrich_dns([_record(fqdn="web.test")] * 5, resolver)
    assert resolver.queries == 2
    assert all(r["source"]["ip"] == "192.0.2.10" for r in out)


def test_concurrency_limit_respected(dnsmasq_port: int) -> None:
    limit, in_flight, peak = 3, [0], [0]
    lock = threading.Lock()
    with Resolver("127.0.0.1", dnsmasq_port, concurrency=limit) as res:
        real = res._resolver.resolve

        def counting(*args, **kwargs):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                time.sleep(0.05)  # hold the slot so queries overlap
                return real(*args, **kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

        res._resolver.resolve = counting
        answers = res.resolve_many([f"n{i}.test" for i in range(12)])
    assert peak[0] == limit
    assert answers["n7.test"].a == ("192.0.2.107",)


def test_records_that_need_no_lookup_pass_through(resolver: Resolver) -> None:
    records = [_record(ip="192.0.2.1", fqdn="web.test"), _record(asn=64500),
               {"classification": {"type": "spam"}}]
    out = enrich_dns(records, resolver)
    assert all(a is b for a, b in zip(out, records, strict=True))
    assert resolver.queries == 0


def test_never_raises_even_when_closed(dnsmasq_port: int) -> None:
    res = Resolver("127.0.0.1", dnsmasq_port)
    res.close()
    (out,) = enrich_dns([_record(fqdn="web.test")], res)
    assert out["extra"]["dns"] == {"name": "web.test", "error": "error"}


def test_cache_is_bounded_lru() -> None:
    now = [0.0]
    cache = TtlCache(2, clock=lambda: now[0])
    for name in ("a", "b"):
        cache.put(DnsAnswer(name, a=("192.0.2.1",), ttl=10))
    cache.get("a")  # a is now the most recent
    cache.put(DnsAnswer("c", a=("192.0.2.3",), ttl=10))
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    cache.put(DnsAnswer("zero", a=("192.0.2.4",), ttl=0))
    assert cache.get("zero") is None  # TTL 0 means do not cache
    now[0] = 10
    assert cache.get("a") is None


def test_long_answers_are_capped_in_extra() -> None:
    answer = DnsAnswer("big.test", a=tuple(f"192.0.2.{i}" for i in range(40)), ttl=60)
    assert len(answer.as_extra()["a"]) == 16
