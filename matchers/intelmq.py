"""An alert as a flat IntelMQ event that IntelMQ 3.5's harmonization accepts unchanged.

The enriched record already uses IntelMQ's field names (DESIGN.md, "Records"); flattened, it
is an IntelMQ event. What IntelMQ has no field for goes under `extra.`, its own place for
such fields: the alert (`extra.alert_id`, `extra.recipient`, `extra.notification`,
`extra.reasons`, `extra.first_seen`, `extra.last_seen`, `extra.count`, `extra.recurrence`)
and the exact TLP 2.0 level (`extra.tlp_2_0`), because IntelMQ's `tlp` knows only TLP 1.0's
WHITE, GREEN, AMBER and RED: CLEAR is sent as WHITE and AMBER+STRICT as AMBER (FIRST's own
mapping of 2.0 onto 1.0). The record's own `extra` dict is spread into `extra.<key>` fields
(IntelMQ's flat form), the alert's keys winning over a feed's of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threatroute.record import flatten

TLP1_OF = {"CLEAR": "WHITE", "GREEN": "GREEN", "AMBER": "AMBER", "AMBER+STRICT": "AMBER",
           "RED": "RED"}


def intelmq_event(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The flat IntelMQ event of one alert record (matchers/formats.py `alert_record`)."""
    flat = flatten(alert["indicator"])
    extra = flat.pop("extra", None) or {}
    event: dict[str, Any] = {k: v for k, v in flat.items() if v is not None}
    tlp = event.get("tlp")
    if tlp:
        event["tlp"] = TLP1_OF[tlp]
    event.update({f"extra.{key}": value for key, value in extra.items()})
    event.update({
        "extra.alert_id": alert["alert_id"],
        "extra.recipient": alert["recipient"],
        "extra.notification": alert.get("notification", "new"),
        "extra.reasons": list(alert.get("reasons", [])),
        "extra.first_seen": alert["first_seen"],
        "extra.last_seen": alert["last_seen"],
        "extra.count": alert["count"],
        "extra.recurrence": bool(alert.get("recurrence", False)),
    })
    if alert.get("escalation"):  # who did not act, for how long (an escalation alert)
        event["extra.escalation"] = dict(alert["escalation"])
    if tlp:
        event["extra.tlp_2_0"] = tlp
    return event
