"""`phishtank-json`: PhishTank `online-valid.json`, a list of verified phishing URLs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from threatroute.errors import InvalidRecord
from threatroute.feeds.base import (
    Context,
    FeedFormat,
    FieldMap,
    Unit,
    json_list,
    map_fields,
    unit_object,
)


def _detail(key: str):
    """A column of the first `details` entry (the host's address at detection time)."""
    def get(entry: Mapping[str, Any]) -> Any:
        details = entry.get("details") or [{}]
        if not isinstance(details, list) or not isinstance(details[0], dict):
            raise InvalidRecord("details must be a list of objects", "details")
        return details[0].get(key)
    return get


FIELDS: FieldMap = [
    ("source.url", "url"),
    ("time.source", "submission_time"),
    ("event_description.url", "phish_detail_url"),
    ("event_description.target", "target"),
    ("status", lambda entry: {"yes": "online", "no": "offline"}.get(entry.get("online", ""))),
    ("source.ip", _detail("ip_address")),
    ("source.network", _detail("cidr_block")),
    ("source.asn", _detail("announcing_network")),
    ("source.geolocation.cc", _detail("country")),
    ("extra.phishtank.phish_id", "phish_id"),
    ("extra.phishtank.verified", "verified"),
    ("extra.phishtank.verification_time", "verification_time"),
]


class PhishtankJson(FeedFormat):
    name = "phishtank-json"
    description = "PhishTank online-valid.json"
    defaults = {
        "feed.name": "PhishTank",
        "feed.provider": "PhishTank",
        "feed.url": "https://data.phishtank.com/data/online-valid.json",
        "classification.type": "phishing",
        "tlp": "CLEAR",
    }

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        yield from json_list(stream, "PhishTank JSON")

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        return [map_fields(unit_object(unit), FIELDS)]
