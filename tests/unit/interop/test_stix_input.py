"""Acceptance: compound patterns of the real STIX samples keep every mappable observable.

The oracle is stix2-patterns' own reading of each pattern (`Pattern.inspect()`): every equality
comparison it finds on an address, domain, URL or AS number must come out of the parser as an
event (accepted, or refused by validation with the reason), and every other comparison as a
dead letter, never silently lost."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from stix2patterns.v21.pattern import Pattern

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Rejected, Skipped, parse_report

SHARED = Path(os.environ.get("THREATROUTE_SHARED_DATA",
                             Path(__file__).resolve().parents[4] / "shared" / "data"))
SAMPLES = sorted((SHARED / "feeds" / "stix").glob("*.json"))
LOCATOR_PATHS = {("ipv4-addr", "value"), ("ipv6-addr", "value"), ("domain-name", "value"),
                 ("url", "value"), ("autonomous-system", "number")}


def compound_indicators():
    for path in SAMPLES:
        document = json.loads(path.read_bytes())
        objects = document.get("objects", [document]) if isinstance(document, dict) else document
        for obj in objects:
            pattern = obj.get("pattern") if isinstance(obj, dict) else None
            if pattern and (" OR " in pattern or " AND " in pattern):
                yield pytest.param(obj, id=f"{path.name}:{obj['id'][-12:]}")


def oracle(pattern: str) -> tuple[int, int]:
    """(mappable observables, others) as stix2-patterns reads the pattern."""
    mappable = others = 0
    for kind, comparisons in Pattern(pattern).inspect().comparisons.items():
        for path, op, _ in comparisons:
            if (kind, ".".join(map(str, path))) in LOCATOR_PATHS and op == "=":
                mappable += 1
            else:
                others += 1
    return mappable, others


@pytest.mark.skipif(not SAMPLES, reason=f"no STIX samples at {SHARED} (THREATROUTE_SHARED_DATA)")
@pytest.mark.parametrize("indicator", list(compound_indicators()))
def test_compound_pattern_keeps_every_mappable_observable(indicator):
    mappable, others = oracle(indicator["pattern"])
    bundle = io.BytesIO(json.dumps({"type": "bundle", "objects": [indicator]}).encode())
    outcomes = list(parse_report(get_format("stix"), bundle))
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    if mappable == 0:  # hashes, certificates: nothing to route, counted as skipped
        assert [type(o) for o in outcomes] == [Skipped]
        return
    assert len(accepted) + len(rejected) == mappable + others
    # every refusal keeps the indicator's bytes and says why
    assert all(json.loads(o.raw)["id"] == indicator["id"] and o.reason for o in rejected)
    values = {str(v) for o in accepted for v in o.record["source"].values()}
    for kind, comparisons in Pattern(indicator["pattern"]).inspect().comparisons.items():
        for path, _, value in comparisons:
            refused = any(value.strip("'") in o.reason for o in rejected)
            if (kind, ".".join(map(str, path))) in LOCATOR_PATHS:
                assert value.strip("'").lower() in values or refused, (kind, value)


def test_the_samples_hold_compound_patterns():
    assert len(list(compound_indicators())) >= 20 or not SAMPLES
