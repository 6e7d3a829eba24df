"""`threatroute gateway --listen HOST:PORT`: recipients over HTTP (streams/gateway/)."""

from __future__ import annotations

import argparse
from typing import Any

from threatroute.streams.commands.base import DONE, command
from threatroute.streams.config import Config


def serve(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.gateway.server import serve as run_server

    run_server(config, args.listen, args.certfile, args.keyfile)
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "gateway", handler=serve, kafka=True,
                     help="serve recipients over HTTP: TAXII 2.1, feedback API and desk page",
                     description="TAXII 2.1 (/taxii2/), the feedback API (/api/v1/, OpenAPI at "
                                 "/api/v1/openapi.json), contributions and the desk page "
                                 "(/desk), each recipient authenticated by its gateway token "
                                 "(`threatroute recipients token`). Served from the Kafka "
                                 "topics themselves.")
    parser.add_argument("--listen", default="127.0.0.1:8443", metavar="HOST:PORT",
                        help="address to serve on (default 127.0.0.1:8443)")
    parser.add_argument("--certfile", help="TLS certificate chain (PEM); with --keyfile: HTTPS")
    parser.add_argument("--keyfile", help="TLS private key (PEM)")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics here (default [metrics] port; 0: off)")
