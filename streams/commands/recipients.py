"""`threatroute recipients import|list|show|provision|revoke|forget|token`: the registry on the
compacted `recipients` topic, and each recipient's access (streams/commands/access.py)."""

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
    for rid, path in result.provisioned.items():
        print(f"provisioned {rid}: credentials in {path} (mode 0600; hand it to {rid})")
    for rid in result.revoked:
        print(f"revoked    {rid}")
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


def provision(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.commands import access

    path = access.provision(config, args.id, Path(args.out))
    print(f"provisioned {args.id}: SCRAM credentials and ACLs; client properties in {path} "
          f"(mode 0600; use as `kcat -F {path}`)")
    return DONE


def revoke(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.commands import access

    had, acls = access.revoke(config, args.id)
    print(f"revoked {args.id}: credential {'removed' if had else 'absent'}, {acls} ACLs removed")
    return DONE


def forget(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.commands import access

    gone = access.forget(config, args.id)
    rows = ", ".join(f"{n} {t}" for t, n in sorted(gone.tombstones.items())) or "no table rows"
    entry = "tombstoned" if gone.registry else "absent"
    print(f"forgot {args.id}: credential {'removed' if gone.credential else 'absent'}, "
          f"{gone.acls} ACLs removed, registry entry {entry}, "
          f"topics deleted: {', '.join(gone.topics_deleted) or 'none'}; tombstoned {rows}")
    return DONE


def token(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.gateway.tokens import issue_token

    issue_token(config, args.id, Path(args.out))
    print(f"gateway token for {args.id} written to {args.out} (mode 0600); any earlier token "
          "of it no longer works")
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
    p = command(sub, "provision", help="SCRAM credentials and ACLs for one recipient (secure "
                                       "broker), written as librdkafka client properties",
                description="Create (or reset) recipient ID's SCRAM-SHA-512 credentials and "
                            "exactly its ACLs: READ alerts.ID and groups `ID.*`, WRITE "
                            "feedback.ID and contributions.ID. FILE (mode 0600) works as it is "
                            "with `kcat -F FILE` and any librdkafka client.",
                handler=provision, kafka=True)
    p.add_argument("id", metavar="ID")
    p.add_argument("--out", required=True, metavar="FILE", help="the client properties file")
    p = command(sub, "revoke", help="remove a recipient's credentials and ACLs",
                handler=revoke, kafka=True)
    p.add_argument("id", metavar="ID")
    p = command(sub, "forget", help="delete a departed recipient's topics, credentials and "
                                    "state (ledger, status and match state rows)",
                handler=forget, kafka=True)
    p.add_argument("id", metavar="ID")
    p = command(sub, "token", help="issue or rotate a recipient's gateway token",
                description="Issue a new gateway token for recipient ID and write it, alone, to "
                            "FILE (mode 0600). The gateway keeps only its hash (topic "
                            "gateway.tokens); the recipient's earlier token stops working.",
                handler=token, kafka=True)
    p.add_argument("id", metavar="ID")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the token")
