"""Shared fixtures for the feed format tests: where the real samples live, a parser runner,
and the comparison with IntelMQ's expected events.

The samples stay in ../shared/data (never copied in); THREATROUTE_SHARED_DATA points
elsewhere. Tests that need them skip, saying why, when the folder is absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from threatroute import fields
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Context, Outcome, Rejected, Skipped, parse_report
from threatroute.record import flatten
from threatroute.taxonomy import classification_type

DEFAULT_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SHARED = Path(os.environ.get("THREATROUTE_SHARED_DATA", DEFAULT_SHARED))

# the fields compared with IntelMQ wherever its expected event has them (plus every feed.*),
# each through our validator so representation (case, IPv6 form, time zone) does not count
COMPARED: dict[str, Callable[[Any], Any]] = {
    "classification.type": classification_type,
    "source.ip": fields.ip,
    "source.fqdn": fields.fqdn,
    "source.url": lambda value: fields.url(value).url,
    "source.port": fields.port,
    "time.source": fields.timestamp,
}


@pytest.fixture(scope="session")
def feeds_dir() -> Path:
    path = SHARED / "feeds"
    if not path.is_dir():
        pytest.skip(f"shared feed samples not found at {path} (set THREATROUTE_SHARED_DATA)")
    return path


class Parsed:
    """The outcomes of one parse, split by kind; records flattened to IntelMQ names."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes
        self.accepted = [o for o in outcomes if isinstance(o, Accepted)]
        self.rejected = [o for o in outcomes if isinstance(o, Rejected)]
        self.skipped = [o for o in outcomes if isinstance(o, Skipped)]
        self.records = [flatten(o.record) for o in self.accepted]


@pytest.fixture
def parse() -> Callable[..., Parsed]:
    def run(fmt: str, path: Path, **options: str) -> Parsed:
        with path.open("rb") as stream:
            context = Context(filename=str(path), options=options)
            return Parsed(list(parse_report(get_format(fmt), stream, context)))
    return run


def load_expected(path: Path) -> list[dict[str, Any]]:
    expected = json.loads(path.read_text())
    return expected if isinstance(expected, list) else [expected]


@pytest.fixture
def agrees_with_intelmq() -> Callable[..., None]:
    """Assert records match IntelMQ's expected events on the compared fields.

    `differences` maps a field to what we produce instead of IntelMQ's value (a function of
    IntelMQ's value; None = we leave the field unset). Each one is documented in docs/feeds.md.
    """
    def check(records: Sequence[Mapping[str, Any]], expected_path: Path,
              differences: Mapping[str, Callable[[Any], Any]] | None = None) -> None:
        expected = load_expected(expected_path)
        assert len(records) >= len(expected), "fewer records than IntelMQ's expected events"
        differences = differences or {}
        for ours, theirs in zip(records, expected, strict=False):
            names = [n for n in theirs if n in COMPARED or n.startswith("feed.")]
            for name in names:
                want = COMPARED.get(name, str)(theirs[name])
                if name in differences:
                    want = differences[name](want)
                assert ours.get(name) == want, (name, ours.get(name), theirs[name])
    return check
