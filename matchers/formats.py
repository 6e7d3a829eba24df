"""Alert records and how each recipient wants them: JSON (default), STIX 2.1 or CSV.

`alert_record` builds the canonical alert (deploy/schemas/alert.schema.json), which always
goes to `alerts.ledger`; `render` turns it into the bytes for the recipient's own topic.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from threatroute.matchers.dedup import Action, AlertState
from threatroute.matchers.privacy import DEFAULT, AlertContent, redact_alert

# the columns of a CSV alert, in order (documented in docs/alerts.md)
CSV_COLUMNS = ("alert_id", "recipient", "notification", "classification", "tlp", "url", "fqdn",
               "ip", "port", "network", "asn", "cc", "first_seen", "last_seen", "count",
               "feed", "reasons")
_NAMESPACE = uuid.UUID("5b1b8f5e-4a55-4d0b-9f3e-7d6f1d1f0a11")  # threatroute's STIX id space


def alert_record(state: AlertState, action: Action, indicator: Mapping[str, Any],
                 reasons: Sequence[str], sent_at: str) -> dict[str, Any]:
    return {
        "alert_id": state.alert_id,
        "recipient": state.recipient,
        "indicator_key": state.indicator_key,
        "notification": action.value,
        "indicator": dict(indicator),
        "reasons": list(reasons),
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "count": state.count,
        "recurrence": state.recurrence,
        "sent_at": sent_at,
    }


def render(alert: Mapping[str, Any], fmt: str, content: AlertContent = DEFAULT) -> bytes:
    """The bytes for the recipient's topic: the alert as `content` allows (matchers/privacy.py:
    by default no victim fields, secrets in URLs masked), in the recipient's format."""
    alert = redact_alert(alert, content)
    if fmt == "stix":
        return json.dumps(stix_bundle(alert), separators=(",", ":")).encode()
    if fmt == "csv":
        return csv_row(alert).encode()
    return json.dumps(alert, separators=(",", ":"), ensure_ascii=False).encode()


def csv_row(alert: Mapping[str, Any]) -> str:
    indicator = alert["indicator"]
    source = indicator.get("source", {})
    row = [alert["alert_id"], alert["recipient"], alert.get("notification", ""),
           indicator.get("classification", {}).get("type", ""), indicator.get("tlp", ""),
           source.get("url", ""), source.get("fqdn", ""), source.get("ip", ""),
           source.get("port", ""), source.get("network", ""), source.get("asn", ""),
           source.get("geolocation", {}).get("cc", ""), alert["first_seen"], alert["last_seen"],
           alert["count"], indicator.get("feed", {}).get("name", ""), "; ".join(alert["reasons"])]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def _quote(value: object) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix_pattern(source: Mapping[str, Any]) -> str:
    if "url" in source:
        return f"[url:value = {_quote(source['url'])}]"
    if "fqdn" in source:
        return f"[domain-name:value = {_quote(source['fqdn'])}]"
    for key in ("ip", "network"):
        if key in source:
            kind = "ipv6-addr" if ":" in str(source[key]) else "ipv4-addr"
            return f"[{kind}:value = {_quote(source[key])}]"
    return f"[autonomous-system:number = {int(source['asn'])}]"


def stix_bundle(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A STIX 2.1 bundle: the indicator (stable id per indicator key) and a sighting of it."""
    indicator = alert["indicator"]
    indicator_id = f"indicator--{uuid.uuid5(_NAMESPACE, alert['indicator_key'])}"
    first_seen = alert["first_seen"].replace("+00:00", "Z")
    last_seen = alert["last_seen"].replace("+00:00", "Z")
    sent = alert["sent_at"].replace("+00:00", "Z")
    ctype = indicator.get("classification", {}).get("type", "undetermined")
    stix_indicator = {
        "type": "indicator", "spec_version": "2.1", "id": indicator_id,
        "created": first_seen, "modified": sent, "valid_from": first_seen,
        "name": f"{ctype}: {stix_pattern(indicator.get('source', {}))}",
        "pattern": stix_pattern(indicator.get("source", {})), "pattern_type": "stix",
        "indicator_types": ["malicious-activity"], "labels": [ctype],
        "x_threatroute_indicator": indicator,
    }
    sighting = {
        "type": "sighting", "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid5(_NAMESPACE, alert['alert_id'] + str(alert['count']))}",
        "created": sent, "modified": sent, "first_seen": first_seen, "last_seen": last_seen,
        "count": alert["count"], "sighting_of_ref": indicator_id,
        "x_threatroute_alert_id": alert["alert_id"], "x_threatroute_recipient": alert["recipient"],
        "x_threatroute_reasons": alert["reasons"],
        "x_threatroute_recurrence": alert.get("recurrence", False),
    }
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
            "objects": [stix_indicator, sighting]}
