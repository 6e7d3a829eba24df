"""Run-wide settings: the fuzz tests' scale, and the figures tests print at the end."""

from __future__ import annotations

import os

import pytest

from tests import figures, hostile

# THREATROUTE_FUZZ_SCALE=10 runs ten times the generated inputs (a longer local hunt)
hostile.SCALE = float(os.environ.get("THREATROUTE_FUZZ_SCALE", "1"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for section, lines in figures.FIGURES.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)
    if not hostile.COUNTS:
        return
    terminalreporter.section("hostile input (generated)")
    for name, count in sorted(hostile.COUNTS.items()):
        terminalreporter.write_line(f"{name:48} {count:>10,}")
    inputs = sum(count for name, count in hostile.COUNTS.items() if name in hostile.TOTALS)
    terminalreporter.write_line(f"{'inputs in all':48} {inputs:>10,}")
