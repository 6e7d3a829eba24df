"""`threatroute explain`: what each stage adds to an indicator and who receives it, and why.

Runs the same pure functions the Kafka stages run (normalise, DNS, ASN, geo, hoster, screen,
match, render) on indicator JSON lines from stdin, without Kafka: the operator's "why did this
go there?", and with `--alerts` "what exactly goes out?" (each recipient's alert in its format,
as a new alert: the alert id and times are made up now, as the match stage would).

Screening is the match stage's own (matchers/screen.py): the operator's suppression list and
hygiene (offline, expired) from the configuration, then the confidence the record is routed
with. Feed trust is learned from feedback on the broker: `--trust` reads it (`match.trust`);
without it every feed has its own accuracy, as if nobody had answered yet.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from threatroute import topics
from threatroute.enrichers.asn import AsnDatabase, enrich_asn
from threatroute.enrichers.dns import Resolver, enrich_dns
from threatroute.enrichers.geo import GeoDatabase, enrich_geo
from threatroute.enrichers.hoster import enrich_owner
from threatroute.errors import InvalidRecord
from threatroute.matchers.dedup import Action, AlertState, new_alert_id
from threatroute.matchers.formats import alert_record, render
from threatroute.matchers.index import MatchIndex
from threatroute.matchers.privacy import DEFAULT, content_of
from threatroute.matchers.rules import RoutingRules
from threatroute.matchers.screen import Screened, screen
from threatroute.matchers.suppression import SuppressionList
from threatroute.matchers.trust import FeedTrust
from threatroute.record import flatten, indicator_key, normalise_indicator
from threatroute.registry import Recipient
from threatroute.streams.commands.base import DONE, REFUSED, command, data_options
from threatroute.streams.config import Config

Record = dict[str, Any]
Added = dict[str, Any] | None  # fields a stage added; None when the stage was skipped


@dataclass
class Explainer:
    """The stages as plain functions; any data source may be absent (that stage is skipped)."""

    asn: AsnDatabase | None = None
    geo: GeoDatabase | None = None
    resolver: Resolver | None = None
    recipients: Iterable[Recipient] = ()
    rules: RoutingRules = field(default_factory=RoutingRules)  # suppression, hygiene
    trust: FeedTrust = field(default_factory=FeedTrust)  # learned from feedback (--trust)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # hygiene's "now"

    def __post_init__(self) -> None:
        self.recipients = list(self.recipients)
        self.suppressions: SuppressionList = self.rules.suppression_list()
        self.index = MatchIndex.build(self.recipients)
        self.formats = {r.id: r.format for r in self.recipients}
        self.contents = {r.id: content_of(r) for r in self.recipients}

    def steps(self) -> list[tuple[str, Callable[[Record], Record] | None]]:
        asn, geo, resolver = self.asn, self.geo, self.resolver
        return [
            ("dns", (lambda r: enrich_dns([r], resolver)[0]) if resolver else None),
            ("asn", (lambda r: enrich_asn(r, asn)) if asn else None),
            ("geo", (lambda r: enrich_geo(r, geo)) if geo else None),
            ("hoster", lambda r: enrich_owner(r, self.index.ownership)),
        ]

    def explain(self, line: str
                ) -> tuple[Record, list[tuple[str, Added]], list[Any], Screened]:
        """(record as routed, [(stage, fields it added or None if skipped)], decisions, what
        screening did). A screened-out record has no decisions: nobody is alerted."""
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise InvalidRecord(f"broken JSON: {exc}") from None
        record = normalise_indicator(raw)
        added: list[tuple[str, Added]] = [("normalise", _added({}, record))]
        for name, step in self.steps():
            if step is None:
                added.append((name, None))
                continue
            enriched = step(record)
            added.append((name, _added(record, enriched)))
            record = enriched
        screened = screen(record, self.clock().replace(microsecond=0), self.suppressions,
                          self.rules.hygiene, self.trust)
        if screened.dropped is not None:
            return record, added, [], screened
        record = dict(screened.record)
        return record, added, self.index.explain(record), screened


def _added(before: Record, after: Record) -> dict[str, Any]:
    old = flatten(before)
    return {k: v for k, v in flatten(after).items() if old.get(k) != v}


def alerts(explainer: Explainer, record: Record, decisions: list[Any],
           now: datetime) -> Iterator[dict[str, Any]]:
    """{recipient, format, body} for every recipient reached: the body is the text of the
    message its topic would get, rendered by the match stage's own `render` as a new alert
    (in the recipient's format, with what its `alert_content` lets through)."""
    stamp = now.replace(microsecond=0).isoformat()  # whole seconds, as the match stage stamps
    key = indicator_key(record)
    for decision in decisions:
        if decision.blocked is not None:
            continue
        rid = decision.recipient_id
        state = AlertState(new_alert_id(), rid, key, stamp, stamp, stamp, 1)
        alert = alert_record(state, Action.NEW, record, decision.reasons, stamp)
        fmt = explainer.formats.get(rid, "json")
        body = render(alert, fmt, explainer.contents.get(rid, DEFAULT))
        yield {"recipient": rid, "format": fmt, "body": body.decode()}


def explain_lines(explainer: Explainer, lines: Iterable[str], out: TextIO, as_json: bool,
                  as_alerts: bool = False, errors: TextIO | None = None,
                  clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Explain every non-blank line; returns how many were invalid.

    `as_alerts`: one JSON line per alert a recipient would receive (invalid lines are reported
    on `errors`, so `out` holds only alerts)."""
    invalid = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record, added, decisions, screened = explainer.explain(line)
        except InvalidRecord as exc:
            invalid += 1
            reason = f"{exc.field}: {exc.reason}" if exc.field else exc.reason
            if as_alerts:
                (errors or out).write(f"line {number}: invalid: {reason}\n")
            elif as_json:
                out.write(json.dumps({"line": number, "error": reason}) + "\n")
            else:
                out.write(f"line {number}: invalid: {reason}\n\n")
            continue
        delivered = [d for d in decisions if d.blocked is None]
        if as_alerts:
            for alert in alerts(explainer, record, decisions, clock()):
                out.write(json.dumps({"line": number, **alert}, ensure_ascii=False) + "\n")
        elif as_json:
            record = {**record, "recipients": [{"id": d.recipient_id, "reasons": list(d.reasons)}
                                               for d in delivered],
                      "screening": {"dropped": screened.dropped, "why": screened.why}}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out.write("\n".join(_readable(number, record, added, decisions, screened))
                      + "\n\n")
    return invalid


def _readable(number: int, record: Record, added: list[tuple[str, Any]],
              decisions: list[Any], screened: Screened) -> Iterator[str]:
    source = record["source"]
    locator = next(str(source[k]) for k in ("url", "fqdn", "ip", "network", "asn") if k in source)
    yield (f"line {number}: {record['classification']['type']} {locator} "
           f"(TLP:{record.get('tlp', 'unset')})")
    for stage, fields_added in added:
        if fields_added is None:
            yield f"  {stage:9} skipped (no data given)"
        elif not fields_added:
            yield f"  {stage:9} nothing to add"
        else:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in fields_added.items()
                              if k != "time.observation")
            yield f"  {stage:9} {shown or 'nothing to add'}"
    owner = record.get("extra", {}).get("owner")
    yield (f"  owner     {owner['id']} ({owner['name']}) by {owner['rule']}" if owner
           else "  owner     none registered")
    if screened.dropped is not None:
        yield f"  screened  {screened.dropped}: {screened.why}"
        yield "  reaches   nobody: screened out before matching"
        return
    confidence = (record.get("feed") or {}).get("accuracy")
    yield (f"  screen    passed; {screened.why}" if screened.trust is not None
           else "  screen    passed; confidence "
           + (f"{confidence:g} (the feed's own accuracy)" if confidence is not None
              else "100 (no feed.accuracy)"))
    if not decisions:
        yield "  reaches   nobody: no recipient owns or subscribes to it"
    for decision in decisions:
        why = "; ".join(decision.reasons)
        if decision.blocked is None:
            yield f"  reaches   {decision.recipient_id}: {why}"
        else:
            yield f"  blocked   {decision.recipient_id}: {why}; but {decision.blocked}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def run(args: Any, config: Config) -> int:
    from threatroute.registry import load_registry
    from threatroute.streams.stages.enrich import nameserver

    # explain uses only what it is given on the command line: no Kafka, no config data files
    server = nameserver(args.nameserver or "")
    trust = FeedTrust(policy=config.rules.trust)
    if args.trust:
        from threatroute.streams.kafka.latest import read_latest

        trust = FeedTrust.from_rows(read_latest(config, topics.MATCH_TRUST).values(),
                                   config.rules.trust)
    explainer = Explainer(
        asn=AsnDatabase(args.ipasn, args.asnames) if args.ipasn else None,
        geo=GeoDatabase(args.geoip) if args.geoip else None,
        resolver=Resolver(server[0], server[1], timeout=config.dns_timeout) if server else None,
        recipients=load_registry(args.registry.read_text()) if args.registry else (),
        rules=config.rules, trust=trust)
    invalid = explain_lines(explainer, sys.stdin, sys.stdout, args.json, args.alerts, sys.stderr)
    return REFUSED if invalid else DONE


def register(subparsers: Any) -> None:
    parser = command(subparsers, "explain", handler=run, kafka=lambda args: args.trust,
                     help="show what each stage adds to indicators on stdin, and who gets them",
                     description="Indicator JSON lines on stdin -> what each stage adds, the "
                                 "owner, every recipient reached and why. Runs the stages' own "
                                 "functions; no Kafka. Exit code 1 if a line was invalid.")
    parser.add_argument("--registry", type=Path, help="recipient registry YAML")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object per input line")
    shape.add_argument("--alerts", action="store_true",
                       help="one JSON line per alert sent: {line, recipient, format, body}, the "
                            "body exactly as that recipient's topic would get it (its format)")
    parser.add_argument("--trust", action="store_true",
                        help="route with the feed trust learned from feedback (reads "
                             "match.trust from the broker); without it, feeds' own accuracy")
    data_options(parser)
