"""What every subcommand shares: exit codes, global options, and how a command registers.

A command module under `streams/commands/` exposes `register(subparsers)`; `cli.COMMANDS`
lists the modules. `command()` makes a subcommand parser that also accepts the global options
(so `--config`, `--bootstrap`, `--log-format`, `--log-level` work before or after the
subcommand), and `actions()` gives it sub-actions that are real subcommands with their own help.
A handler is `handler(args, config) -> exit code`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threatroute.streams.config import Config

# exit codes, documented in README.md ("Exit codes") and the top-level --help
DONE = 0      # everything was done
REFUSED = 1   # done, but some input was refused (invalid records, unknown id) or a check said no
ERROR = 2     # usage error, or the environment failed (config, missing file, unreachable Kafka)

LOG_LEVELS = ("debug", "info", "warning", "error")
Handler = Callable[[argparse.Namespace, Config], int]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The top-level description and epilog keep their line breaks (the exit-code table)."""


def global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """The options every command takes. Below the top level their defaults are SUPPRESS, so a
    value given before the subcommand is not overwritten by the subcommand's default."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options (before or after the subcommand)")
    group.add_argument("--config", metavar="FILE", default=default(None),
                       help="TOML configuration (default: THREATROUTE_CONFIG, else the "
                            "packaged deploy/threatroute.toml)")
    group.add_argument("--bootstrap", metavar="HOST:PORT", default=default(None),
                       help="Kafka bootstrap servers of an existing cluster "
                            "(default: THREATROUTE_BOOTSTRAP, else the embedded broker)")
    group.add_argument("--log-format", choices=("text", "json"), default=default("text"),
                       help="log lines as text (default) or one JSON object per line")
    group.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower,
                       default=default("info"), help="least severe level logged (default info)")
    group.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="debug",
                       default=argparse.SUPPRESS, help="same as --log-level debug")


def command(subparsers: Any, name: str, *, help: str, description: str | None = None,
            handler: Handler | None = None,
            kafka: bool | Callable[[argparse.Namespace], bool] = False,
            epilog: str | None = None) -> argparse.ArgumentParser:
    """A subcommand (or sub-action) parser with the global options.

    `kafka=True` (or a function of the arguments saying so): the handler needs the broker, so
    the CLI checks it answers first and turns an unreachable broker into one line and exit
    code 2 instead of a long timeout.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description or help, epilog=epilog)
    global_options(parser)
    if handler is not None:
        parser.set_defaults(handler=handler, kafka=kafka)
    return parser


def actions(parser: argparse.ArgumentParser, dest: str = "action") -> Any:
    """Sub-actions of a command (`broker start`), each a subcommand with its own --help."""
    return parser.add_subparsers(dest=dest, required=True, metavar="ACTION",
                                 title="actions")


def data_options(parser: argparse.ArgumentParser) -> None:
    """Enrichment data files, for the commands that enrich (run, explain)."""
    group = parser.add_argument_group("enrichment data")
    group.add_argument("--ipasn", type=Path, help="pyasn IPASN table (v4, v6 or mixed)")
    group.add_argument("--asnames", type=Path, help="pyasn AS-names JSON")
    group.add_argument("--geoip", type=Path, help="MaxMind City or Country database")
    group.add_argument("--nameserver",
                       help='DNS server "ip[:port]" or "system"; empty: no resolution')
