"""The operator's suppression list: addresses, prefixes and domains never alerted, until expiry.

Sinkholes, research scanners, the CERT's own honeypots: indicators that are true but that no
recipient should be told about. Each entry gives a reason and an expiry (so the list gets
reviewed, not forgotten); the file lives beside the configuration (`[match] suppressions`):

```yaml
suppressions:
  - addresses: [192.0.2.99, "2001:db8::99"]
    prefixes: [198.51.100.0/28]
    domains: [sinkhole.example]        # and every name under it
    reason: our own sinkhole
    expires: 2027-01-01T00:00:00Z
```

`SuppressionList.match` is applied before matching: to `source.ip` (or the whole of
`source.network`) and `source.fqdn` (URLs are split into it on ingest). Lookups are a bounded
number of hash probes, like ownership.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import yaml

from threatroute import fields
from threatroute.errors import ConfigError, InvalidRecord
from threatroute.matchers.ownership import domain_suffixes, record_address
from threatroute.matchers.prefixes import PrefixMap

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
KEYS = frozenset({"addresses", "prefixes", "domains", "reason", "expires"})


class SuppressionError(ConfigError):
    """The suppression file is invalid; `errors` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s) in suppression list:\n  " + "\n  ".join(errors))


@dataclass(frozen=True, slots=True)
class Suppression:
    """One entry: what it covers (for display), why, until when."""

    what: str  # the address, prefix or domain that matched
    reason: str
    expires: str  # canonical UTC

    def active(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires) > now

    def explain(self) -> str:
        return (f"suppressed by the operator's list ({self.what}: {self.reason}; "
                f"until {self.expires})")


class SuppressionList:
    """The parsed list, indexed; immutable once built."""

    __slots__ = ("domains", "prefixes", "size")

    def __init__(self, entries: Iterable[tuple[str, Suppression]] = ()) -> None:
        self.prefixes: PrefixMap[tuple[Suppression, ...]] = PrefixMap()
        self.domains: dict[str, tuple[Suppression, ...]] = {}
        self.size = 0
        grouped: dict[str, list[Suppression]] = {}
        for key, entry in entries:
            grouped.setdefault(key, []).append(entry)
            self.size += 1
        for key, items in grouped.items():
            if key.startswith("domain:"):
                self.domains[key.removeprefix("domain:")] = tuple(items)
            else:
                self.prefixes[key] = tuple(items)
        self.prefixes.compile()

    def __len__(self) -> int:
        return self.size

    def match(self, record: Mapping[str, Any], now: datetime) -> Suppression | None:
        """The active entry that covers `record`'s source (most specific first), or None."""
        if not self.size:
            return None
        source = record.get("source") or {}
        address = record_address(source)
        if address is not None:
            for _, entries in self.prefixes.all_matches_int(*address):
                for entry in entries:
                    if entry.active(now):
                        return entry
        fqdn = source.get("fqdn")
        if fqdn and self.domains:
            for suffix in domain_suffixes(str(fqdn).lower().rstrip(".")):
                for entry in self.domains.get(suffix, ()):
                    if entry.active(now):
                        return entry
        return None


def load_suppressions(text: str) -> SuppressionList:
    """Parse and validate the YAML list; one `SuppressionError` names every problem."""
    try:
        document = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise SuppressionError([f"not valid YAML: {exc}"]) from None
    if document is None:
        return SuppressionList()
    if not isinstance(document, Mapping) or not isinstance(
            document.get("suppressions", []), list | None):
        raise SuppressionError(["expected a mapping with a `suppressions:` list at the top"])
    errors: list[str] = []
    entries: list[tuple[str, Suppression]] = []
    for number, raw in enumerate(document.get("suppressions") or [], start=1):
        where = f"entry {number}"
        if not isinstance(raw, Mapping):
            errors.append(f"{where}: expected a mapping")
            continue
        errors.extend(f"{where}: {key}: unknown key" for key in raw if key not in KEYS)
        reason, expires = raw.get("reason"), raw.get("expires")
        if not isinstance(reason, str) or not reason.strip():
            errors.append(f"{where}: reason: missing (say why it is suppressed)")
            continue
        try:
            # YAML reads an unquoted date or time as an object: give it back its ISO text
            stamp = fields.timestamp(expires.isoformat() if isinstance(expires, date)
                                     else expires)
        except InvalidRecord as exc:
            errors.append(f"{where}: expires: {exc.reason if expires is not None else 'missing'}")
            continue
        covered = 0
        for key, check in (("addresses", fields.ip), ("prefixes", fields.network),
                           ("domains", fields.fqdn)):
            values = raw.get(key) or []
            if not isinstance(values, list):
                errors.append(f"{where}: {key}: expected a list")
                continue
            for i, value in enumerate(values):
                try:
                    canonical = check(value)
                except InvalidRecord as exc:
                    errors.append(f"{where}: {key}[{i}]: {exc.reason}")
                    continue
                covered += 1
                index_key = (f"domain:{canonical}" if key == "domains" else
                             canonical if key == "prefixes" else
                             f"{canonical}/{128 if ':' in canonical else 32}")
                entries.append((index_key, Suppression(canonical, reason.strip(), stamp)))
        if not covered:
            errors.append(f"{where}: lists no addresses, prefixes or domains")
    if errors:
        raise SuppressionError(errors)
    return SuppressionList(entries)


__all__ = ["Suppression", "SuppressionError", "SuppressionList", "load_suppressions"]
