"""Fixtures for the enricher tests: the shared real data and the built demo data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from threatroute.enrichers.databuild import DemoData, build_demo_data

# /work/main/tests/unit/enrichers/conftest.py -> /work/shared/data
_DEFAULT_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared fixtures directory (THREATROUTE_SHARED_DATA); skips the test if absent."""
    path = Path(os.environ.get("THREATROUTE_SHARED_DATA", _DEFAULT_SHARED))
    if not (path / "asn").is_dir() or not (path / "mmdb").is_dir():
        pytest.skip(f"shared test data not found at {path} (set THREATROUTE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> DemoData:
    """The demo databases, built once per run from the built-in table."""
    return build_demo_data(tmp_path_factory.mktemp("demo-data"))
