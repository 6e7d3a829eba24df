"""`broker start` waits for its ports: a broker stopped a moment ago may still hold them."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from threatroute.streams.kafka.broker import BrokerError, Node, _await_free_ports, port_free


def _listening() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_listened_port_is_not_free_until_closed():
    server = _listening()
    port = server.getsockname()[1]
    assert not port_free(port)
    server.close()
    assert port_free(port)


def test_start_waits_for_a_port_being_released_and_gives_up_on_one_held():
    held, controller = _listening(), _listening()
    node = Node(1, held.getsockname()[1], controller.getsockname()[1], None)  # type: ignore[arg-type]
    controller.close()
    threading.Timer(0.8, held.close).start()
    began = time.monotonic()
    _await_free_ports(node, 10)
    assert 0.5 < time.monotonic() - began < 5
    kept = _listening()
    try:
        with pytest.raises(BrokerError, match=str(kept.getsockname()[1])):
            _await_free_ports(Node(1, kept.getsockname()[1], node.controller_port, None),  # type: ignore[arg-type]
                              1)
    finally:
        kept.close()
