"""`threatroute recipients token ID --out FILE`: issue or rotate a recipient's gateway token.

The token goes to FILE alone (mode 0600, written atomically), never to stdout, a log or the
broker; `gateway.tokens` gets its SHA-256 (threatroute/tokens.py), replacing the previous one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from threatroute import topics
from threatroute.errors import ConfigError
from threatroute.streams.config import Config
from threatroute.streams.kafka.admin import admin, ensure_topics
from threatroute.streams.kafka.clients import AckedProducer, encode
from threatroute.streams.runtime.registry import read_registry
from threatroute.tokens import issue


def write_secret(path: Path, text: str) -> None:
    """`text` into `path`, readable by its owner only, never visible half-written."""
    path = path.expanduser()
    fd, temporary = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def issue_token(config: Config, recipient: str, out: Path) -> None:
    if recipient not in read_registry(config):
        raise ConfigError(f"no recipient {recipient!r} in the registry")
    ensure_topics(admin(config), [config.topic(topics.GATEWAY_TOKENS)])
    token, record = issue(recipient)
    write_secret(out, token)
    producer = AckedProducer(config)
    producer.send(topics.GATEWAY_TOKENS, encode(record.to_json()), recipient)
    producer.flush()
