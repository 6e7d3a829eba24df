"""Free loopback ports for the servers a test starts (brokers, gateways, SMTP, dnsmasq).

A port from bind(("127.0.0.1", 0)) is an ephemeral one: between our close and the server's
bind, the kernel may hand it to any outgoing connection of a busy suite, and the server then
cannot bind (dnsmasq exited with 2 in CI, stop 18). So ports come from below the kernel's
ephemeral range instead, where only listeners are, and clear of the run's broker block at
THREATROUTE_TEST_PORT."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000
BROKER_BLOCK = 100  # TEST_PORT + 0 .. + 99 belong to the run's own brokers
_pick = random.SystemRandom()  # unaffected by tests that seed `random`


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _broker_block() -> range:
    start = int(os.environ.get("THREATROUTE_TEST_PORT", "19092"))
    return range(start, start + BROKER_BLOCK)


def bindable(port: int, *, udp: bool = False) -> bool:
    """Whether a TCP listener (and, with udp, a UDP socket) could bind `port` on loopback now.
    Stricter than `broker.port_free`, on purpose: no SO_REUSEADDR, so a port with connections
    still in TIME_WAIT counts as taken, since not every server a test starts sets it."""
    kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(*, udp: bool = False, count: int = 1) -> int:
    """A free loopback port (the first of `count` consecutive free ones) outside the ephemeral
    range; udp asks for it to be free for UDP as well (dnsmasq binds both)."""
    high = _ephemeral_low() - count
    if high <= LOWEST:
        raise AssertionError(f"ephemeral ports start at {high + count}: no listening range left")
    taken = _broker_block()
    for _ in range(1000):
        base = _pick.randrange(LOWEST, high)
        block = range(base, base + count)
        if any(port in taken for port in block):
            continue
        if all(bindable(port, udp=udp) for port in block):
            return base
    raise AssertionError(f"no {count} consecutive free loopback ports in {LOWEST}..{high}")
