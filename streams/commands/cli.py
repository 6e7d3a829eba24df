"""The `threatroute` command: one entry point, one subcommand per job.

Each command lives in its own module under streams/commands/ and exposes `register(subparsers)`;
COMMANDS lists them (adding a command is one line here). Configuration is read once here into a
frozen Config and passed to the command's handler, whose return value is the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from threatroute.errors import ThreatrouteError
from threatroute.streams import logs
from threatroute.streams.commands.base import DONE, ERROR, HelpFormatter, global_options
from threatroute.streams.config import Config, load_config

# the command modules under threatroute.streams.commands, in the order --help lists them
COMMANDS = ("broker", "ingest", "run", "status", "recipients", "corrections", "explain", "report",
            "tail", "gateway", "deliver", "data", "demo", "bench")

DESCRIPTION = """\
Route threat indicators to the hosters and CERTs who can act on them.

Feeds are parsed into IntelMQ-shaped records, enriched (ASN, geolocation, owning hoster),
matched against a recipient registry and delivered once per recipient on its own Kafka topic
(JSON, STIX 2.1, IntelMQ or CSV); recipients' feedback becomes Prometheus metrics."""

EPILOG = """\
exit codes:
  0  done
  1  done, but some input was refused (invalid feed items or lines, an unknown id),
     or a check said no (`broker status` when it is not running)
  2  usage error, or the environment failed: configuration, a missing file, Kafka unreachable

environment: THREATROUTE_CONFIG, THREATROUTE_BOOTSTRAP, THREATROUTE_STATE (see README.md)
`threatroute COMMAND --help` describes each command."""

BROKER_CHECK_SECONDS = 10.0  # how long a command waits for an unreachable broker before saying so
log = logging.getLogger("threatroute")


def _version() -> str:
    import confluent_kafka

    try:
        mine = metadata.version("threatroute")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        mine = "unknown"
    return (f"threatroute {mine} (confluent-kafka {confluent_kafka.__version__}, "
            f"librdkafka {confluent_kafka.libversion()[0]})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threatroute", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       title="commands")
    for name in COMMANDS:
        importlib.import_module(f"threatroute.streams.commands.{name}").register(subparsers)
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, bootstrap=args.bootstrap,
                       ipasn=getattr(args, "ipasn", None), asnames=getattr(args, "asnames", None),
                       geoip=getattr(args, "geoip", None),
                       dns_nameserver=getattr(args, "nameserver", None),
                       metrics_port=getattr(args, "metrics_port", None))


def _unreachable(config: Config, reason: str) -> str:
    return (f"Kafka at {config.bootstrap} unreachable: {reason} (is the broker running? "
            "`threatroute broker status`, or give --bootstrap)")


def _check_broker(config: Config) -> None:
    """Fail fast, with the reason, when the broker does not answer (instead of each command's
    own, longer timeout and a less telling error)."""
    from confluent_kafka import KafkaException

    from threatroute.streams.kafka.admin import admin

    client = admin(config)
    try:
        client.list_topics(timeout=BROKER_CHECK_SECONDS)
    except KafkaException as exc:
        client.poll(0)  # serves librdkafka's queued log lines, which name the reason
        reason = logs.librdkafka_filter.last_transport_failure or _kafka_reason(exc)
        raise ThreatrouteError(_unreachable(config, reason)) from None


def _kafka_reason(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else exc
    return str(getattr(error, "str", lambda: str(error))())


def main(argv: Sequence[str] | None = None) -> int:
    from confluent_kafka import KafkaException

    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        config = _config(args)
        if args.kafka(args) if callable(args.kafka) else args.kafka:
            _check_broker(config)
        return int(args.handler(args, config))
    except BrokenPipeError:  # `threatroute ... | head`: the reader left; end quietly like cat
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return DONE
    except (ThreatrouteError, OSError) as exc:  # a missing file is an operator error too
        print(f"threatroute: {exc}", file=sys.stderr)
        return ERROR
    except KafkaException as exc:
        reason = logs.librdkafka_filter.last_transport_failure or _kafka_reason(exc)
        print(f"threatroute: {_unreachable(config, reason)}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
