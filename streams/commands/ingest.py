"""`threatroute ingest`: parse a feed file and produce it to indicators.raw.

Accepted indicators (those the record contract admits, threatroute/contract.py) go to
`indicators.raw` keyed by the indicator key, as the bytes the contract checked; refused items go
to `indicators.invalid` as dead letters with their original bytes and the reason, and the
ingest goes on with the next item, whatever the refused one held (bad Unicode, a line over
the size limit, a broken document). `--dry-run` prints the normalised records instead and
needs no broker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from threatroute import topics
from threatroute.contract import seal
from threatroute.deadletter import dead_letter
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Context, Rejected, Tally, parse_report
from threatroute.streams.commands.base import DONE, REFUSED, command
from threatroute.streams.config import Config
from threatroute.streams.kafka.clients import AckedProducer, encode

RAW_TOPIC = topics.RAW
INVALID_TOPIC = topics.INVALID
PROGRESS_MIN_BYTES = 1 << 20  # a bar only for inputs big enough to take a moment


@dataclass(frozen=True)
class IngestOptions:
    fmt: str
    path: str
    dry_run: bool = False
    report: str | None = None
    defaults: tuple[tuple[str, Any], ...] = ()


class CountingReader:
    """Wraps a binary stream and counts bytes read, for the progress bar."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.position += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        line = self._stream.readline(size)
        self.position += len(line)
        return line

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self.total, self.out = total, out
        self.enabled = out.isatty() and total >= PROGRESS_MIN_BYTES
        self._last = -1

    def update(self, position: int, tally: Tally) -> None:
        if not self.enabled:
            return
        percent = min(100, position * 100 // max(1, self.total))
        if percent != self._last:
            self._last = percent
            bar = "#" * (percent // 4)
            self.out.write(f"\r[{bar:<25}] {percent:3d}%  accepted {tally.accepted}  "
                           f"invalid {tally.invalid}")
            self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\n")


def _open(path: str) -> tuple[IO[bytes], int]:
    if path == "-":
        return sys.stdin.buffer, 0
    return open(path, "rb"), os.path.getsize(path)


def ingest(options: IngestOptions, config: Config | None, out: TextIO = sys.stdout) -> Tally:
    """Run one ingest; returns the tally. A dry run writes JSON lines to `out`."""
    fmt = get_format(options.fmt)
    stream, size = _open(options.path)
    reader = CountingReader(stream)
    context = Context(filename=None if options.path == "-" else Path(options.path).name,
                      options={"report": options.report} if options.report else {})
    producer = None if options.dry_run else AckedProducer(config)  # type: ignore[arg-type]
    origin = {"format": options.fmt, "path": options.path}
    tally, progress = Tally(), Progress(size)
    try:
        for outcome in parse_report(fmt, reader, context, dict(options.defaults)):  # type: ignore[arg-type]
            tally.add(outcome)
            if isinstance(outcome, Accepted):
                value = outcome.value or seal(outcome.record)
                if producer:
                    producer.send(RAW_TOPIC, value, outcome.key)
                else:
                    out.write(value.decode() + "\n")
            elif isinstance(outcome, Rejected):
                letter = dead_letter(outcome.raw, outcome.reason, stage="ingest",
                                     field=outcome.field,
                                     origin={**origin, "item": outcome.number})
                if producer:
                    producer.send(INVALID_TOPIC, encode(letter))
                else:
                    where = f"item {outcome.number}" if outcome.number else "document"
                    field = f" [{outcome.field}]" if outcome.field else ""
                    print(f"invalid {where}{field}: {outcome.reason}", file=sys.stderr)
            if ((tally.accepted + tally.invalid) & 0x3FF) == 0:
                progress.update(reader.position, tally)
        if producer:
            producer.flush()
    finally:
        progress.done()
        if stream is not sys.stdin.buffer:
            stream.close()
    return tally


def summary(tally: Tally, dry_run: bool) -> str:
    where = "" if dry_run else f" -> {RAW_TOPIC}"
    text = f"accepted {tally.accepted}{where}; invalid {tally.invalid}"
    text += "" if dry_run else f" -> {INVALID_TOPIC}"
    if tally.skipped:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(tally.skipped.items()))
        text += f"; skipped {sum(tally.skipped.values())} ({reasons})"
    return text


def run(args: Any, config: Config) -> int:
    defaults = {"feed.name": args.feed_name, "tlp": args.tlp, "feed.accuracy": args.confidence,
                "feed.provider": args.provider}
    options = IngestOptions(args.format, args.path, args.dry_run, args.report,
                            tuple((k, v) for k, v in defaults.items() if v is not None))
    tally = ingest(options, None if args.dry_run else config)
    print(summary(tally, args.dry_run), file=sys.stderr)
    return REFUSED if tally.invalid else DONE


def register(subparsers: Any) -> None:
    from threatroute.feeds import FORMATS

    parser = command(subparsers, "ingest", handler=run, kafka=lambda args: not args.dry_run,
                     help="parse a feed and produce it to indicators.raw",
                     description="Parse a feed file (or stdin) and produce each indicator to "
                                 f"{RAW_TOPIC}; refused items go to {INVALID_TOPIC} with their "
                                 "original bytes and a reason. Exit code 1 if any was refused.")
    parser.add_argument("format", choices=list(FORMATS), metavar="FORMAT",
                        help=f"one of: {', '.join(FORMATS)}")
    parser.add_argument("path", metavar="PATH|-")
    parser.add_argument("--dry-run", action="store_true",
                        help="print normalised records as JSON lines; no broker needed")
    parser.add_argument("--report", help="shadowserver report type when the file name does not "
                                          "say")
    parser.add_argument("--feed-name", help="feed.name for records that lack one")
    parser.add_argument("--provider", help="feed.provider for records that lack one")
    parser.add_argument("--tlp", help="TLP for records that lack one (default: the format's)")
    parser.add_argument("--confidence", type=float,
                        help="feed.accuracy 0-100 for records lacking one")
