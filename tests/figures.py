"""Figures tests report at the end of the run (pytest's terminal summary, tests/conftest.py),
so a passing `make test` still shows them: e.g. the crash test's lost / unexpected /
duplicated counts."""

from __future__ import annotations

FIGURES: dict[str, list[str]] = {}  # section title -> lines, in the order reported


def report(section: str, line: str) -> None:
    """Print `line` now (seen with -s) and keep it for the summary."""
    print(line)
    FIGURES.setdefault(section, []).append(line)
