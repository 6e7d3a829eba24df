"""The real CLI against a closed loopback port: one clear error line and exit code 2, not
librdkafka's hundreds of retry lines (no broker fixture: nothing should answer)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

COMMANDS = [("recipients", "list"), ("ingest", "jsonl", "deploy/demo/indicators.jsonl"),
            ("topics", "create")]


def closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("command", "log_format"),
                         [(COMMANDS[0], "text"), (COMMANDS[1], "text"), (COMMANDS[2], "json")],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_unreachable_broker_gives_one_error_line_and_exit_2(command, log_format):
    port = closed_port()
    result = subprocess.run(
        [sys.executable, "-m", "threatroute.streams.commands.cli", *command,
         "--bootstrap", f"127.0.0.1:{port}", "--log-format", log_format],
        capture_output=True, timeout=120, check=False)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, lines[:5]
    assert f"127.0.0.1:{port}" in lines[0] and "Connection refused" in lines[0]
    assert result.stdout == b""
