"""`threatroute corrections list|accept|reject`: what recipients said is not theirs.

A `not_ours` report reroutes the indicator at once (the match stage) and records a correction
on the compacted `corrections` topic (key: correction id). The operator decides:
- `accept ID`: the reporter's registry entry gets the locator in its `disowns`, written to the
  `recipients` topic, so every worker routes everything there to the next owner from now on;
- `reject ID`: the registry stays as it is (the report still holds for that one indicator).
Either way the correction is closed. The registry file stays the operators' contract: accept
prints the `disowns` lines to copy into it, or the next `recipients import` undoes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from threatroute import topics
from threatroute.matchers.reroute import Correction, accept
from threatroute.streams.commands.base import DONE, REFUSED, actions, command
from threatroute.streams.config import Config


def read_corrections(config: Config) -> dict[str, Correction]:
    """Every correction on the topic now, by id (the latest record of each)."""
    from threatroute.streams.kafka.latest import read_latest

    rows = read_latest(config, topics.CORRECTIONS)
    out: dict[str, Correction] = {}
    for key, value in rows.items():
        if isinstance(value, Mapping):
            try:
                out[key] = Correction.from_json(value)
            except TypeError:  # a record missing fields: not one of ours, not shown
                continue
    return out


def _write(config: Config, item: Correction, recipient: Any = None) -> None:
    from threatroute.streams.kafka.clients import AckedProducer, encode
    from threatroute.streams.runtime.registry import TOPIC as REGISTRY

    producer = AckedProducer(config)
    if recipient is not None:  # the registry first: a closed correction means it is in force
        producer.send(REGISTRY, encode(recipient.to_json()), recipient.id)
        producer.flush()
    producer.send(topics.CORRECTIONS, encode(item.to_json()), item.id)
    producer.flush()


def line(item: Correction) -> str:
    """One correction for people."""
    to = f"-> {item.next_owner} ({item.next_rule})" if item.next_owner else "-> nobody else"
    note = f"; note: {item.note}" if item.note else ""
    decided = f" on {item.decided_at}" if item.decided_at else ""
    return (f"{item.id}  {item.state:8} {item.recipient} says {item.locator} is not theirs "
            f"(owner by {item.rule}) {to}; reported {item.reported_at}{decided}{note}")


def list_all(args: argparse.Namespace, config: Config) -> int:
    found = sorted(read_corrections(config).values(), key=lambda c: (c.reported_at, c.id))
    shown = [c for c in found if args.all or c.state == "open"]
    for item in shown:
        print(json.dumps(item.to_json()) if args.json else line(item))
    if not args.json:
        left = len(found) - len(shown)
        print(f"{len(shown)} {'corrections' if args.all else 'open'}"
              + (f" ({left} decided: --all shows them)" if left else ""))
    return DONE


def _open(config: Config, cid: str) -> Correction | None:
    item = read_corrections(config).get(cid)
    if item is None:
        print(f"threatroute: no correction {cid!r} (`threatroute corrections list`)",
              file=sys.stderr)
        return None
    if item.state != "open":
        print(f"threatroute: correction {cid} is already {item.state}", file=sys.stderr)
        return None
    return item


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def accept_one(args: argparse.Namespace, config: Config) -> int:
    from threatroute.streams.runtime.registry import read_registry

    item = _open(config, args.id)
    if item is None:
        return REFUSED
    recipient = read_registry(config).get(item.recipient)
    if recipient is None:
        print(f"threatroute: {item.recipient} is no longer in the registry; nothing to change "
              f"(`corrections reject {item.id}` closes it)", file=sys.stderr)
        return REFUSED
    changed = accept(recipient, item)
    _write(config, item.decided("accepted", _now()), changed)
    print(f"accepted {item.id}: {item.recipient} no longer owns {item.locator}; "
          f"the next owner is {item.next_owner or 'nobody registered'}")
    snippet = yaml.safe_dump({"disowns": {k: list(getattr(changed.disowns, k))
                                          for k in ("prefixes", "domains")
                                          if getattr(changed.disowns, k)}}, sort_keys=False)
    print(f"add this to {item.recipient}'s entry in the registry file, or the next "
          f"`recipients import` undoes it:\n" + "".join(f"    {row}\n"
                                                     for row in snippet.splitlines()), end="")
    return DONE


def reject_one(args: argparse.Namespace, config: Config) -> int:
    item = _open(config, args.id)
    if item is None:
        return REFUSED
    _write(config, item.decided("rejected", _now()))
    print(f"rejected {item.id}: the registry keeps {item.recipient} as owner of {item.locator} "
          f"(its report still holds for that one indicator)")
    return DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "corrections",
                     help="ownership corrections recipients asked for (not_ours)",
                     description="A recipient's not_ours report reroutes the indicator and "
                                 "records a correction here. Accept one to write it into the "
                                 "registry (the recipient's `disowns`), or reject it.")
    sub = actions(parser)
    p = command(sub, "list", help="open corrections, oldest first", handler=list_all,
                kafka=True)
    p.add_argument("--all", action="store_true", help="decided ones too")
    p.add_argument("--json", action="store_true", help="one JSON object per correction")
    p = command(sub, "accept", help="write a correction into the registry and close it",
                handler=accept_one, kafka=True)
    p.add_argument("id", metavar="ID")
    p = command(sub, "reject", help="close a correction, keeping the registry as it is",
                handler=reject_one, kafka=True)
    p.add_argument("id", metavar="ID")
