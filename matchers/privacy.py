"""What an alert tells its recipient: enough to act, nothing about the victims.

An alert goes to the hoster or CERT that can take the indicator down; the people it hurt are
none of its business. By default a rendered alert therefore carries:
- no `destination.*` fields (in IntelMQ's model the victim side: a DDoS target, a scanned
  host, the address a phishing mail was sent to);
- URLs with their query strings and fragments masked where a value is an e-mail address or
  looks like a token (a session id, an API key, a base64-encoded address): phishing links
  routinely carry the targeted person's address or a one-time credential. Paths are kept:
  they say which file on the hoster's server to remove.

A recipient can be given more or less (registry key `alert_content`, validated on import):

    alert_content:
      destination: true        # include destination.* fields (default false)
      mask_url_secrets: false  # show URLs unmasked (default true)
      omit: [extra.dns, source.account]   # further fields to leave out (dotted names)

Pure functions: the match stage applies `redact_alert` when it renders a recipient's copy;
the ledger (internal) keeps the whole record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from threatroute.errors import InvalidRecord

MASK = "REDACTED"
# indicator fields holding URLs; the locator itself (source.url) included
URL_FIELDS = (("source", "url"), ("destination", "url"), ("event_description", "url"),
              ("screenshot_url",))
_EMAIL = re.compile(r"[^\s@/?#&=]+@[^\s@/?#&=]+\.[^\s@/?#&=]{2,}")
# parameter names that carry credentials or identify a person, whatever their value looks like
_SECRET_NAMES = re.compile(
    r"(^|[_-])(token|access_token|id_token|auth|authorization|key|apikey|api_key|sig|signature|"
    r"session|sessionid|sid|ssid|password|passwd|pass|pwd|secret|otp|code|jwt|email|e-?mail|"
    r"mail|user|username|login|uid|account)($|[_-])", re.IGNORECASE)
# a value that looks random: long, URL-safe/base64 alphabet, letters and digits mixed
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~+/=%]{16,}")


@dataclass(frozen=True, slots=True)
class AlertContent:
    """What one recipient's alerts carry (registry `alert_content`); the default is strict."""

    destination: bool = False
    mask_url_secrets: bool = True
    omit: tuple[str, ...] = ()


DEFAULT = AlertContent()


def alert_content(raw: Any) -> AlertContent:
    """Validate a registry `alert_content` value (None: the default)."""
    if raw is None:
        return DEFAULT
    if not isinstance(raw, Mapping):
        raise InvalidRecord(f"expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"destination", "mask_url_secrets", "omit"}
    if unknown:
        raise InvalidRecord(f"unknown keys {sorted(map(str, unknown))}")
    flags = {}
    for name in ("destination", "mask_url_secrets"):
        value = raw.get(name, getattr(DEFAULT, name))
        if not isinstance(value, bool):
            raise InvalidRecord(f"{name}: expected true or false, got {value!r}"[:120])
        flags[name] = value
    omit = raw.get("omit", [])
    if not isinstance(omit, list) or not all(isinstance(o, str) and o for o in omit):
        raise InvalidRecord("omit: expected a list of dotted field names")
    return AlertContent(flags["destination"], flags["mask_url_secrets"], tuple(omit))


def content_of(recipient: Any) -> AlertContent:
    """A registry entry's `alert_content` (kept among its extras); the strict default when
    absent or, on a topic value written by hand, invalid."""
    try:
        return alert_content(getattr(recipient, "extras", {}).get("alert_content"))
    except InvalidRecord:
        return DEFAULT


def _secret(name: str, value: str) -> bool:
    if _EMAIL.search(value) or _EMAIL.search(name):
        return True
    if value and _SECRET_NAMES.search(name):
        return True
    return bool(_TOKEN.fullmatch(value) and re.search(r"[A-Za-z]", value)
                and re.search(r"\d", value))


def mask_url(url: str) -> str:
    """`url` with each query value (and the fragment) that is an e-mail address or a token
    replaced by REDACTED; everything else, including the encoding, is left as it was."""
    head, hash_, fragment = url.partition("#")
    base, question, query = head.partition("?")
    if question:
        parts = []
        for pair in query.split("&"):
            name, equals, value = pair.partition("=")
            if equals and _secret(name, value):
                parts.append(f"{name}={MASK}")
            elif not equals and _secret("", name):
                parts.append(MASK)
            else:
                parts.append(pair)
        base = f"{base}?{'&'.join(parts)}"
    if hash_:
        base = f"{base}#{MASK if _secret('', fragment) or '=' in fragment else fragment}"
    return base


def _parent(record: dict[str, Any], path: Sequence[str]) -> dict[str, Any] | None:
    """The object holding `path`'s last part, if `path` leads to a value; every object on the
    way is replaced by a copy first (copy on write: what is not changed stays shared)."""
    node = record
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return None
        node[part] = child = dict(child)
        node = child
    return node if path[-1] in node else None


def redact_indicator(indicator: Mapping[str, Any], content: AlertContent = DEFAULT
                     ) -> dict[str, Any]:
    """A copy of `indicator` carrying only what `content` allows. Only the objects it changes
    are copied; the rest is shared with `indicator` (records are not changed once made, and
    a full copy per alert cost more than the rest of rendering)."""
    record: dict[str, Any] = dict(indicator)
    if not content.destination:
        record.pop("destination", None)
    for dotted in content.omit:
        parent = _parent(record, dotted.split("."))
        if parent is not None:
            del parent[dotted.rsplit(".", 1)[-1]]
    if content.mask_url_secrets:
        for path in URL_FIELDS:
            url = _string_at(record, path)
            masked = mask_url(url) if url is not None else url
            if masked != url and (parent := _parent(record, path)) is not None:
                parent[path[-1]] = masked
    return record


def _string_at(record: Mapping[str, Any], path: Sequence[str]) -> str | None:
    node: Any = record
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, str) else None


def redact_alert(alert: Mapping[str, Any], content: AlertContent = DEFAULT) -> dict[str, Any]:
    """The alert as its recipient receives it: the indicator redacted, the rest unchanged."""
    rendered = dict(alert)
    if isinstance(alert.get("indicator"), Mapping):
        rendered["indicator"] = redact_indicator(alert["indicator"], content)
    return rendered
