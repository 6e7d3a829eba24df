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

import orjson

from threatroute.matchers.dedup import Action, AlertState
from threatroute.matchers.intelmq import intelmq_event
from threatroute.matchers.privacy import DEFAULT, AlertContent, redact_alert, redact_indicator
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
        "indicator": indicator,  # not copied: records are not changed once made
        "reasons": list(reasons),
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "count": state.count,
        "recurrence": state.recurrence,
        "sent_at": sent_at,
    }


def render(alert: Mapping[str, Any], fmt: str, content: AlertContent = DEFAULT,
           indicator_json: bytes | None = None) -> bytes:
    """The bytes for the recipient's topic: the alert as `content` allows (matchers/privacy.py:
    by default no victim fields, secrets in URLs masked), in the recipient's format.

    `indicator_json`: `redacted_json(alert["indicator"], content)`, made once by a caller that
    renders one indicator for many recipients (used by the JSON format, which embeds it)."""
    if fmt == "json" and indicator_json is not None:
        try:
            return orjson.dumps({**alert, "indicator": orjson.Fragment(indicator_json)})
        except TypeError:
            pass  # something orjson refuses beside the indicator: the general way below
    alert = redact_alert(alert, content)
    if fmt == "stix":
        return json_bytes(stix_bundle(alert))
    if fmt == "intelmq":
        return json_bytes(intelmq_event(alert))
    if fmt == "csv":
        return csv_row(alert).encode()
    return json_bytes(alert)


def redacted_json(indicator: Mapping[str, Any], content: AlertContent = DEFAULT) -> bytes:
    """The indicator as `content` allows, as JSON (for `render`'s `indicator_json`)."""
    return json_bytes(redact_indicator(indicator, content))


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON. orjson (several times faster than json, per alert); json for what
    orjson refuses (an integer beyond 64 bits, a lone surrogate)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
            errors="replace")


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


__all__ = ["CSV_COLUMNS", "FORMATS", "alert_record", "csv_row", "json_bytes", "redacted_json",
           "render", "stix_bundle"]
