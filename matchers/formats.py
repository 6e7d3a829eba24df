"""Alert records and how each recipient wants them: JSON (default), STIX 2.1, IntelMQ or CSV.

`alert_record` builds the canonical alert (deploy/schemas/alert.schema.json), which always
goes to `alerts.ledger`; `render(alert, fmt)` turns it into the bytes for the recipient's own
topic (STIX: matchers/stix.py, IntelMQ: matchers/intelmq.py), and is what `threatroute
explain --alerts` previews. The JSON format keeps TLP 2.0 as the record has it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from threatroute.matchers.dedup import Action, AlertState
from threatroute.matchers.intelmq import intelmq_event
from threatroute.matchers.privacy import DEFAULT, AlertContent, redact_alert
from threatroute.matchers.stix import stix_bundle
from threatroute.registry import FORMATS  # the formats a recipient may ask for, defined there

# the columns of a CSV alert, in order (documented in docs/alerts.md)
CSV_COLUMNS = ("alert_id", "recipient", "notification", "classification", "tlp", "url", "fqdn",
               "ip", "port", "network", "asn", "cc", "first_seen", "last_seen", "count",
               "feed", "reasons")


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
        return json.dumps(stix_bundle(alert), separators=(",", ":"), ensure_ascii=False).encode()
    if fmt == "intelmq":
        return json.dumps(intelmq_event(alert), separators=(",", ":"),
                          ensure_ascii=False).encode()
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


__all__ = ["CSV_COLUMNS", "FORMATS", "alert_record", "csv_row", "render", "stix_bundle"]
