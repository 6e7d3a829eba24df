"""`openphish`: the OpenPhish community feed, one phishing URL per line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from threatroute.feeds.base import Context, FeedFormat, Unit, decode


class OpenPhish(FeedFormat):
    name = "openphish"
    description = "OpenPhish feed.txt: one phishing URL per line"
    defaults = {
        "feed.name": "OpenPhish",
        "feed.provider": "OpenPhish",
        "feed.url": "https://openphish.com/feed.txt",
        "classification.type": "phishing",
        "tlp": "CLEAR",
    }

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any]]:
        # the feed carries no time: time.source stays unset (IntelMQ leaves it unset too)
        return [{"source.url": decode(unit.raw).strip()}]
