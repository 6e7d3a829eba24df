"""`threatroute recipients import|list|show`: the registry on the compacted `recipients` topic."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from threatroute.streams.commands.base import DONE, REFUSED, actions, command
from threatroute.streams.config import Config


def import_file(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.runtime import registry

    result = registry.import_registry(config, Path(args.file).read_text())
    for rid in result.upserts:
        print(f"written    {rid}")
    for rid in result.deletions:
        print(f"tombstoned {rid}")
    for topic in result.topics_created:
        print(f"created    {topic}")
    if not (result.upserts or result.deletions):
        print("registry unchanged")
    return DONE


def list_all(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.runtime import registry

    recipients = registry.read_registry(config)
    for rid, r in sorted(recipients.items()):
        owns = f"{len(r.owns.prefixes)} prefixes, {len(r.owns.asns)} ASNs, " \
               f"{len(r.owns.domains)} domains"
        print(f"{rid:24} {r.name:32} owns {owns}; TLP {r.tlp_clearance}")
    print(f"{len(recipients)} recipients")
    return DONE


def show(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.runtime import registry

    recipients = registry.read_registry(config)
    if args.id not in recipients:
        print(f"threatroute: no recipient {args.id!r}", file=sys.stderr)
        return REFUSED
    print(json.dumps(recipients[args.id].to_json(), indent=2))
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "recipients", help="the recipient registry",
                     description="The recipient registry (YAML, shape in "
                                 "deploy/recipients.example.yaml) on the compacted `recipients` "
                                 "topic, which every worker follows.")
    sub = actions(parser)
    p = command(sub, "import", help="validate a registry file and write only its changes; "
                                    "removed recipients are tombstoned",
                handler=import_file, kafka=True)
    p.add_argument("file", metavar="FILE")
    command(sub, "list", help="one line per recipient", handler=list_all, kafka=True)
    p = command(sub, "show", help="one recipient as JSON; exit code 1 if unknown",
                handler=show, kafka=True)
    p.add_argument("id", metavar="ID")
