"""The tests' port helper keeps servers out of the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.ports import _broker_block, _ephemeral_low, bindable, free_port


def test_ports_come_from_below_the_ephemeral_range_and_outside_the_broker_block() -> None:
    ports = [free_port() for _ in range(50)]
    assert all(1024 < port < _ephemeral_low() for port in ports)
    assert not set(ports) & set(_broker_block())


def test_a_block_is_consecutive_and_free_for_udp_too() -> None:
    base = free_port(count=6, udp=True)
    assert all(bindable(port, udp=True) for port in range(base, base + 6))


def test_a_listened_port_is_not_bindable() -> None:
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert not bindable(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
        assert bindable(port)
        assert not bindable(port, udp=True)
