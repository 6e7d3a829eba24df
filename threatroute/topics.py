"""Every topic name, per-recipient topic and consumer-group id, defined once.

Pure names (no Kafka): the stages, the commands, the gateway and the tests all spell a topic
through this module, so a rename is one edit and a typo is an import error.
"""

from __future__ import annotations

# the dataflow, in order (DESIGN.md)
RAW = "indicators.raw"
ASN = "indicators.asn"
GEO = "indicators.geo"
ENRICHED = "indicators.enriched"
INVALID = "indicators.invalid"          # dead letters of ingest and the indicator stages
LEDGER = "alerts.ledger"                # every alert sent, latest state per alert id
STATUS = "alerts.status"                # accepted feedback, latest status per alert id
MATCH_STATE = "match.state"             # the match stage's dedup changelog
MATCH_FEEDBACK = "match.feedback"       # accepted reports, keyed by indicator key, for match
MATCH_VERDICTS = "match.verdicts"       # changelog: latest report per recipient and indicator
MATCH_WATCH = "match.watch"             # changelog: owner alerts watched for escalation
MATCH_TRUST = "match.trust"             # per partition feedback counts per feed (read whole)
MATCH_ROUTED = "match.routed"           # every alert, keyed by recipient id: publish's input
CORRECTIONS = "corrections"             # not_ours claims for the operator (compacted)
FEEDBACK = "feedback"                   # reports, judged per alerts.ledger partition (below)
FEEDBACK_INVALID = "feedback.invalid"   # dead letters of the feedback stage
RECIPIENTS = "recipients"               # the compacted registry
GATEWAY_TOKENS = "gateway.tokens"       # compacted: recipient id -> hash of its gateway token
DELIVERY_FAILED = "delivery.failed"     # dead letters of push delivery (webhook, e-mail)

# per-recipient topics: what the recipient reads, and what it writes back
ALERTS_PREFIX = "alerts."
FEEDBACK_PREFIX = "feedback."
CONTRIBUTIONS_PREFIX = "contributions."


def _every_but(prefix: str, word: str) -> str:
    """A regex (POSIX ERE, no lookahead: what librdkafka's engine reads) matching `prefix`
    followed by anything non-empty except exactly `word`."""
    escaped = prefix.replace(".", "\\.")
    differs = "|".join(f"{word[:i]}[^{word[i]}]" for i in range(len(word)))
    shorter = "|".join(word[:i] for i in range(1, len(word)))
    return f"^{escaped}((({differs}|{word}.).*)|{shorter})$"


# pattern subscriptions (librdkafka regex) to every recipient's topic of a kind, leaving out
# the pipeline's own topic of that prefix (feedback.invalid).
# A report on feedback.<id> is moved to `feedback` (on its alert's partition) with the sender
# the topic named in SENDER_HEADER: only the pipeline can write `feedback` on a secure broker
FEEDBACK_PATTERN = _every_but("feedback.", "invalid")
CONTRIBUTIONS_PATTERN = r"^contributions\..+"
SENDER_HEADER = "threatroute-sender"

# topics of the pipeline whose names start with a per-recipient prefix but are not a recipient's
_NOT_RECIPIENT = {LEDGER, STATUS, FEEDBACK_INVALID}
# so these are no recipient's id: its alerts.<id> or feedback.<id> would be one of them
RESERVED_RECIPIENT_IDS = frozenset(topic.split(".", 1)[1] for topic in _NOT_RECIPIENT)

GROUP_PREFIX = "threatroute-"

# header of an intermediate record (indicators.asn, indicators.geo) that a fused enrichment
# chain already took to the end of the chain: lone downstream stages commit past it
CARRIED_HEADER = "threatroute-carried"

# header of a match.routed record: the alert's own record key (its indicator key), which the
# publish stage restores on alerts.<recipient> (the record's key there is the recipient id)
ALERT_KEY_HEADER = "threatroute-alert-key"


def alerts_topic(recipient_id: str) -> str:
    return f"{ALERTS_PREFIX}{recipient_id}"


def feedback_topic(recipient_id: str) -> str:
    return f"{FEEDBACK_PREFIX}{recipient_id}"


def contributions_topic(recipient_id: str) -> str:
    return f"{CONTRIBUTIONS_PREFIX}{recipient_id}"


def recipient_of(topic: str, prefix: str) -> str | None:
    """The recipient id a per-recipient topic belongs to (None if `topic` is not one)."""
    if topic in _NOT_RECIPIENT or not topic.startswith(prefix):
        return None
    return topic[len(prefix):] or None


def group_id(stage: str) -> str:
    """The consumer group of a pipeline stage (asn, geo, hoster, match, feedback, ...)."""
    return f"{GROUP_PREFIX}{stage}"


def delivery_group(path: str, recipient_id: str) -> str:
    """The group of one push-delivery path (webhook, email) for one recipient: the pipeline's
    own (`threatroute-` prefix), never the recipient's `<id>.` groups, so a recipient's own
    clients cannot move the offsets of what is pushed to it."""
    return group_id(f"{path}.{recipient_id}")
