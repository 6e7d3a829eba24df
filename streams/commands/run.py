"""`threatroute run STAGE|all`: run pipeline stages until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
from typing import Any

from threatroute.streams.commands.base import DONE, command, data_options
from threatroute.streams.config import Config

# every stage, in pipeline order (`run all`); kept here so `--help` needs no Kafka import
# (contributions: what recipients share back on contributions.<id>, onto indicators.raw;
# publish: match.routed -> alerts.<recipient>, in [publish] workers loops)
CHAIN = ("contributions", "asn", "geo", "hoster", "match", "publish", "feedback")


def run(args: argparse.Namespace, config: Config) -> int:
    import threading

    from threatroute.streams.runtime.supervisor import install_signal_handlers, run_stages

    stop = threading.Event()
    install_signal_handlers(stop)
    names = CHAIN if args.stage == "all" else (args.stage,)
    print(f"running {', '.join(names)} against {config.bootstrap}; Ctrl-C stops", flush=True)
    stats = run_stages(config, names, stop, batch_size=args.batch_size,
                       publish_workers=args.workers)
    for name, stat in stats.items():
        if stat.batches:
            what = {"match": "alerts routed", "publish": "alerts published"}.get(
                name, "produced")
            print(f"{name}: consumed {stat.consumed}, {what} {stat.produced}, "
                  f"refused {stat.refused}")
    return DONE


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def register(subparsers: Any) -> None:
    # no broker check first: a long-running stage waits for the broker and reports it
    parser = command(subparsers, "run", handler=run,
                     help="run pipeline stages (contributions, asn, geo, hoster, match, "
                          "publish, feedback) or all")
    parser.add_argument("stage", choices=[*CHAIN, "all"])
    parser.add_argument("--batch-size", type=int,
                        help="records per batch (default: the stage's own; 2,000 for most)")
    parser.add_argument("--workers", type=_positive,
                        help="publish loops in this process, each its own consumer and "
                             "transactional producer (default [publish] workers)")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics here (default [metrics] port; 0: off)")
    data_options(parser)
