"""The CLI as its peers behave: --version, global options anywhere, sub-actions with their own
help, consistent exit codes, JSON logs, librdkafka's lines demoted and rate-limited."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from threatroute.streams import logs
from threatroute.streams.commands import cli
from threatroute.streams.commands.base import DONE, ERROR, REFUSED

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "deploy" / "demo" / "indicators.jsonl"


def threatroute(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "threatroute.streams.commands.cli", *args],
                          input=stdin, capture_output=True, timeout=60, check=False)


def parse(*argv: str):
    return cli.build_parser().parse_args(argv)


def subcommand_paths(parser=None, prefix=()):
    """Every runnable command path, e.g. ("broker", "start"), read from the parser itself."""
    import argparse

    parser = parser or cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subcommand_paths(sub, (*prefix, name))
            return
    yield prefix


def test_version_names_the_package_and_the_kafka_client():
    result = threatroute("--version")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("threatroute ") and b"librdkafka" in result.stdout


def test_top_level_help_says_what_the_tool_does_and_the_exit_codes():
    text = cli.build_parser().format_help()
    assert "Route threat indicators to the hosters and CERTs" in text
    assert "exit codes" in text and "0  done" in text and "2  usage error" in text


@pytest.mark.parametrize("path", list(subcommand_paths()), ids=" ".join)
def test_global_options_before_or_after_every_subcommand(path):
    extra = {("ingest",): ["jsonl", "-"], ("run",): ["all"], ("tail",): ["r"],
             ("feedback",): ["a", "remediated"], ("recipients", "import"): ["f"],
             ("recipients", "show"): ["r"], ("recipients", "provision"): ["r", "--out", "f"],
             ("recipients", "revoke"): ["r"], ("recipients", "forget"): ["r"],
             ("recipients", "token"): ["r", "--out", "f"],
             ("corrections", "accept"): ["c"], ("corrections", "reject"): ["c"],
             ("demo", "world"): ["--out", "d"], ("demo", "round-two"): ["--out", "d"],
             ("demo", "answer"): ["--out", "d"]}.get(path, [])
    options = ["--config", "c.toml", "--bootstrap", "h:1", "--log-format", "json",
               "--log-level", "warning"]
    before, after = parse(*options, *path, *extra), parse(*path, *extra, *options)
    for args in (before, after):
        assert (args.config, args.bootstrap, args.log_format, args.log_level) == (
            "c.toml", "h:1", "json", "warning")
        assert callable(args.handler)
    defaults = parse(*path, *extra)
    assert (defaults.config, defaults.bootstrap, defaults.log_format, defaults.log_level) == (
        None, None, "text", "info")


def test_options_given_on_both_sides_the_later_wins():
    assert parse("--bootstrap", "a:1", "tail", "r", "--bootstrap", "b:2").bootstrap == "b:2"
    assert parse("-v", "tail", "r").log_level == "debug"


def test_sub_actions_are_subcommands_with_their_own_help():
    paths = set(subcommand_paths())
    assert {("broker", "start"), ("broker", "stop"), ("broker", "status"), ("topics", "create"),
            ("recipients", "import"), ("recipients", "list"), ("recipients", "show"),
            ("data", "build"), ("data", "fetch-asn"), ("data", "fetch-geo")} <= paths
    result = threatroute("recipients", "show", "--help")
    assert result.returncode == 0 and b"usage: threatroute recipients show" in result.stdout


def test_usage_errors_exit_2():
    assert threatroute("broker").returncode == ERROR              # action missing
    assert threatroute("broker", "restart").returncode == ERROR   # no such action
    assert threatroute("--log-format", "xml", "explain").returncode == ERROR


def test_a_missing_file_or_config_is_an_environment_error():
    result = threatroute("ingest", "jsonl", "/nonexistent/feed.jsonl", "--dry-run")
    assert result.returncode == ERROR and result.stderr.count(b"\n") == 1
    result = threatroute("--config", "/nonexistent.toml", "explain", stdin=b"")
    assert result.returncode == ERROR and b"configuration file not found" in result.stderr


def test_refused_input_exits_1_for_ingest_and_explain_alike():
    bad = b'{"source": {"ip": "not-an-ip"}, "classification": {"type": "scanner"}}\n'
    assert threatroute("ingest", "jsonl", "-", "--dry-run", stdin=bad).returncode == REFUSED
    assert threatroute("explain", stdin=bad).returncode == REFUSED
    assert threatroute("ingest", "jsonl", "-", "--dry-run", stdin=b"").returncode == DONE
    # the demo has one invalid line on purpose: both commands say so the same way
    demo = DEMO.read_bytes()
    assert threatroute("ingest", "jsonl", str(DEMO), "--dry-run").returncode == REFUSED
    assert threatroute("explain", stdin=demo).returncode == REFUSED
    good = b"".join(line for line in demo.splitlines(keepends=True) if b"not-an-ip" not in line)
    assert threatroute("explain", stdin=good).returncode == DONE


def test_json_log_format_writes_one_object_per_line():
    out = io.StringIO()
    logs.configure("info", "json", out)
    try:
        logging.getLogger("threatroute.test").warning("disk %s full", "/tmp")
        line = json.loads(out.getvalue())
        assert line["level"] == "warning" and line["message"] == "disk /tmp full"
        assert line["logger"] == "threatroute.test" and line["time"].endswith("Z")
    finally:
        logs.configure()


def test_rate_limit_keeps_one_line_per_interval_and_counts_the_rest():
    now = [0.0]
    limit = logs.RateLimit(interval=60, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("x", logging.WARNING, __file__, 1, message, None, None)

    assert limit.filter(record("connect to 10.0.0.1:9092 failed after 3ms"))
    assert not limit.filter(record("connect to 10.0.0.1:9092 failed after 7ms"))
    assert not limit.filter(record("connect to 10.0.0.1:9092 failed after 9ms"))
    assert limit.filter(record("something else"))
    now[0] = 61.0
    again = record("connect to 10.0.0.1:9092 failed after 1ms")
    assert limit.filter(again) and "2 more like this held back" in again.getMessage()


def test_a_line_that_ends_an_outage_is_never_held_back():
    limit = logs.RateLimit(interval=60, clock=lambda: 0.0)

    def record(message: str, **extra: object) -> logging.LogRecord:
        made = logging.LogRecord("x", logging.INFO, __file__, 1, message, None, None)
        made.__dict__.update(extra)
        return made

    back = "publish loop 2: Kafka answers again after 21.6 s (3 failures); carrying on"
    assert limit.filter(record(back, **logs.NOT_RATE_LIMITED))
    assert limit.filter(record(back.replace("2", "5"), **logs.NOT_RATE_LIMITED))
    assert limit.filter(record("plain"))
    assert not limit.filter(record("plain"))  # the others are still limited


def test_recovery_says_every_return_of_kafka():
    from threatroute.streams.runtime.faults import Fault
    from threatroute.streams.runtime.loop import Recovery

    logs.configure()  # the rate limit in place, as in a worker
    now = [0.0]
    recovery = Recovery("publish loop 1", clock=lambda: now[0])
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda rec: seen.append(rec.getMessage())  # type: ignore[method-assign]
    for rate_limit in logging.getLogger().handlers[0].filters:
        handler.addFilter(rate_limit)
    logging.getLogger("threatroute.streams.runtime.loop").addHandler(handler)
    try:
        for second in (0.0, 30.0):  # two outages within the rate limit's minute
            now[0] = second
            recovery.failed(Fault("_TRANSPORT"), in_flight=True)
            now[0] = second + 5
            recovery.healthy()
    finally:
        logging.getLogger("threatroute.streams.runtime.loop").removeHandler(handler)
    assert sum("Kafka answers again" in line for line in seen) == 2, seen


def test_librdkafka_transport_failures_are_demoted_and_remembered():
    seen = logs.LibrdkafkaFilter()
    text = ("[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 "
            "failed: Connection refused (after 0ms in state CONNECT)")
    record = logging.LogRecord(logs.LIBRDKAFKA, logging.ERROR, __file__, 1, "%s [%s] %s",
                               ("FAIL", "rdkafka#consumer-1", text), None)
    assert seen.filter(record) and record.levelno == logging.DEBUG
    assert seen.last_transport_failure == "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    other = logging.LogRecord(logs.LIBRDKAFKA, logging.ERROR, __file__, 1, "%s [%s] %s",
                              ("TXNERR", "rdkafka#producer-1", "Fatal: fenced"), None)
    assert seen.filter(other) and other.levelno == logging.ERROR


def test_every_command_module_registers_through_one_list():
    names = {path[0] for path in subcommand_paths()}
    assert {"broker", "topics", "ingest", "run", "recipients", "explain", "tail", "feedback",
            "data"} <= names
    assert len(cli.COMMANDS) == len(set(cli.COMMANDS))
