"""`threatroute broker start|stop|status` and `threatroute topics create`."""

from __future__ import annotations

import argparse
from typing import Any

from threatroute.streams.commands.base import DONE, REFUSED, actions, command
from threatroute.streams.config import Config


def start(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka import broker

    broker.start(config, secure=args.secure, nodes=args.nodes, node=args.node)
    return DONE


def stop(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka import broker

    broker.stop(config, node=args.node)
    return DONE


def status(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka import broker

    return DONE if broker.status(config) else REFUSED


def create_topics(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.kafka.admin import admin, ensure_topics

    outcome = ensure_topics(admin(config), config.topics)
    for name, done in outcome.items():
        print(f"{name:24} {done}")
    changed = [n for n, d in outcome.items() if d != "unchanged"]
    print(f"{len(changed)} topics changed" if changed else "all topics already as configured")
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "broker", help="the embedded Kafka broker (one node or a "
                                                "loopback cluster)",
                     description="Run Apache Kafka (KRaft) from its jars for a local pipeline: "
                                 "one node (state in THREATROUTE_STATE or .threatroute/broker), "
                                 "or with `start --nodes 3` a cluster of three on loopback "
                                 "(state in .threatroute/cluster/node-<id>; replication 3, "
                                 "min.insync.replicas 2).")
    sub = actions(parser)
    p = command(sub, "start", help="start it (fetches the jars once) and wait until it serves",
                handler=start)
    p.add_argument("--secure", action="store_true",
                   help="TLS + SASL/SCRAM-SHA-512 on the client listener and ACLs (a local CA, "
                        "the pipeline's credentials in STATE/credentials/pipeline.properties); "
                        "a store keeps the mode it was first started in. Without it: "
                        "PLAINTEXT, for local use only")
    p.add_argument("--nodes", type=int, metavar="N",
                   help="a cluster of N combined broker+controller nodes on loopback, node i "
                        "on the configured ports + 2(i-1) (e.g. 9092, 9094, 9096); kept with "
                        "the store, so later starts need not repeat it (default: what the "
                        "store has, else 1)")
    p.add_argument("--node", type=int, metavar="ID",
                   help="start only node ID of the cluster (after `stop --node ID`)")
    p = command(sub, "stop", help="stop it (every node of a cluster)", handler=stop)
    p.add_argument("--node", type=int, metavar="ID",
                   help="stop only node ID of the cluster (controlled shutdown: its "
                        "partitions' leadership moves to the other nodes)")
    command(sub, "status", help="say whether it runs; exit code 1 when it does not",
            handler=status)

    parser = command(subparsers, "topics", help="create every pipeline topic")
    sub = actions(parser)
    command(sub, "create", help="create or update every pipeline topic as configured "
                                "(partitions, retention); idempotent",
            handler=create_topics, kafka=True)
