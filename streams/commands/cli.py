"""The `threatroute` command: one entry point, one subcommand per job.

Configuration is read once here into a frozen Config and passed down.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import KafkaException

from threatroute.errors import ConfigError, ThreatrouteError
from threatroute.streams.config import Config, load_config

# every stage, in pipeline order (`run all`); kept here so `--help` needs no Kafka import
CHAIN = ("asn", "geo", "hoster", "match", "feedback")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, bootstrap=getattr(args, "bootstrap", None),
                       ipasn=getattr(args, "ipasn", None), asnames=getattr(args, "asnames", None),
                       geoip=getattr(args, "geoip", None),
                       dns_nameserver=getattr(args, "nameserver", None),
                       metrics_port=getattr(args, "metrics_port", None))


def cmd_broker(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka import broker

    if args.action == "start":
        broker.start(config)
        return 0
    if args.action == "stop":
        broker.stop(config)
        return 0
    return 0 if broker.status(config) else 1


def cmd_topics(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka.admin import admin, ensure_topics

    outcome = ensure_topics(admin(config), config.topics)
    for name, done in outcome.items():
        print(f"{name:24} {done}")
    changed = [n for n, d in outcome.items() if d != "unchanged"]
    print(f"{len(changed)} topics changed" if changed else "all topics already as configured")
    return 0


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.commands.ingest import IngestOptions, ingest, summary

    defaults = {"feed.name": args.feed_name, "tlp": args.tlp, "feed.accuracy": args.confidence,
                "feed.provider": args.provider}
    options = IngestOptions(args.format, args.path, args.dry_run, args.report,
                            tuple((k, v) for k, v in defaults.items() if v is not None))
    tally = ingest(options, None if args.dry_run else config)
    print(summary(tally, args.dry_run), file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    import threading

    from threatroute.streams.runtime.supervisor import install_signal_handlers, run_stages

    stop = threading.Event()
    install_signal_handlers(stop)
    names = CHAIN if args.stage == "all" else (args.stage,)
    print(f"running {', '.join(names)} against {config.bootstrap}; Ctrl-C stops", flush=True)
    stats = run_stages(config, names, stop, batch_size=args.batch_size)
    for name, stat in stats.items():
        if stat.batches:
            what = "alerts sent" if name == "match" else "produced"
            print(f"{name}: consumed {stat.consumed}, {what} {stat.produced}, "
                  f"refused {stat.refused}")
    return 0


def cmd_recipients(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.runtime import registry as recipients

    if args.action == "import":
        if not args.arg:
            raise ConfigError("recipients import needs a registry FILE")
        result = recipients.import_registry(config, Path(args.arg).read_text())
        for rid in result.upserts:
            print(f"written    {rid}")
        for rid in result.deletions:
            print(f"tombstoned {rid}")
        for topic in result.topics_created:
            print(f"created    {topic}")
        if not (result.upserts or result.deletions):
            print("registry unchanged")
        return 0
    registry = recipients.read_registry(config)
    if args.action == "list":
        for rid, r in sorted(registry.items()):
            owns = f"{len(r.owns.prefixes)} prefixes, {len(r.owns.asns)} ASNs, " \
                   f"{len(r.owns.domains)} domains"
            print(f"{rid:24} {r.name:32} owns {owns}; TLP {r.tlp_clearance}")
        print(f"{len(registry)} recipients")
        return 0
    if not args.arg or args.arg not in registry:
        print(f"no recipient {args.arg!r}", file=sys.stderr)
        return 1
    print(json.dumps(registry[args.arg].to_json(), indent=2))
    return 0


def cmd_explain(args: argparse.Namespace, config: Config) -> int:
    from threatroute.enrichers.asn import AsnDatabase
    from threatroute.enrichers.dns import Resolver
    from threatroute.enrichers.geo import GeoDatabase
    from threatroute.registry import load_registry
    from threatroute.streams.commands.explain import Explainer, explain_lines
    from threatroute.streams.stages.enrich import nameserver

    # explain uses only what it is given on the command line: no Kafka, no config data files
    server = nameserver(args.nameserver or "")
    explainer = Explainer(
        asn=AsnDatabase(args.ipasn, args.asnames) if args.ipasn else None,
        geo=GeoDatabase(args.geoip) if args.geoip else None,
        resolver=Resolver(server[0], server[1], timeout=config.dns_timeout) if server else None,
        recipients=load_registry(args.registry.read_text()) if args.registry else ())
    invalid = explain_lines(explainer, sys.stdin, sys.stdout, args.json)
    return 1 if invalid else 0


def cmd_data(args: argparse.Namespace, config: Config) -> int:
    from threatroute.enrichers import databuild

    if args.action == "build":
        built = databuild.build_demo_data(args.dest)
        for path in built:
            print(f"wrote {path}")
        return 0
    if args.action == "fetch-asn":
        print(databuild.fetch_asn_data(args.dest))
        return 0
    key = args.maxmind_key or os.environ.get("MAXMIND_LICENSE_KEY")
    print(databuild.fetch_geo_data(args.dest, account_id=args.maxmind_account, licence_key=key))
    return 0


def cmd_tail(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.commands.tail import tail

    count = tail(config, args.recipient, as_json=args.json, follow=args.follow, group=args.group)
    print(f"{count} alerts", file=sys.stderr)
    return 0


def cmd_feedback(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.commands.tail import feedback_record, send_feedback

    recipient = args.recipient or os.environ.get("THREATROUTE_RECIPIENT")
    if not recipient:
        raise ConfigError("say who you are: --recipient ID or THREATROUTE_RECIPIENT")
    send_feedback(config, feedback_record(args.alert_id, recipient, args.status, args.note))
    print(f"feedback {args.status} for {args.alert_id} sent")
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

    p = sub.add_parser("tail", parents=[common], help="read a recipient's alerts")
    p.add_argument("recipient")
    p.add_argument("--json", action="store_true", help="the alert records as JSON lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new alerts")
    p.add_argument("--group", help="consumer group: resume where it left off (commits)")
    p.set_defaults(handler=cmd_tail)

    from threatroute.streams.commands.tail import STATUSES

    p = sub.add_parser("feedback", parents=[common], help="post remediation status of an alert")
    p.add_argument("alert_id")
    p.add_argument("status", choices=STATUSES)
    p.add_argument("--note")
    p.add_argument("--recipient", help="your recipient id (or THREATROUTE_RECIPIENT)")
    p.set_defaults(handler=cmd_feedback)

    data_flags = argparse.ArgumentParser(add_help=False)
    data_flags.add_argument("--ipasn", type=Path, help="pyasn IPASN table (v4, v6 or mixed)")
    data_flags.add_argument("--asnames", type=Path, help="pyasn AS-names JSON")
    data_flags.add_argument("--geoip", type=Path, help="MaxMind City or Country database")
    data_flags.add_argument("--nameserver",
                            help='DNS server "ip[:port]" or "system"; empty: no resolution')

    p = sub.add_parser("run", parents=[common, data_flags],
                       help="run pipeline stages (asn, geo, hoster, match) or all of them")
    p.add_argument("stage", choices=[*CHAIN, "all"])
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics here (default [metrics] port; 0: off)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("recipients", parents=[common], help="the recipient registry")
    p.add_argument("action", choices=["import", "list", "show"])
    p.add_argument("arg", nargs="?", metavar="FILE|ID")
    p.set_defaults(handler=cmd_recipients)

    p = sub.add_parser("explain", parents=[data_flags],
                       help="show what each stage adds to indicators on stdin, and who gets them")
    p.add_argument("--registry", type=Path, help="recipient registry YAML")
    p.add_argument("--json", action="store_true", help="one JSON object per input line")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("data", help="enrichment data: build the demo set, or fetch real data")
    p.add_argument("action", choices=["build", "fetch-asn", "fetch-geo"])
    p.add_argument("--dest", type=Path, default=Path(".threatroute/data"))
    p.add_argument("--maxmind-account", help="MaxMind account id (fetch-geo)")
    p.add_argument("--maxmind-key", help="MaxMind licence key (fetch-geo; or MAXMIND_LICENSE_KEY)")
    p.set_defaults(handler=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = _config(args)
    except (ThreatrouteError, OSError) as exc:
        print(f"threatroute: {exc}", file=sys.stderr)
        return 2
    try:
        return args.handler(args, config)
    except (ThreatrouteError, OSError) as exc:  # a missing file is an operator error too
        print(f"threatroute: {exc}", file=sys.stderr)
        return 2
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        hint = getattr(error, "str", lambda: str(error))()
        print(f"threatroute: Kafka at {config.bootstrap}: {hint} (is the broker running? "
              "`threatroute broker status`, or give --bootstrap)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
