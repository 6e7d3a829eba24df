"""The ingest command's terminal progress bar and closing summary (no broker: --dry-run)."""

from __future__ import annotations

import io
import json

from threatroute.feeds.base import Tally
from threatroute.streams.commands.ingest import IngestOptions, Progress, ingest, summary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_only_for_large_inputs():
    tally = Tally(accepted=5, invalid=1)
    bar = Terminal()
    Progress(4 << 20, bar).update(2 << 20, tally)
    assert "50%" in bar.getvalue() and "accepted 5" in bar.getvalue()
    small, piped = Terminal(), io.StringIO()
    Progress(1000, small).update(500, tally)
    Progress(4 << 20, piped).update(2 << 20, tally)
    assert small.getvalue() == "" and piped.getvalue() == ""


def test_dry_run_prints_records_and_the_summary_accounts_for_every_item(tmp_path):
    good = {"classification": {"type": "scanner"}, "source": {"ip": "192.0.2.1"}}
    path = tmp_path / "feed.jsonl"
    path.write_text(json.dumps(good) + "\n{broken\n" + json.dumps(good) + "\n")
    out = io.StringIO()
    tally = ingest(IngestOptions("jsonl", str(path), dry_run=True), None, out)
    assert [json.loads(line)["source"]["ip"] for line in out.getvalue().splitlines()] == [
        "192.0.2.1", "192.0.2.1"]
    assert (tally.accepted, tally.invalid) == (2, 1)
    assert summary(tally, dry_run=True) == "accepted 2; invalid 1"
    assert summary(Tally(1, 0, {"MISP md5 attribute": 3}), dry_run=False) == (
        "accepted 1 -> indicators.raw; invalid 0 -> indicators.invalid; "
        "skipped 3 (3 MISP md5 attribute)")
