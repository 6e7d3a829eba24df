"""`broker start` formats a fresh state directory every time: the real storage tool formats
many generated ids, including ones drawn after a candidate that began with "-"."""

from __future__ import annotations

import itertools
import uuid

import pytest

from threatroute.streams.config import load_config
from threatroute.streams.kafka import broker
from threatroute.streams.kafka.broker import BrokerPaths

FORMATS = 6


def _paths(root) -> BrokerPaths:
    paths = BrokerPaths(root)
    paths.data.mkdir(parents=True)
    paths.logs.mkdir(parents=True)
    paths.properties.write_text(
        "process.roles=broker,controller\nnode.id=1\n"
        "controller.quorum.voters=1@127.0.0.1:1\n"
        "listeners=PLAINTEXT://127.0.0.1:2,CONTROLLER://127.0.0.1:1\n"
        f"controller.listener.names=CONTROLLER\nlog.dirs={paths.data}\n")
    return paths


def _cluster_id_of(paths: BrokerPaths) -> str:
    meta = (paths.data / "meta.properties").read_text()
    return next(line.split("=", 1)[1] for line in meta.splitlines()
                if line.startswith("cluster.id="))


@pytest.mark.parametrize("run", range(FORMATS))
def test_storage_tool_formats_generated_ids(run, tmp_path, monkeypatch, kafka_env):
    java, libs = broker._java(), broker.ensure_jars()
    # every run's first candidate begins with "-" (0xf8...): the generator must draw again
    dashed = uuid.UUID(bytes=b"\xf8" + uuid.uuid4().bytes[1:])
    draws = itertools.chain([dashed], iter(uuid.uuid4, None))
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    paths = _paths(tmp_path / "state")
    broker._format_storage(java, libs, paths, load_config(None), secure=False)
    formatted = _cluster_id_of(paths)
    assert not formatted.startswith("-") and len(formatted) == 22


def test_even_an_id_beginning_with_a_dash_is_passed_as_a_value(tmp_path, monkeypatch, kafka_env):
    # `-t -xyz` was read as an option; `--cluster-id=-xyz` is a value whatever it holds
    monkeypatch.setattr(broker, "cluster_id", lambda: "-" + "A" * 21)
    paths = _paths(tmp_path / "state")
    broker._format_storage(broker._java(), broker.ensure_jars(), paths, load_config(None),
                           secure=False)
    assert _cluster_id_of(paths) == "-" + "A" * 21
