"""Who owns an indicator: the one recipient responsible for taking it down.

Order (DESIGN.md): the most specific owned prefix containing `source.ip` (or, without an IP,
containing the whole `source.network`); then `source.asn`; then the longest owned domain that
is a label-boundary suffix of `source.fqdn` (`evil.examplehost.example` is under
`examplehost.example`, `badexamplehost.example` is not).

When the IP's owner and the domain's owner differ, the IP (hosting) rule wins: the hoster
that serves the content can take it down today. The domain's owner is not the owner of that
record; it receives it only if it also lists the domain under `subscribe.domains`.

Query cost is a bounded number of hash probes (prefix lengths present, DNS labels of the
name), independent of how many recipients or prefixes are registered.

Corrections: a recipient may *disown* part of what its rules cover (`disowns` in the registry,
written when an operator accepts a `not_ours` correction): an address inside a disowned prefix
or a name under a disowned domain is not its, and ownership falls through to the next
candidate (`candidates`): the next less specific prefix, then the ASN, then the domain.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from threatroute.errors import InvalidRecord
from threatroute.matchers.prefixes import PrefixMap, parse_ip, parse_network
from threatroute.registry import Recipient

Address = tuple[int, int, int]  # (family 4|6, address or network int, max prefix length)


@dataclass(frozen=True, slots=True)
class Owner:
    """The owning recipient and the rule that made it the owner (`prefix 192.0.2.0/24`)."""

    id: str
    name: str
    rule: str

    def to_json(self) -> dict[str, str]:
        """The `extra.owner` value."""
        return {"id": self.id, "name": self.name, "rule": self.rule}


def domain_suffixes(name: str) -> Iterable[str]:
    """`a.b.example` -> `a.b.example`, `b.example`, `example`: longest first, label boundaries."""
    yield name
    dot = name.find(".")
    while dot != -1:
        yield name[dot + 1:]
        dot = name.find(".", dot + 1)


class OwnershipIndex:
    """In-memory ownership lookups built from the registry; rebuild it when the registry changes."""

    __slots__ = ("asns", "corrected", "disowned_domains", "disowned_prefixes", "domains", "names",
                 "prefixes")

    def __init__(self) -> None:
        self.prefixes: PrefixMap[str] = PrefixMap()
        self.asns: dict[int, str] = {}
        self.domains: dict[str, str] = {}
        self.names: dict[str, str] = {}  # recipient id -> name
        # accepted corrections: what a recipient's rules cover but it said is not its
        self.disowned_prefixes: PrefixMap[frozenset[str]] = PrefixMap()
        self.disowned_domains: dict[str, frozenset[str]] = {}
        self.corrected = False  # any disowns at all: only then does a query look for them

    @classmethod
    def build(cls, recipients: Iterable[Recipient]) -> OwnershipIndex:
        """Index what each recipient owns (the registry has already rejected double ownership;
        should two claim the same key anyway, the later one wins)."""
        index = cls()
        for recipient in recipients:
            index.names[recipient.id] = recipient.name
            for prefix in recipient.owns.prefixes:
                index.prefixes[prefix] = recipient.id
            for asn in recipient.owns.asns:
                index.asns[asn] = recipient.id
            for domain in recipient.owns.domains:
                index.domains[domain] = recipient.id
            for prefix in recipient.disowns.prefixes:
                index.disowned_prefixes[prefix] = (index.disowned_prefixes.get(prefix)
                                                   or frozenset()) | {recipient.id}
            for domain in recipient.disowns.domains:
                index.disowned_domains[domain] = (index.disowned_domains.get(domain)
                                                  or frozenset()) | {recipient.id}
        index.prefixes.compile()
        index.disowned_prefixes.compile()
        index.corrected = bool(len(index.disowned_prefixes) or index.disowned_domains)
        return index

    def __contains__(self, recipient_id: object) -> bool:
        return recipient_id in self.names

    def _owner(self, recipient_id: str, rule: str) -> Owner:
        return Owner(recipient_id, self.names.get(recipient_id, recipient_id), rule)

    def by_ip(self, ip: str) -> Owner | None:
        found = self.prefixes.longest(ip)
        return self._owner(found[1], f"prefix {found[0]}") if found else None

    def by_network(self, network: str) -> Owner | None:
        found = self.prefixes.longest_covering(network)
        return self._owner(found[1], f"prefix {found[0]}") if found else None

    def by_asn(self, asn: int) -> Owner | None:
        recipient_id = self.asns.get(asn)
        return self._owner(recipient_id, f"asn {asn}") if recipient_id else None

    def by_domain(self, fqdn: str) -> Owner | None:
        domains = self.domains
        for suffix in domain_suffixes(fqdn.lower().rstrip(".")):
            recipient_id = domains.get(suffix)
            if recipient_id is not None:
                return self._owner(recipient_id, f"domain {suffix}")
        return None

    def owner_of(self, record: Mapping[str, Any]) -> Owner | None:
        """The owner of a (normalised, nested) record, or None when nobody registered owns it."""
        source = record.get("source") or {}
        return self.owner_of_source(source, record_address(source))

    def owner_of_source(self, source: Mapping[str, Any], address: Address | None) -> Owner | None:
        """`owner_of` for callers that already parsed the address (`record_address`)."""
        if self.corrected:
            return self.next_owner(source, address, ())
        owner = None
        if address is not None:
            family, value, max_length = address
            found = self.prefixes.longest_int(family, value, max_length)
            if found:
                owner = self._owner(found[1], f"prefix {found[0]}")
        if owner is None and source.get("asn") is not None:
            owner = self.by_asn(int(source["asn"]))
        if owner is None and source.get("fqdn"):
            owner = self.by_domain(source["fqdn"])
        return owner

    def candidates(self, source: Mapping[str, Any], address: Address | None) -> Iterator[Owner]:
        """Every candidate owner, most specific first: each owned prefix containing the address
        (or the whole network), then the ASN's owner, then each owned domain suffix of the name.

        The first is the owner; the rest are who to ask when it says "not ours". Recipients
        that disown the address (or name) are left out.
        """
        disowners = self._disowners(source, address)
        if address is not None:
            for network, rid in self.prefixes.all_matches_int(*address):
                if rid not in disowners:
                    yield self._owner(rid, f"prefix {network}")
        if source.get("asn") is not None:
            asn_owner = self.by_asn(int(source["asn"]))
            if asn_owner is not None and asn_owner.id not in disowners:
                yield asn_owner
        if source.get("fqdn"):
            for suffix in domain_suffixes(str(source["fqdn"]).lower().rstrip(".")):
                holder = self.domains.get(suffix)
                if holder is not None and holder not in disowners:
                    yield self._owner(holder, f"domain {suffix}")

    def next_owner(self, source: Mapping[str, Any], address: Address | None,
                   excluding: Collection[str]) -> Owner | None:
        """The first candidate owner (`candidates`) that is not in `excluding`: who owns the
        indicator once the recipients in `excluding` have said it is not theirs."""
        for owner in self.candidates(source, address):
            if owner.id not in excluding:
                return owner
        return None

    def _disowners(self, source: Mapping[str, Any], address: Address | None) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        if not self.corrected:
            return out
        if address is not None:
            for _, ids in self.disowned_prefixes.all_matches_int(*address):
                out |= ids
        fqdn = source.get("fqdn")
        if fqdn:
            for suffix in domain_suffixes(str(fqdn).lower().rstrip(".")):
                out |= self.disowned_domains.get(suffix, frozenset())
        return out


def record_address(source: Mapping[str, Any]) -> Address | None:
    """(family, address int, max prefix length) of `source.ip`, else of `source.network`.

    For a network only prefixes at least as wide as it count (they contain all of it).
    """
    try:
        if source.get("ip"):
            family, value = parse_ip(source["ip"])
            return family, value, 128
        if source.get("network"):
            return parse_network(source["network"])
    except ValueError as exc:
        field = "source.ip" if source.get("ip") else "source.network"
        raise InvalidRecord(str(exc), field) from None
    return None


__all__ = ["Address", "Owner", "OwnershipIndex", "domain_suffixes", "record_address"]
