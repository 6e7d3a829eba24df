"""An alert as its recipient received it, read back: whatever the delivery format (JSON, STIX
bundle or CSV row), the canonical alert and its STIX 2.1 objects. Pure (no Kafka).

The gateway and the push deliverers read a recipient's own `alerts.<id>` topic, not the
pipeline-wide ledger, so they see exactly what that recipient was sent and nothing else. A
CSV row lacks the indicator key and the send time: the message key and timestamp supply them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from threatroute.errors import InvalidRecord
from threatroute.matchers.formats import CSV_COLUMNS, stix_bundle

_SOURCE_COLUMNS = ("url", "fqdn", "ip", "port", "network", "asn")


@dataclass(frozen=True, slots=True)
class Received:
    """One alert message: the canonical alert (deploy/schemas/alert.schema.json shape) and the
    STIX objects that stand for it."""

    alert: dict[str, Any]
    stix: tuple[dict[str, Any], ...]

    @property
    def alert_id(self) -> str:
        return str(self.alert["alert_id"])


def iso_ms(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).replace(microsecond=0).isoformat()


def read_alert(value: bytes, key: bytes | None, timestamp_ms: int) -> Received:
    """Decode one `alerts.<id>` message; raises InvalidRecord when it is none of the formats."""
    text = value.decode("utf-8", errors="strict") if value else ""
    if text.lstrip().startswith("{"):
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord(f"not JSON: {exc}") from None
        if isinstance(document, dict) and document.get("type") == "bundle":
            alert = _from_bundle(document, key)
            return Received(alert, tuple(document.get("objects") or ()))
        if isinstance(document, dict) and "alert_id" in document:
            return Received(document, tuple(stix_bundle(document)["objects"]))
        raise InvalidRecord("a JSON value that is neither an alert nor a STIX bundle")
    alert = _from_csv(text, key, timestamp_ms)
    return Received(alert, tuple(stix_bundle(alert)["objects"]))


def _from_csv(text: str, key: bytes | None, timestamp_ms: int) -> dict[str, Any]:
    rows = list(csv.reader(text.splitlines()))
    if len(rows) != 1 or len(rows[0]) != len(CSV_COLUMNS):
        raise InvalidRecord(f"not a CSV alert row of {len(CSV_COLUMNS)} columns")
    row = dict(zip(CSV_COLUMNS, rows[0], strict=True))
    if not row["alert_id"]:
        raise InvalidRecord("CSV row without alert_id")
    source: dict[str, Any] = {k: row[k] for k in _SOURCE_COLUMNS if row[k]}
    for number in ("port", "asn"):
        if number in source and source[number].isdigit():
            source[number] = int(source[number])
    if row["cc"]:
        source["geolocation"] = {"cc": row["cc"]}
    indicator: dict[str, Any] = {"classification": {"type": row["classification"]},
                                 "source": source}
    if row["tlp"]:
        indicator["tlp"] = row["tlp"]
    if row["feed"]:
        indicator["feed"] = {"name": row["feed"]}
    return {
        "alert_id": row["alert_id"], "recipient": row["recipient"],
        "indicator_key": key.decode(errors="replace") if key else row["alert_id"],
        "notification": row["notification"], "indicator": indicator,
        "reasons": [r for r in row["reasons"].split("; ") if r],
        "first_seen": row["first_seen"], "last_seen": row["last_seen"],
        "count": int(row["count"]) if row["count"].isdigit() else 1,
        "recurrence": row["notification"] == "recurrence",
        "sent_at": iso_ms(timestamp_ms),
    }


def _threatroute_properties(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The project's own properties of a STIX object: `x_threatroute_*` custom properties, or
    those of a property extension (the form the stix2 library wants)."""
    found = {k[len("x_threatroute_"):]: v for k, v in obj.items()
             if k.startswith("x_threatroute_")}
    for extension in (obj.get("extensions") or {}).values():
        if isinstance(extension, Mapping) and extension.get("extension_type") == \
                "property-extension":
            found.update({k: v for k, v in extension.items() if k != "extension_type"})
    return found


def _from_bundle(bundle: Mapping[str, Any], key: bytes | None) -> dict[str, Any]:
    objects = [o for o in bundle.get("objects") or () if isinstance(o, Mapping)]
    sighting = next((o for o in objects if o.get("type") == "sighting"), None)
    indicator = next((o for o in objects if o.get("type") == "indicator"), None)
    if sighting is None or indicator is None:
        raise InvalidRecord("STIX alert bundle without its indicator and sighting")
    seen, about = _threatroute_properties(sighting), _threatroute_properties(indicator)
    if not isinstance(seen.get("alert_id"), str):
        raise InvalidRecord("STIX alert bundle without an alert id")
    record = about.get("indicator")
    record = record if isinstance(record, Mapping) else {}
    return {
        "alert_id": seen["alert_id"], "recipient": seen.get("recipient", ""),
        "indicator_key": key.decode(errors="replace") if key else seen["alert_id"],
        "notification": seen.get("notification",
                                 "recurrence" if seen.get("recurrence") else "new"),
        "indicator": dict(record),
        "reasons": list(seen.get("reasons") or ()),
        "first_seen": _iso(sighting.get("first_seen")),
        "last_seen": _iso(sighting.get("last_seen")),
        "count": sighting.get("count", 1), "recurrence": bool(seen.get("recurrence")),
        "sent_at": _iso(sighting.get("created")),
    }


def _iso(stamp: object) -> str:
    """A STIX timestamp (`...Z`, maybe with a fraction) as the canonical `+00:00` form."""
    if not isinstance(stamp, str):
        return ""
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return parsed.astimezone(UTC).replace(microsecond=0).isoformat()


def locator(alert: Mapping[str, Any]) -> str:
    """What the alert is about, in one string (URL, name, address, network or ASN)."""
    source = (alert.get("indicator") or {}).get("source") or {}
    for key in ("url", "fqdn", "ip", "network"):
        if source.get(key):
            return str(source[key])
    return f"AS{source['asn']}" if source.get("asn") else "?"
