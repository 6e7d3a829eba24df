"""Routing: which recipients receive an enriched indicator, and why.

Candidates are the owner (the stamped `extra.owner.id` when the hoster stage set one that
this index knows, otherwise computed here with the same rules; the hoster stage discards any
owner a feed supplied, so a stamp is always ours) plus every subscriber whose
subscriptions select the record: `subscribe.countries` vs `source.geolocation.cc`,
`subscribe.asns` vs `source.asn`, `subscribe.prefixes` containing `source.ip` (or the whole
`source.network`), `subscribe.domains` as a label-boundary suffix of `source.fqdn`.
Subscriptions are indexed by key, so a query costs a bounded number of hash probes plus the
number of candidates it finds: never a loop over recipients.

Each candidate then passes its own filters, owner included (they are the recipient's stated
wishes, e.g. a hoster that only wants phishing and C2 at confidence >= 50):
- TLP: RED is routed to nobody; AMBER+STRICT to the owner only; and a recipient receives a
  record only if its clearance is at least the record's TLP (CLEAR < GREEN < AMBER < RED),
  the owner included. AMBER+STRICT needs AMBER clearance: it narrows who may be told (the
  owner's organisation only), it is not more sensitive than AMBER for the one who is; an
  `amber+strict` clearance is accepted and means the same as `amber`. The default clearance
  is GREEN, so CLEAR and GREEN reach everyone who matches unless a recipient was explicitly
  limited to CLEAR (e.g. one that republishes what it gets).
- `classifications` (None = all) against `classification.type`.
- `min_confidence` against `feed.accuracy`; a record without accuracy counts as 100, IntelMQ's
  default for a feed's accuracy.
A record without a TLP is treated as `default_tlp` (AMBER unless the stage says otherwise):
unlabelled information goes no wider than cleared recipients. Feeds should set a TLP.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from threatroute import fields
from threatroute.matchers.ownership import OwnershipIndex, domain_suffixes, record_address
from threatroute.matchers.prefixes import PrefixMap
from threatroute.registry import Recipient

TLP_RANK = {level: rank for rank, level in enumerate(fields.TLP_LEVELS)}
DEFAULT_ACCURACY = 100.0
AMBER_RANK = TLP_RANK["AMBER"]  # what AMBER+STRICT needs too (see the module docstring)


@dataclass(frozen=True, slots=True)
class Match:
    """A recipient that receives the record, with human-readable reasons (owner first)."""

    recipient_id: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """A candidate recipient for `explain`: delivered when `blocked` is None."""

    recipient_id: str
    reasons: tuple[str, ...]
    blocked: str | None = None

    @property
    def delivered(self) -> bool:
        return self.blocked is None


@dataclass(frozen=True, slots=True)
class _Policy:
    classifications: frozenset[str] | None
    min_confidence: float
    clearance: int
    clearance_name: str


class MatchIndex:
    """Subscription and ownership indexes over the whole registry; immutable once built."""

    __slots__ = ("asns", "countries", "default_tlp", "domains", "ownership", "policies",
                 "prefixes")

    def __init__(self, ownership: OwnershipIndex, default_tlp: str = "AMBER") -> None:
        self.ownership = ownership
        self.default_tlp = fields.tlp(default_tlp)
        self.policies: dict[str, _Policy] = {}
        self.countries: dict[str, tuple[str, ...]] = {}
        self.asns: dict[int, tuple[str, ...]] = {}
        self.domains: dict[str, tuple[str, ...]] = {}
        self.prefixes: PrefixMap[tuple[str, ...]] = PrefixMap()

    @classmethod
    def build(cls, recipients: Iterable[Recipient], *, default_tlp: str = "AMBER",
              ownership: OwnershipIndex | None = None) -> MatchIndex:
        """Index a registry. Pass `ownership` to share one already built for the hoster stage."""
        recipients = list(recipients)
        index = cls(ownership or OwnershipIndex.build(recipients), default_tlp)
        countries: dict[str, list[str]] = defaultdict(list)
        asns: dict[int, list[str]] = defaultdict(list)
        domains: dict[str, list[str]] = defaultdict(list)
        prefixes: dict[str, list[str]] = defaultdict(list)
        for r in recipients:
            index.policies[r.id] = _Policy(
                None if r.classifications is None else frozenset(r.classifications),
                float(r.min_confidence), TLP_RANK[fields.tlp(r.tlp_clearance)],
                fields.tlp(r.tlp_clearance))
            for cc in r.subscribe.countries:
                countries[cc].append(r.id)
            for asn in r.subscribe.asns:
                asns[asn].append(r.id)
            for domain in r.subscribe.domains:
                domains[domain].append(r.id)
            for prefix in r.subscribe.prefixes:
                prefixes[prefix].append(r.id)
        index.countries = {key: tuple(ids) for key, ids in countries.items()}
        index.asns = {key: tuple(ids) for key, ids in asns.items()}
        index.domains = {key: tuple(ids) for key, ids in domains.items()}
        for prefix, ids in prefixes.items():
            index.prefixes[prefix] = tuple(ids)
        index.prefixes.compile()
        return index

    def __len__(self) -> int:
        return len(self.policies)

    def match(self, record: Mapping[str, Any], not_owners: Collection[str] = ()) -> list[Match]:
        """Recipients that receive `record` (owner first, then by id) and why.

        `not_owners`: recipients that reported this indicator not theirs; the owner is then the
        next candidate (`OwnershipIndex.next_owner`)."""
        return self._route(record, False, not_owners)  # type: ignore[return-value]

    def explain(self, record: Mapping[str, Any], not_owners: Collection[str] = ()
                ) -> list[Decision]:
        """Every candidate, delivered or not, with the filter that stopped each blocked one."""
        return self._route(record, True, not_owners)  # type: ignore[return-value]

    def subscribers(self, kind: str, key: Any) -> tuple[str, ...]:
        """Recipients subscribed to an ASN (`kind` "asn") or a country ("country")."""
        table: Mapping[Any, tuple[str, ...]] = self.asns if kind == "asn" else self.countries
        return table.get(key, ())

    def _candidates(self, record: Mapping[str, Any], not_owners: Collection[str] = ()
                    ) -> tuple[str | None, dict[str, list[str]]]:
        """(owner id, {recipient id: reasons}) before any filter."""
        source = record.get("source") or {}
        address = record_address(source)
        reasons: dict[str, list[str]] = {}
        owner_id = None
        stamped = (record.get("extra") or {}).get("owner")
        if not_owners:
            owner = self.ownership.next_owner(source, address, not_owners)
            if owner is not None and owner.id in self.policies:
                owner_id = owner.id
                reasons[owner_id] = [f"owner ({owner.rule}; rerouted: "
                                     f"{', '.join(sorted(not_owners))} reported not theirs)"]
        elif isinstance(stamped, Mapping) and isinstance(stamped.get("id"), str) \
                and stamped["id"] in self.policies:
            owner_id = stamped["id"]
            reasons[owner_id] = [f"owner ({stamped.get('rule', 'stamped by hoster stage')})"]
        else:
            owner = self.ownership.owner_of_source(source, address)
            if owner is not None and owner.id in self.policies:
                owner_id = owner.id
                reasons[owner_id] = [f"owner ({owner.rule})"]

        def add(ids: Iterable[str], why: str) -> None:
            for rid in ids:
                reasons.setdefault(rid, []).append(why)

        cc = (source.get("geolocation") or {}).get("cc")
        if cc and cc in self.countries:
            add(self.countries[cc], f"subscribed country {cc}")
        asn = source.get("asn")
        if asn is not None and asn in self.asns:
            add(self.asns[asn], f"subscribed asn {asn}")
        if address is not None:
            for network, ids in self.prefixes.all_matches_int(*address):
                add(ids, f"subscribed prefix {network}")
        fqdn = source.get("fqdn")
        if fqdn and self.domains:
            for suffix in domain_suffixes(fqdn):
                subscribers = self.domains.get(suffix)
                if subscribers:
                    add(subscribers, f"subscribed domain {suffix}")
        return owner_id, reasons

    def blocked(self, rid: str, record: Mapping[str, Any], owner_id: str | None,
                tlp_only: bool = False) -> str | None:
        """Why recipient `rid` may not receive `record` (None: it may). `tlp_only` checks only
        what the TLP allows (escalations: not the recipient's routine filters)."""
        policy = self.policies.get(rid)
        if policy is None:
            return "not a registered recipient"
        tlp = record.get("tlp") or self.default_tlp
        if tlp not in TLP_RANK:
            tlp = fields.tlp(tlp)
        if tlp == "RED":
            return "TLP:RED is never routed"
        if tlp == "AMBER+STRICT" and rid != owner_id:
            return "TLP:AMBER+STRICT goes to the owner only"
        if policy.clearance < min(TLP_RANK[tlp], AMBER_RANK):
            return f"TLP:{tlp} is above its clearance {policy.clearance_name}"
        if tlp_only:
            return None
        ctype = (record.get("classification") or {}).get("type")
        if policy.classifications is not None and ctype not in policy.classifications:
            return f"classification {ctype} is not in its classifications"
        accuracy = (record.get("feed") or {}).get("accuracy")
        accuracy = DEFAULT_ACCURACY if accuracy is None else float(accuracy)
        if accuracy < policy.min_confidence:
            return f"accuracy {accuracy:g} is below its min_confidence {policy.min_confidence:g}"
        return None

    def _route(self, record: Mapping[str, Any], explain: bool, not_owners: Collection[str] = ()
               ) -> list[Match] | list[Decision]:
        owner_id, reasons = self._candidates(record, not_owners)
        if not reasons:
            return []
        tlp = record.get("tlp") or self.default_tlp
        if tlp not in TLP_RANK:
            tlp = fields.tlp(tlp)
        rank = TLP_RANK[tlp]
        ctype = (record.get("classification") or {}).get("type")
        accuracy = (record.get("feed") or {}).get("accuracy")
        accuracy = DEFAULT_ACCURACY if accuracy is None else float(accuracy)
        order = sorted(reasons, key=lambda rid: (rid != owner_id, rid))
        out: list[Any] = []
        for rid in order:
            policy = self.policies[rid]
            blocked = None
            if tlp == "RED":
                blocked = "TLP:RED is never routed"
            elif tlp == "AMBER+STRICT" and rid != owner_id:
                blocked = "TLP:AMBER+STRICT goes to the owner only"
            elif policy.clearance < min(rank, AMBER_RANK):
                blocked = f"TLP:{tlp} is above its clearance {policy.clearance_name}"
            elif policy.classifications is not None and ctype not in policy.classifications:
                blocked = f"classification {ctype} is not in its classifications"
            elif accuracy < policy.min_confidence:
                blocked = (f"accuracy {accuracy:g} is below its min_confidence "
                           f"{policy.min_confidence:g}")
            if explain:
                out.append(Decision(rid, tuple(reasons[rid]), blocked))
            elif blocked is None:
                out.append(Match(rid, tuple(reasons[rid])))
        return out


__all__ = ["DEFAULT_ACCURACY", "TLP_RANK", "Decision", "Match", "MatchIndex"]
