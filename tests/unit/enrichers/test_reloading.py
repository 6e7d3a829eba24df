"""Reloading: a replaced data file is picked up, a broken one is not."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

from threatroute.enrichers.asn import AsnDatabase
from threatroute.enrichers.reloading import Reloading, file_signature
from threatroute.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TextResource:
    """A resource that is the content of a file; 'broken' content fails to open."""

    def __init__(self, path: Path) -> None:
        self.text = path.read_text()
        if "broken" in self.text:
            raise ConfigError(f"{path}: broken")
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def setup(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_text("one")
    clock, errors = Clock(), []
    holder = Reloading(partial(TextResource, path), [path], interval=10, on_error=errors.append,
                       clock=clock)
    return path, clock, errors, holder


def test_replacement_seen_after_interval(setup) -> None:
    path, clock, errors, holder = setup
    first = holder.get()
    _replace(path, "two")
    clock.now += 9
    assert holder.get() is first  # not checked yet
    clock.now += 1
    second = holder.get()
    assert second.text == "two"
    assert first.closed and not second.closed
    assert holder.reloads == 1 and errors == []


def test_unchanged_file_is_not_reopened(setup) -> None:
    _path, clock, _errors, holder = setup
    first = holder.get()
    clock.now += 100
    assert holder.get() is first and holder.reloads == 0


def test_rewrite_in_place_is_seen(setup) -> None:
    path, clock, _errors, holder = setup
    path.write_text("three!")  # same inode, new size and mtime
    clock.now += 10
    assert holder.get().text == "three!"


def test_broken_replacement_keeps_old_and_reports(setup) -> None:
    path, clock, errors, holder = setup
    first = holder.get()
    _replace(path, "broken")
    clock.now += 10
    assert holder.get() is first and not first.closed
    assert len(errors) == 1 and isinstance(errors[0], ConfigError)
    clock.now += 10
    holder.get()
    assert len(errors) == 1  # the same broken file is not retried
    _replace(path, "fixed")
    clock.now += 10
    assert holder.get().text == "fixed" and first.closed


def test_missing_file_keeps_old(setup) -> None:
    path, clock, errors, holder = setup
    first = holder.get()
    path.unlink()
    clock.now += 10
    assert holder.get() is first
    assert isinstance(errors[0], FileNotFoundError)
    path.write_text("back")
    clock.now += 10
    assert holder.get().text == "back"


def test_broken_file_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("broken")
    with pytest.raises(ConfigError):
        Reloading(partial(TextResource, path), [path])


def test_close_closes_current(setup) -> None:
    _path, _clock, _errors, holder = setup
    with holder:
        resource = holder.get()
    assert resource.closed


def test_signature_of_missing_file(tmp_path: Path) -> None:
    assert file_signature([tmp_path / "nope"]) == (None,)


def test_real_asn_table_replaced(tmp_path: Path) -> None:
    table = tmp_path / "ipasn.dat"
    table.write_text("192.0.2.0/24\t64500\n")
    clock = Clock()
    with Reloading(lambda: AsnDatabase(table), [table], interval=5, clock=clock) as holder:
        assert holder.get().lookup("192.0.2.1").asn == 64500
        _replace(table, "192.0.2.0/24\t64501\n198.51.100.0/24\t64502\n")
        clock.now += 5
        db = holder.get()
        assert db.lookup("192.0.2.1").asn == 64501
        assert db.lookup("198.51.100.1").asn == 64502
