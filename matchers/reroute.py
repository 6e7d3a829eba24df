"""`not_ours`: who gets the indicator instead, and the correction the operator is asked about.

When the owner of an indicator reports it is not theirs, the indicator goes to the next
candidate owner (`OwnershipIndex.next_owner`: the owner of the next less specific prefix, else
of the ASN, else of the domain), leaving out everyone who already said not ours, as a new alert
whose first reason says why it was rerouted. The claim itself becomes a `Correction` for the
operator: `threatroute corrections accept` writes it into the registry as the reporter's
`disowns` (so ownership falls through for every indicator there, not just this one);
`reject` closes it and keeps the registry as it is.

Pure: no Kafka. The match stage sends the rerouted alert and writes the correction to the
compacted `corrections` topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from threatroute.matchers.ownership import Owner, OwnershipIndex, record_address
from threatroute.registry import Recipient

STATES = ("open", "accepted", "rejected")


@dataclass(frozen=True, slots=True)
class Reroute:
    """The next owner (None: nobody else registered) and the reason its alert carries."""

    owner: Owner | None
    reason: str


def reroute(record: Mapping[str, Any], ownership: OwnershipIndex, reporter: str,
            not_ours: Collection[str], note: str | None = None) -> Reroute:
    """Where `record` goes after `reporter` (and everyone in `not_ours`) said it is not theirs."""
    source = record.get("source") or {}
    owner = ownership.next_owner(source, record_address(source), {reporter, *not_ours})
    said = f"{reporter} reported it is not theirs" + (f" ({note})" if note else "")
    if owner is None:
        return Reroute(None, f"rerouted: {said}; no other owner is registered")
    return Reroute(owner, f"rerouted: {said}; next owner by {owner.rule}")


@dataclass(frozen=True, slots=True)
class Correction:
    """A recipient's claim that the registry gives it something that is not its own."""

    id: str
    recipient: str  # who said not ours
    kind: str  # "prefixes" | "domains": where in `disowns` an acceptance puts `locator`
    locator: str  # the address (as a host prefix), network or domain
    rule: str  # the ownership rule that made it the owner
    indicator_key: str
    reported_at: str
    note: str | None = None
    next_owner: str | None = None
    next_rule: str | None = None
    state: str = "open"
    decided_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Correction:
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        return cls(**known)

    def decided(self, state: str, at: str) -> Correction:
        if state not in STATES[1:]:
            raise ValueError(f"a correction is accepted or rejected, not {state!r}")
        return replace(self, state=state, decided_at=at)


def correction_id(recipient: str, locator: str) -> str:
    """Stable: the same recipient disowning the same thing twice is one correction."""
    return hashlib.blake2b(f"{recipient}|{locator}".encode(), digest_size=6).hexdigest()


def correction(record: Mapping[str, Any], reporter: str, rule: str, indicator_key: str,
               at: str, next_: Reroute, note: str | None = None) -> Correction | None:
    """The correction a `not_ours` report asks for, or None when the record has no locator
    the registry could disown (an ASN-only record)."""
    source = record.get("source") or {}
    if rule.startswith("domain ") and source.get("fqdn"):
        kind, locator = "domains", str(source["fqdn"])
    elif source.get("ip"):
        ip = str(source["ip"])
        kind, locator = "prefixes", f"{ip}/{128 if ':' in ip else 32}"
    elif source.get("network"):
        kind, locator = "prefixes", str(source["network"])
    elif source.get("fqdn"):
        kind, locator = "domains", str(source["fqdn"])
    else:
        return None
    owner = next_.owner
    return Correction(correction_id(reporter, locator), reporter, kind, locator, rule,
                      indicator_key, at, note, owner.id if owner else None,
                      owner.rule if owner else None)


def accept(recipient: Recipient, item: Correction) -> Recipient:
    """`recipient` with the correction's locator added to its `disowns`."""
    if recipient.id != item.recipient:
        raise ValueError(f"correction {item.id} is about {item.recipient}, not {recipient.id}")
    current = getattr(recipient.disowns, item.kind)
    if item.locator in current:
        return recipient
    return replace(recipient, disowns=replace(recipient.disowns,
                                              **{item.kind: (*current, item.locator)}))


__all__ = ["STATES", "Correction", "Reroute", "accept", "correction", "correction_id",
           "reroute"]
