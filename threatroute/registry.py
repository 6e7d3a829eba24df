"""The recipient registry: who receives what, validated once at the edge.

Operators write the registry as YAML (DESIGN.md, "Recipients and matching"); `load_registry`
validates every entry with the shared validators and reports *all* problems at once, each
naming the entry and the field. `threatroute import` then writes the changes found by
`diff_registry` to the compacted `recipients` topic (key = id, value = `Recipient.to_json()`),
and every worker rebuilds its indexes from `Recipient.from_json`.

Decisions:
- `tlp_clearance` defaults to GREEN: CLEAR and GREEN are meant for the community every
  registered recipient belongs to; AMBER needs an explicit clearance. Stored upper-case, the
  same canonical form as the record's `tlp`.
- Unknown top-level keys are tolerated and kept (`Recipient.extras`), so newer registry files
  and topic values pass through older workers. Unknown keys *inside* `owns` / `subscribe` are
  an error in YAML, because a typo there (`prefix:`) would silently lose routing; `from_json`
  ignores them (forward compatibility on the topic).
- Push delivery (`delivery:`, optional) names where secrets live (`secret_file`/`secret_env`),
  never a secret itself: the registry travels on a topic every pipeline worker reads. An
  inline `secret:` is an error. See `Delivery`.
- A prefix with host bits set (`192.0.2.5/24`) is an error, not silently widened: in an
  ownership claim it is almost always a typo.
- `disowns` (optional, `prefixes` and `domains`) lists what a recipient's `owns` rules cover but
  is not its: accepted `not_ours` corrections (`threatroute corrections accept`) land there,
  and ownership falls through to the next candidate.
- `alert_partitions` (optional, 1-64) sizes the recipient's `alerts.<id>` topic; absent, the
  configured default applies (`[topics."alerts.*"]`, one partition): one recipient's share of
  the alerts is small, and every partition costs the broker open files and memory maps.
- Ownership must be unambiguous: the same prefix, ASN or domain owned by two recipients is an
  error naming both. Nested prefixes owned by different recipients are fine (an ISP owns the
  /16, its hosting customer the /24; the most specific wins).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from threatroute import fields, topics
from threatroute.errors import ConfigError, InvalidRecord
from threatroute.taxonomy import classification_type

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
FORMATS = ("json", "stix", "intelmq", "csv")  # matchers/formats.py renders each
DEFAULT_CLEARANCE = "GREEN"
OWNS_KEYS = ("asns", "prefixes", "domains")
SUBSCRIBE_KEYS = ("countries", "asns", "prefixes", "domains")
DISOWNS_KEYS = ("prefixes", "domains")
KNOWN_KEYS = frozenset({"id", "name", "contacts", "owns", "subscribe", "classifications",
                        "min_confidence", "tlp_clearance", "format", "disowns", "delivery",
                        "alert_partitions"})
WEBHOOK_FORMATS = ("json", "stix")
MAX_ATTEMPTS = 100
MAX_ALERT_PARTITIONS = 64
_EMAIL = re.compile(r"[^@\s]+@([^@\s]+)")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 100k entries in seconds


class RegistryError(ConfigError):
    """The registry (file or topic value) is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s) in recipient registry:\n  " + "\n  ".join(errors))


@dataclass(frozen=True, slots=True)
class Owns:
    """What a recipient is responsible for (canonical forms: int ASNs, CIDR text, A-labels)."""

    asns: tuple[int, ...] = ()
    prefixes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subscribe:
    """What a recipient wants beyond what it owns."""

    countries: tuple[str, ...] = ()
    asns: tuple[int, ...] = ()
    prefixes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Webhook:
    """POST each alert to `url`, signed (HMAC-SHA256 over the body) with the secret read from
    `secret_file` or the environment variable `secret_env`; `max_attempts` tries per alert
    (with backoff) before it is dead-lettered."""

    url: str
    format: str = "json"
    secret_file: str | None = None
    secret_env: str | None = None
    max_attempts: int = 5
    timeout: float = 10.0

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"url": self.url, "format": self.format,
                                 "max_attempts": self.max_attempts, "timeout": self.timeout}
        if self.secret_file:
            value["secret_file"] = self.secret_file
        if self.secret_env:
            value["secret_env"] = self.secret_env
        return value


@dataclass(frozen=True, slots=True)
class Email:
    """A digest of the new alerts every `interval_seconds` to `to` (default: the contacts
    that are e-mail addresses)."""

    to: tuple[str, ...] = ()
    interval_seconds: int = 3600

    def to_json(self) -> dict[str, Any]:
        return {"to": list(self.to), "interval_seconds": self.interval_seconds}


@dataclass(frozen=True, slots=True)
class Delivery:
    """Push delivery of a recipient's alerts (`threatroute deliver`); both optional."""

    webhook: Webhook | None = None
    email: Email | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {}
        if self.webhook:
            value["webhook"] = self.webhook.to_json()
        if self.email:
            value["email"] = self.email.to_json()
        return value


@dataclass(frozen=True, slots=True)
class Recipient:
    """One registry entry. The constructor does not validate: use `load_registry`/`from_json`
    for anything that came from outside."""

    id: str
    name: str
    contacts: tuple[str, ...] = ()
    owns: Owns = Owns()
    subscribe: Subscribe = Subscribe()
    classifications: tuple[str, ...] | None = None  # None: every classification.type
    min_confidence: float = 0.0
    tlp_clearance: str = DEFAULT_CLEARANCE
    format: str = "json"
    delivery: Delivery | None = None
    alert_partitions: int | None = None  # None: the configured default for alert topics
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False)  # unknown keys, kept
    disowns: Owns = Owns()  # covered by `owns` but not its (accepted corrections)

    @property
    def topic(self) -> str:
        return f"alerts.{self.id}"

    def to_json(self) -> dict[str, Any]:
        """The value written to the compacted `recipients` topic (key = id)."""
        value: dict[str, Any] = dict(self.extras)
        confidence = self.min_confidence
        value.update(
            id=self.id,
            name=self.name,
            contacts=list(self.contacts),
            owns={key: list(getattr(self.owns, key)) for key in OWNS_KEYS},
            subscribe={key: list(getattr(self.subscribe, key)) for key in SUBSCRIBE_KEYS},
            classifications=None if self.classifications is None else list(self.classifications),
            min_confidence=int(confidence) if float(confidence).is_integer() else confidence,
            tlp_clearance=self.tlp_clearance.lower(),
            format=self.format,
        )
        if self.disowns != Owns():
            value["disowns"] = {key: list(getattr(self.disowns, key)) for key in DISOWNS_KEYS}
        if self.delivery is not None:
            value["delivery"] = self.delivery.to_json()
        if self.alert_partitions is not None:  # absent stays absent: older values compare equal
            value["alert_partitions"] = self.alert_partitions
        return value

    @property
    def emails(self) -> tuple[str, ...]:
        """The contacts that are e-mail addresses (the default digest recipients)."""
        return tuple(c for c in self.contacts if _EMAIL.fullmatch(c))

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Recipient:
        """Decode (and re-validate) a `recipients` topic value; unknown fields are tolerated."""
        ident = value.get("id") if isinstance(value, Mapping) else None
        label = f"recipient {str(ident)[:64]!r}"
        errors: list[str] = []
        recipient = _parse_entry(value, label, errors, strict=False)
        if recipient is None:
            raise RegistryError(errors)
        return recipient


def _listed(raw: Any, where: str, check: Callable[[Any], Any], errors: list[str]) -> tuple:
    """Validate each item of a list field, deduplicating while keeping the operator's order."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append(f"{where}: expected a list, got {type(raw).__name__}")
        return ()
    out: dict[Any, None] = {}
    for i, item in enumerate(raw):
        try:
            out[check(item)] = None
        except InvalidRecord as exc:
            errors.append(f"{where}[{i}]: {exc.reason}")
    return tuple(out)


def _prefix(value: object) -> str:
    canonical = fields.network(value)
    if canonical == value:  # already canonical (the topic, most files): host bits are clear
        if canonical.startswith("::ffff:"):
            _not_mapped(ipaddress.ip_network(canonical), value)
        return canonical
    network = ipaddress.ip_network(canonical)
    given = fields.refang(str(value).strip()).split("/", 1)[0]
    try:
        if ipaddress.ip_address(given) != network.network_address:
            raise InvalidRecord(f"host bits set in {value!r}; the network is {canonical}")
    except ValueError:
        pass  # fields.network accepted it; nothing more to compare
    _not_mapped(network, value)
    return canonical


def _not_mapped(network: ipaddress.IPv4Network | ipaddress.IPv6Network, value: object) -> None:
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        raise InvalidRecord(f"IPv4-mapped prefix {value!r}: write it as IPv4 (records are)")


def _country(value: object) -> str:
    if isinstance(value, bool):  # YAML 1.1 reads NO (Norway) as false
        raise InvalidRecord(f"got a boolean {value}; quote country codes (YAML reads NO as false)")
    return fields.country_code(value)


def _contact(value: object) -> str:
    text = fields.string(value)
    email = _EMAIL.fullmatch(text)
    if email:
        fields.fqdn(email.group(1))
        return text
    if re.match(r"https?://", text, re.IGNORECASE):
        return fields.url(text).url
    raise InvalidRecord(f"not an email address or http(s) URL: {text[:64]!r}")


def _scalar(raw: Mapping[str, Any], key: str, check: Callable[[Any], Any], default: Any,
            errors: list[str]) -> Any:
    if raw.get(key) is None:
        return default
    try:
        return check(raw[key])
    except InvalidRecord as exc:
        errors.append(f"{key}: {exc.reason}")
        return default


def _format(value: object) -> str:
    text = fields.lowercase_string(value)
    if text not in FORMATS:
        raise InvalidRecord(f"unknown format {text!r}; expected one of {', '.join(FORMATS)}")
    return text


def _env_name(value: object) -> str:
    text = fields.string(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", text):
        raise InvalidRecord(f"not an environment variable name: {text[:64]!r}")
    return text


def _count(low: int, high: int) -> Callable[[Any], int]:
    def check(value: object) -> int:
        number = fields.integer(value)
        if not low <= number <= high:
            raise InvalidRecord(f"{number} is not between {low} and {high}")
        return number
    return check


def _seconds(value: object) -> float:
    number = fields.number(value)
    if not 0 < number <= 300:
        raise InvalidRecord(f"{number} is not between 0 and 300 seconds")
    return number


def _webhook_format(value: object) -> str:
    text = fields.lowercase_string(value)
    if text not in WEBHOOK_FORMATS:
        raise InvalidRecord(f"unknown format {text!r}; expected {' or '.join(WEBHOOK_FORMATS)}")
    return text


def _email(value: object) -> str:
    text = fields.string(value)
    email = _EMAIL.fullmatch(text)
    if not email:
        raise InvalidRecord(f"not an email address: {text[:64]!r}")
    fields.fqdn(email.group(1))
    return text


def _webhook_url(value: object) -> str:
    text = fields.string(value)
    if not re.match(r"https?://", text, re.IGNORECASE):
        raise InvalidRecord(f"not an http(s) URL: {text[:64]!r}")
    return fields.url(text).url


def _delivery(raw: Any, errors: list[str], strict: bool) -> Delivery | None:
    """Validate the optional `delivery:` section (see `Delivery`)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        errors.append("delivery: expected a mapping with webhook and/or email")
        return None
    mine: list[str] = []
    if strict:
        mine += [f"{key}: unknown key; expected webhook, email" for key in raw
                 if key not in ("webhook", "email")]
    webhook = email = None
    hook = raw.get("webhook")
    if hook is not None:
        if not isinstance(hook, Mapping):
            mine.append("webhook: expected a mapping")
        else:
            known = {"url", "format", "secret_file", "secret_env", "max_attempts", "timeout"}
            if "secret" in hook:  # the value would sit on a topic every worker reads
                mine.append("webhook.secret: never put the secret in the registry; name a "
                            "secret_file or secret_env")
            if strict:
                mine += [f"webhook.{key}: unknown key" for key in hook
                         if key not in known and key != "secret"]
            if hook.get("url") is None:
                mine.append("webhook.url: missing")
            if hook.get("secret_file") is None and hook.get("secret_env") is None:
                mine.append("webhook: name its signing secret's secret_file or secret_env")
            found: list[str] = []
            webhook = Webhook(
                url=_scalar(hook, "url", _webhook_url, "", found),
                format=_scalar(hook, "format", _webhook_format, "json", found),
                secret_file=_scalar(hook, "secret_file", fields.string, None, found),
                secret_env=_scalar(hook, "secret_env", _env_name, None, found),
                max_attempts=_scalar(hook, "max_attempts", _count(1, MAX_ATTEMPTS), 5, found),
                timeout=_scalar(hook, "timeout", _seconds, 10.0, found))
            mine += [f"webhook.{message}" for message in found]
    mail = raw.get("email")
    if mail is not None:
        if not isinstance(mail, Mapping):
            mine.append("email: expected a mapping")
        else:
            if strict:
                mine += [f"email.{key}: unknown key" for key in mail
                         if key not in ("to", "interval_seconds")]
            found = []
            email = Email(to=_listed(mail.get("to"), "to", _email, found),
                          interval_seconds=_scalar(mail, "interval_seconds",
                                                   _count(1, 7 * 86400), 3600, found))
            mine += [f"email.{message}" for message in found]
    errors.extend(f"delivery.{message}" for message in mine)
    return None if mine else Delivery(webhook, email)


def _identifier(value: object) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidRecord(f"{str(value)[:80]!r} does not match {ID_PATTERN.pattern}")
    if value in topics.RESERVED_RECIPIENT_IDS:
        raise InvalidRecord(f"{value!r} is reserved: alerts.{value} or feedback.{value} is one "
                            "of the pipeline's own topics")
    return value


def _section(raw: Any, name: str, keys: tuple[str, ...], checks: dict[str, Callable[[Any], Any]],
             errors: list[str], strict: bool) -> dict[str, tuple]:
    if raw is None:
        return {key: () for key in keys}
    if not isinstance(raw, Mapping):
        errors.append(f"{name}: expected a mapping with {', '.join(keys)}")
        return {key: () for key in keys}
    if strict:
        for key in raw:
            if key not in keys:
                errors.append(f"{name}.{key}: unknown key; expected {', '.join(keys)}")
    return {key: _listed(raw.get(key), f"{name}.{key}", checks[key], errors) for key in keys}


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "asns": fields.asn, "prefixes": _prefix, "domains": fields.fqdn, "countries": _country,
}


def _parse_entry(raw: Any, label: str, errors: list[str], strict: bool) -> Recipient | None:
    """Validate one entry; append `label: field: reason` to `errors`; None when invalid."""
    mine: list[str] = []
    if not isinstance(raw, Mapping):
        errors.append(f"{label}: expected a mapping, got {type(raw).__name__}")
        return None
    ident = _scalar(raw, "id", _identifier, None, mine)
    if "id" not in raw or raw["id"] is None:
        mine.append("id: missing")
    name = _scalar(raw, "name", fields.string, None, mine)
    if raw.get("name") is None:
        mine.append("name: missing")
    owns = _section(raw.get("owns"), "owns", OWNS_KEYS, _CHECKS, mine, strict)
    subscribe = _section(raw.get("subscribe"), "subscribe", SUBSCRIBE_KEYS, _CHECKS, mine, strict)
    disowns = _section(raw.get("disowns"), "disowns", DISOWNS_KEYS, _CHECKS, mine, strict)
    classes = raw.get("classifications")
    classifications = None if classes is None else _listed(
        classes, "classifications", classification_type, mine)
    extras = {key: value for key, value in raw.items() if key not in KNOWN_KEYS}
    if "alert_content" in extras:  # kept as an extra; checked here, at the edge
        from threatroute.matchers.privacy import alert_content

        try:
            alert_content(extras["alert_content"])
        except InvalidRecord as exc:
            mine.append(f"alert_content: {exc.reason}")
    try:
        json.dumps(extras)
    except (TypeError, ValueError):
        mine.append(f"{', '.join(map(str, extras))}: not JSON-serialisable (quote dates)")
    recipient = Recipient(
        id=ident,
        name=name,
        contacts=_listed(raw.get("contacts"), "contacts", _contact, mine),
        owns=Owns(**owns),
        subscribe=Subscribe(**subscribe),
        classifications=classifications,
        min_confidence=_scalar(raw, "min_confidence", fields.confidence, 0.0, mine),
        tlp_clearance=_scalar(raw, "tlp_clearance", fields.tlp, DEFAULT_CLEARANCE, mine),
        format=_scalar(raw, "format", _format, "json", mine),
        delivery=_delivery(raw.get("delivery"), mine, strict),
        alert_partitions=_scalar(raw, "alert_partitions", _count(1, MAX_ALERT_PARTITIONS), None,
                                 mine),
        extras=extras,
        disowns=Owns(**disowns),
    )
    errors.extend(f"{label}: {message}" for message in mine)
    return None if mine else recipient


def _entry_lines(text: str) -> list[int]:
    """1-based line of each `recipients:` entry; only computed when there are errors to show."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
        for key, value in root.value if root is not None else ():
            if key.value == "recipients":
                return [item.start_mark.line + 1 for item in value.value]
    except (yaml.YAMLError, AttributeError, TypeError):
        pass
    return []


def load_registry(text: str) -> list[Recipient]:
    """Parse and validate registry YAML; raise one `RegistryError` listing every problem.

    Each message names the entry (1-based, with its line) and the field path, e.g.
    `recipient 'examplehost' (entry 3, line 27): owns.prefixes[1]: not an IP network: ...`.
    """
    try:
        document = yaml.load(text, Loader=_LOADER)  # a safe loader (C or Python)
    except yaml.YAMLError as exc:
        raise RegistryError([f"not valid YAML: {exc}"]) from None
    if not isinstance(document, Mapping) or "recipients" not in document:
        raise RegistryError(["expected a mapping with a `recipients:` list at the top"])
    entries = document["recipients"] or []
    if not isinstance(entries, list):
        raise RegistryError([f"recipients: expected a list, got {type(entries).__name__}"])

    errors: list[str] = []
    lines: list[int] = []
    recipients: list[Recipient] = []
    labels: list[str] = []
    for number, raw in enumerate(entries, start=1):
        ident = raw.get("id") if isinstance(raw, Mapping) else None
        label = f"recipient {str(ident)[:64]!r} (entry {number})" if ident is not None else (
            f"recipient <no id> (entry {number})")
        recipient = _parse_entry(raw, label, errors, strict=True)
        if recipient is not None:
            recipients.append(recipient)
            labels.append(label)
    errors.extend(_conflicts(recipients, labels))
    if errors:
        lines = _entry_lines(text)
        if lines:  # "(entry 3)" -> "(entry 3, line 27)"
            errors = [re.sub(r"\(entry (\d+)\)",
                             lambda m: f"(entry {m[1]}, line {lines[int(m[1]) - 1]})"
                             if int(m[1]) <= len(lines) else m[0], message)
                      for message in errors]
        raise RegistryError(errors)
    return recipients


def _conflicts(recipients: list[Recipient], labels: list[str]) -> list[str]:
    """Duplicate ids, and any prefix/ASN/domain owned by two recipients."""
    errors: list[str] = []
    seen_ids: dict[str, str] = {}
    owned: dict[tuple[str, Any], str] = {}
    for recipient, label in zip(recipients, labels, strict=True):
        if recipient.id in seen_ids:
            errors.append(f"{label}: id: duplicate id, already used by {seen_ids[recipient.id]}")
            continue
        seen_ids[recipient.id] = label
        for kind in OWNS_KEYS:
            for i, item in enumerate(getattr(recipient.owns, kind)):
                first = owned.setdefault((kind, item), label)
                if first is not label:
                    errors.append(f"{label}: owns.{kind}[{i}]: {item} is already owned by {first}")
    return errors


def diff_registry(current: Mapping[str, Recipient], desired: Iterable[Recipient]
                  ) -> tuple[list[Recipient], list[str]]:
    """What an import must write: (changed or new recipients, ids to tombstone), both sorted.

    Unchanged recipients are not rewritten, so re-importing the same file produces no traffic.
    """
    wanted = {recipient.id: recipient for recipient in desired}
    upserts = [r for key, r in sorted(wanted.items()) if current.get(key) != r]
    deletions = sorted(key for key in current if key not in wanted)
    return upserts, deletions


__all__ = [
    "DEFAULT_CLEARANCE",
    "FORMATS",
    "ID_PATTERN",
    "Delivery",
    "Email",
    "Owns",
    "Recipient",
    "RegistryError",
    "Subscribe",
    "Webhook",
    "diff_registry",
    "load_registry",
]
