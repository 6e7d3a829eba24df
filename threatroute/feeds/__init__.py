"""Feed formats by name. Each lives in its own module; nothing is imported until asked for."""

from __future__ import annotations

import importlib

from threatroute.errors import ConfigError
from threatroute.feeds.base import FeedFormat

FORMATS: dict[str, str] = {
    "jsonl": "jsonl:JsonLines",
    "intelmq": "intelmq:IntelMQEvents",
    "feodo-json": "feodo:FeodoJson",
    "feodo-csv": "feodo:FeodoCsv",
    "urlhaus-csv": "urlhaus:UrlhausCsv",
    "threatfox-json": "threatfox:ThreatfoxJson",
    "phishtank-json": "phishtank:PhishtankJson",
    "openphish": "openphish:OpenPhish",
    "spamhaus-drop": "spamhaus:SpamhausDrop",
    "spamhaus-asndrop": "spamhaus:SpamhausAsnDrop",
    "cymru": "cymru:CymruCap",
    "shadowserver": "shadowserver:Shadowserver",
    "misp": "misp:Misp",
    "stix": "stix:Stix",
}


def get_format(name: str) -> FeedFormat:
    """A fresh instance of the named format."""
    try:
        module_name, class_name = FORMATS[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown feed format {name!r}; known: {', '.join(FORMATS)}") from None
    module = importlib.import_module(f"threatroute.feeds.{module_name}")
    fmt: FeedFormat = getattr(module, class_name)()
    return fmt
