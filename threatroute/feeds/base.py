"""The one contract every feed format implements, and the one runner that drives them.

A format splits a report into units (a line, a CSV row, one JSON element), each kept with its
original bytes, and maps each unit to flat IntelMQ events through a table of
(field, column-or-function). The runner admits every event through the record contract
(`contract.admit`: normalise, check, encode within the size limit); a unit that fails to decode
or map, or an event the contract refuses, becomes a `Rejected` carrying the original bytes and
the reason, and the runner carries on, whatever the unit holds. Fourteen formats, one loop.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from threatroute.contract import MAX_UNIT_BYTES, admit
from threatroute.errors import InvalidRecord, ThreatrouteError

__all__ = ["MAX_UNIT_BYTES"]  # a line longer than this is not an indicator: refused undecoded


class BrokenDocument(InvalidRecord):
    """A whole-report document (JSON) that does not decode; keeps its bytes for the dead letter."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.raw = raw


class Skip(ThreatrouteError):
    """A well-formed item that threatroute does not route (a file hash, a YARA rule...).

    Not an error in the feed, so not dead-lettered; the runner counts it by reason so the
    summary accounts for every item.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Unit:
    """One item of a report: its original bytes, 1-based position, and decoded value."""

    raw: bytes
    number: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Context:
    """What the runner knows about the report being parsed."""

    filename: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    record: dict[str, Any]
    key: str
    number: int
    value: bytes = b""  # the record encoded, as the contract checked it (its size included)


@dataclass(frozen=True, slots=True)
class Rejected:
    raw: bytes
    reason: str
    number: int
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str
    number: int


Outcome = Accepted | Rejected | Skipped
Column = str | Callable[[Any], Any]
FieldMap = Sequence[tuple[str, Column]]


class FeedFormat:
    """Base of every format. Subclasses set `name`, `defaults`, and override `units`/`events`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # flat IntelMQ fields every event of this format gets unless it sets them itself
    defaults: ClassVar[Mapping[str, Any]] = {}

    def units(self, stream: IO[bytes], context: Context) -> Iterator[Unit]:
        """Split the report; default: one unit per non-blank line that is not a comment."""
        yield from text_lines(stream)

    def events(self, unit: Unit, context: Context) -> Iterable[Mapping[str, Any] | InvalidRecord]:
        """Map one unit to flat IntelMQ events; raise InvalidRecord or Skip. An InvalidRecord
        among the events is a part of the unit that could not be mapped (dead-lettered with
        the unit's bytes while the other events go on)."""
        raise NotImplementedError


def decode(raw: bytes) -> str:
    if len(raw) > MAX_UNIT_BYTES:
        raise InvalidRecord(f"item too large ({len(raw)} bytes, limit {MAX_UNIT_BYTES})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(f"not valid UTF-8 at byte {exc.start}") from None


def text_lines(stream: Iterable[bytes], comments: tuple[str, ...] = ("#",)) -> Iterator[Unit]:
    """Non-blank lines with their original bytes; lines starting with a comment prefix skipped.

    The value is None; formats decode in `events` so a bad encoding is one rejected line.
    """
    for number, raw in enumerate(stream, 1):
        stripped = raw.strip()
        if not stripped or any(stripped.startswith(c.encode()) for c in comments):
            continue
        yield Unit(raw.rstrip(b"\r\n"), number)


def csv_rows(stream: Iterable[bytes], *, header: Sequence[str] | None = None,
             comments: tuple[str, ...] = ("#",), delimiter: str = ",",
             header_in_comment: bool = False, short_rows: bool = False) -> Iterator[Unit]:
    """CSV rows as dicts keyed by the header (the file's first row unless `header` is given).

    `header_in_comment`: the header is the last comment line before the first data row (URLhaus
    writes `# id,dateadded,url,...`). `short_rows`: a row with fewer cells than the header has
    its trailing columns empty (Shadowserver appends columns to live reports).

    Each unit keeps its line's original bytes; a row that does not decode or has the wrong
    number of cells is yielded with an InvalidRecord as value for the runner to reject.
    """
    columns = list(header) if header else None
    commented: bytes | None = None
    lines = text_lines(stream, () if header_in_comment else comments)
    for unit in lines:
        stripped = unit.raw.strip()
        if header_in_comment and any(stripped.startswith(c.encode()) for c in comments):
            if columns is None:
                commented = stripped.lstrip(b"".join(c.encode() for c in comments)).strip()
            continue
        if columns is None and commented is not None:
            columns = _header_cells(commented, delimiter)
        try:
            cells = next(csv.reader([decode(unit.raw)], delimiter=delimiter))
        except InvalidRecord as exc:
            yield Unit(unit.raw, unit.number, exc)
            continue
        except csv.Error as exc:
            yield Unit(unit.raw, unit.number, InvalidRecord(f"bad CSV: {exc}"))
            continue
        if columns is None:
            columns = [c.strip().lstrip("\ufeff") for c in cells]
            continue
        if short_rows and len(cells) < len(columns):
            cells += [""] * (len(columns) - len(cells))
        if len(cells) != len(columns):
            yield Unit(unit.raw, unit.number, InvalidRecord(
                f"expected {len(columns)} CSV fields, got {len(cells)}"))
            continue
        row = dict(zip(columns, (c.strip() for c in cells), strict=True))
        yield Unit(unit.raw, unit.number, row)


def _header_cells(line: bytes, delimiter: str) -> list[str] | None:
    try:
        cells = next(csv.reader([line.decode("utf-8", "replace")], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return None
    return [c.strip().lstrip("\ufeff") for c in cells] or None


def read_json(stream: IO[bytes]) -> tuple[Any, bytes]:
    """Decode a whole-report JSON document and keep its bytes (for BrokenDocument on bad shape)."""
    raw = stream.read()
    try:
        return json.loads(raw), raw
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BrokenDocument(f"not a JSON document: {exc}"[:300], raw) from None


def json_document(stream: IO[bytes]) -> Any:
    """Decode a whole-report JSON document; a broken one is one rejected unit."""
    return read_json(stream)[0]


def json_elements(items: Iterable[Any], start: int = 1) -> Iterator[Unit]:
    """Units for the elements of a decoded JSON document; raw is each element re-encoded."""
    for number, item in enumerate(items, start):
        yield Unit(_element_bytes(item), number, item)


def _element_bytes(item: Any) -> bytes:
    try:
        return json.dumps(item, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the document): keep it escaped
        return json.dumps(item).encode()


def unit_value(unit: Unit) -> Any:
    """The decoded value, re-raising an error `units` attached instead of a value."""
    if isinstance(unit.value, InvalidRecord):
        raise unit.value
    return unit.value


def unit_object(unit: Unit) -> dict[str, Any]:
    """The decoded value, which must be a JSON object (a CSV row is one too)."""
    value = unit_value(unit)
    if not isinstance(value, dict):
        raise InvalidRecord(f"expected an object, got {type(value).__name__}")
    return value


def json_list(stream: IO[bytes], what: str) -> Iterator[Unit]:
    """Units for a report that is one JSON list of entries (Feodo, PhishTank...)."""
    document, raw = read_json(stream)
    if not isinstance(document, list):
        raise BrokenDocument(f"{what} must be a JSON list of entries", raw)
    yield from json_elements(document)


def map_fields(row: Mapping[str, Any], table: FieldMap) -> dict[str, Any]:
    """Apply a (field, column-or-function) table to one row; empty cells are left out."""
    event: dict[str, Any] = {}
    for name, column in table:
        value = column(row) if callable(column) else row.get(column)
        if value not in (None, ""):
            event[name] = value
    return event


@dataclass
class Tally:
    """What one ingest run did with its input; the counts add up to every item read."""

    accepted: int = 0
    invalid: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, Accepted):
            self.accepted += 1
        elif isinstance(outcome, Rejected):
            self.invalid += 1
        else:
            self.skipped[outcome.reason] = self.skipped.get(outcome.reason, 0) + 1


def parse_report(fmt: FeedFormat, stream: IO[bytes], context: Context | None = None,
                 defaults: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
    """Drive `fmt` over a report; never raises for bad content, yields one outcome per item."""
    context = context or Context()
    merged = {**fmt.defaults, **(defaults or {})}
    try:
        units = iter(fmt.units(stream, context))
        while True:
            try:
                unit = next(units)
            except StopIteration:
                return
            yield from _run_unit(fmt, unit, context, merged)
    except BrokenDocument as exc:  # the report as a whole did not decode
        yield Rejected(exc.raw, exc.reason, 0)
    except InvalidRecord as exc:  # a format that refused the report without keeping its bytes
        yield Rejected(b"", exc.reason, 0, exc.field)
    except _UNEXPECTED as exc:  # a splitter bug: say so in a dead letter, never crash ingest
        yield Rejected(b"", _unexpected(exc), 0)


# a unit shaped unlike anything the format expects (or nested past the recursion limit):
# refuse it, never stop the run
_UNEXPECTED = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError)


def _run_unit(fmt: FeedFormat, unit: Unit, context: Context, defaults: Mapping[str, Any]
              ) -> Iterator[Outcome]:
    try:
        events = list(fmt.events(unit, context))
    except Skip as skip:
        yield Skipped(skip.reason, unit.number)
        return
    except InvalidRecord as exc:
        yield Rejected(unit.raw, exc.reason, unit.number, exc.field)
        return
    except _UNEXPECTED as exc:
        yield Rejected(unit.raw, _unexpected(exc), unit.number)
        return
    for event in events:
        if isinstance(event, InvalidRecord):  # a part of the unit its format could not map
            yield Rejected(unit.raw, event.reason, unit.number, event.field)
            continue
        try:
            admitted = admit(event, defaults)
        except InvalidRecord as exc:
            yield Rejected(unit.raw, exc.reason, unit.number, exc.field)
        except _UNEXPECTED as exc:
            yield Rejected(unit.raw, _unexpected(exc), unit.number)
        else:
            yield Accepted(admitted.record, admitted.key, unit.number, admitted.value)


def _unexpected(exc: BaseException) -> str:
    return f"unexpected structure: {type(exc).__name__}: {exc}"[:300]
