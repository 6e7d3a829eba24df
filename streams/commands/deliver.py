"""`threatroute deliver`: push alerts by webhook and e-mail digest (streams/delivery/)."""

from __future__ import annotations

import argparse
from typing import Any

from threatroute.streams.commands.base import DONE, command
from threatroute.streams.config import Config


def deliver(args: argparse.Namespace, config: Config) -> int:
    import threading

    from threatroute.streams.delivery.runner import run_delivery
    from threatroute.streams.runtime.supervisor import install_signal_handlers

    stop = threading.Event()
    install_signal_handlers(stop)
    print(f"delivering webhooks and e-mail digests from {config.bootstrap}; Ctrl-C stops",
          flush=True)
    run_delivery(config, stop)
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "deliver", handler=deliver,
                     help="push alerts: signed webhooks and e-mail digests, per the registry",
                     description="One worker per recipient and path configured under "
                                 "`delivery:` in the registry, each with its own consumer "
                                 "group; follows registry changes.")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics here (default [metrics] port; 0: off)")
