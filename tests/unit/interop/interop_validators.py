"""The ecosystem's own validators, as the tests use them: OASIS's stix2-validator and the
stix2 library for STIX 2.1, IntelMQ 3.5's harmonization (its `Event` class) for IntelMQ."""

from __future__ import annotations

from functools import cache
from typing import Any

import stix2
from intelmq.lib.message import Event
from stix2validator import ValidationOptions, validate_instance

# every check, warnings ("SHOULD") counted as errors, every referenced object present
STRICT = ValidationOptions(version="2.1", strict=True, strict_types=True,
                           strict_properties=True, enforce_refs=True)


def stix_errors(bundle: dict[str, Any]) -> list[str]:
    """Everything stix2-validator says (errors and warnings), plus stix2's own refusal."""
    result = validate_instance(bundle, STRICT)
    problems = [str(e) for e in result.errors] + [str(w) for w in result.warnings]
    try:
        stix2.parse(bundle, allow_custom=False)
    except Exception as exc:  # stix2 raises several exception types; any is a refusal
        problems.append(f"stix2: {exc}")
    return problems


@cache
def _harmonization() -> dict[str, Any]:
    return Event(harmonization=None).harmonization_config


def intelmq_rejections(event: dict[str, Any]) -> list[str]:
    """Fields IntelMQ's harmonization refuses as they are (without its sanitising), and fields
    the Event does not keep unchanged."""
    problems = []
    checked = Event(harmonization={"event": _harmonization()})
    for key, value in event.items():
        try:
            if not checked.add(key, value, sanitize=False, raise_failure=False):
                problems.append(f"{key}={value!r}: invalid for IntelMQ")
        except Exception as exc:  # InvalidKey and friends
            problems.append(f"{key}: {exc}")
    if not problems and checked.to_dict(hierarchical=False) != event:
        problems.append("IntelMQ changed the event")
    return problems
