"""IntelMQ's classification vocabulary (RSIT): every type, its taxonomy, and legacy aliases.

Values follow IntelMQ 3.x `ClassificationType` / `ClassificationTaxonomy`; taxonomy is always
derived from type so that the two can never disagree on the wire.
"""

from __future__ import annotations

from threatroute.errors import InvalidRecord

TAXONOMY_OF_TYPE: dict[str, str] = {
    "spam": "abusive-content",
    "harmful-speech": "abusive-content",
    "violence": "abusive-content",
    "infected-system": "malicious-code",
    "c2-server": "malicious-code",
    "malware-distribution": "malicious-code",
    "malware-configuration": "malicious-code",
    "scanner": "information-gathering",
    "sniffing": "information-gathering",
    "social-engineering": "information-gathering",
    "ids-alert": "intrusion-attempts",
    "brute-force": "intrusion-attempts",
    "exploit": "intrusion-attempts",
    "privileged-account-compromise": "intrusions",
    "unprivileged-account-compromise": "intrusions",
    "application-compromise": "intrusions",
    "system-compromise": "intrusions",
    "burglary": "intrusions",
    "dos": "availability",
    "ddos": "availability",
    "misconfiguration": "availability",
    "outage": "availability",
    "sabotage": "availability",
    "unauthorised-information-access": "information-content-security",
    "unauthorised-information-modification": "information-content-security",
    "data-loss": "information-content-security",
    "data-leak": "information-content-security",
    "unauthorized-use-of-resources": "fraud",
    "copyright": "fraud",
    "masquerade": "fraud",
    "phishing": "fraud",
    "weak-crypto": "vulnerable",
    "ddos-amplifier": "vulnerable",
    "potentially-unwanted-accessible": "vulnerable",
    "information-disclosure": "vulnerable",
    "vulnerable-system": "vulnerable",
    # IntelMQ keeps these under "other" (malware moved there when RSIT split it up)
    "blacklist": "other",
    "dga-domain": "other",
    "malware": "other",
    "other": "other",
    "proxy": "other",
    "tor": "other",
    "undetermined": "other",
    "test": "test",
}

# IntelMQ's own automatic mappings of old values, plus spellings feeds use in the wild.
ALIASES: dict[str, str] = {
    "botnet drone": "infected-system",
    "ids alert": "ids-alert",
    "c&c": "c2-server",
    "c2server": "c2-server",
    "c2": "c2-server",
    "infected system": "infected-system",
    "malware configuration": "malware-configuration",
    "leak": "data-leak",
    "vulnerable client": "vulnerable-system",
    "vulnerable service": "vulnerable-system",
    "ransomware": "infected-system",
    "unknown": "undetermined",
    "unauthorised-use-of-resources": "unauthorized-use-of-resources",
}

TAXONOMIES = frozenset(TAXONOMY_OF_TYPE.values())

# Types where the port is the thing to take down (a service listening there), so the port is
# part of the indicator's identity: a C2 on 443 and on 8080 are two servers to remove. For every
# other type (infected systems, scanners, brute-force and DDoS sources, spam senders...) the
# port is an ephemeral client port and the address alone is the indicator: a sinkhole seeing
# one bot on five source ports saw one bot.
SERVICE_TYPES = frozenset({
    "c2-server", "malware-distribution", "malware-configuration", "phishing", "proxy",
    "ddos-amplifier", "vulnerable-system", "potentially-unwanted-accessible", "weak-crypto",
    "information-disclosure", "misconfiguration",
})


def classification_type(value: object) -> str:
    """Return the canonical IntelMQ classification.type for `value` or raise InvalidRecord."""
    if not isinstance(value, str):
        raise InvalidRecord(f"expected a string, got {type(value).__name__}")
    text = value.strip().lower()
    text = ALIASES.get(text, text)
    if text not in TAXONOMY_OF_TYPE:
        raise InvalidRecord(f"unknown classification type {value[:64]!r}")
    return text
