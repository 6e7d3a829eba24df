"""The `threatroute` command: one entry point, one subcommand per job.

Configuration is read once here into a frozen Config and passed down.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from streams.config import Config, load_config
from threatroute.errors import ThreatrouteError

Handler = Callable[[argparse.Namespace, Config], int]


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, bootstrap=getattr(args, "bootstrap", None))


def cmd_broker(args: argparse.Namespace, config: Config) -> int:
    from streams import broker

    if args.action == "start":
        broker.start(config)
        return 0
    if args.action == "stop":
        broker.stop(config)
        return 0
    return 0 if broker.status(config) else 1


def cmd_topics(args: argparse.Namespace, config: Config) -> int:
    from streams.topics import admin, ensure_topics

    outcome = ensure_topics(admin(config), config.topics)
    for name, done in outcome.items():
        print(f"{name:24} {done}")
    changed = [n for n, d in outcome.items() if d != "unchanged"]
    print(f"{len(changed)} topics changed" if changed else "all topics already as configured")
    return 0


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    from streams.ingest import IngestOptions, ingest, summary

    defaults = {"feed.name": args.feed_name, "tlp": args.tlp, "feed.accuracy": args.confidence,
                "feed.provider": args.provider}
    options = IngestOptions(args.format, args.path, args.dry_run, args.report,
                            tuple((k, v) for k, v in defaults.items() if v is not None))
    tally = ingest(options, None if args.dry_run else config)
    print(summary(tally, args.dry_run), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threatroute", description=__doc__)
    parser.add_argument("--config", help="TOML configuration (default deploy/threatroute.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", help="Kafka bootstrap servers of an existing cluster "
                        "(default: THREATROUTE_BOOTSTRAP, else the embedded broker)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", parents=[common], help="the embedded single-node Kafka broker")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(handler=cmd_broker)

    p = sub.add_parser("topics", parents=[common], help="create every pipeline topic")
    p.add_argument("action", choices=["create"])
    p.set_defaults(handler=cmd_topics)

    from threatroute.feeds import FORMATS

    p = sub.add_parser("ingest", parents=[common], help="parse a feed and produce it")
    p.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                   help=f"one of: {', '.join(FORMATS)}")
    p.add_argument("path", metavar="PATH|-")
    p.add_argument("--dry-run", action="store_true",
                   help="print normalised records as JSON lines; no broker needed")
    p.add_argument("--report", help="shadowserver report type when the file name does not say")
    p.add_argument("--feed-name", help="feed.name for records that lack one")
    p.add_argument("--provider", help="feed.provider for records that lack one")
    p.add_argument("--tlp", help="TLP for records that lack one (default: the format's)")
    p.add_argument("--confidence", type=float, help="feed.accuracy 0-100 for records lacking one")
    p.set_defaults(handler=cmd_ingest)

    for register in _LATER_COMMANDS:
        register(sub, common)
    return parser


_LATER_COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args, _config(args))
    except ThreatrouteError as exc:
        print(f"threatroute: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
