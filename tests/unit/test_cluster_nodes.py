"""`broker start --nodes N`: each node's ports, directory and server.properties, the bootstrap
every command then uses, and what one node keeps from before (no Kafka, no Java)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from threatroute.streams.config import BROKER_DEFAULT, load_config
from threatroute.streams.kafka import broker
from threatroute.streams.kafka.broker import BrokerError


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("THREATROUTE_STATE", str(tmp_path / "state"))
    for name in ("THREATROUTE_BOOTSTRAP", "THREATROUTE_BROKER_PORT",
                 "THREATROUTE_CONTROLLER_PORT", "THREATROUTE_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    return load_config()


def rendered(config, count: int) -> list[dict[str, str]]:
    nodes = broker.plan_nodes(config, count)
    return [properties(broker.render_properties(broker.node_values(nodes, n))) for n in nodes]


def test_one_node_is_the_single_broker_as_before(config):
    (node,) = broker.plan_nodes(config, 1)
    assert node.paths == broker.broker_paths(config)  # STATE/broker, as it always was
    (props,) = rendered(config, 1)
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["log.dirs"] == str(config.state_dir / "broker" / "data")
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
                "min.insync.replicas"):
        assert props[key] == "1", key


def test_three_nodes_share_one_quorum_on_ports_two_apart(config):
    nodes = broker.plan_nodes(config, 3)
    assert [(n.id, n.port, n.controller_port) for n in nodes] == [
        (1, 9092, 9093), (2, 9094, 9095), (3, 9096, 9097)]
    assert [n.paths.root for n in nodes] == [
        config.state_dir / "cluster" / f"node-{i}" for i in (1, 2, 3)]
    every = rendered(config, 3)
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert {p["controller.quorum.voters"] for p in every} == {voters}
    assert [p["node.id"] for p in every] == ["1", "2", "3"]
    assert [p["advertised.listeners"] for p in every] == [
        f"PLAINTEXT://127.0.0.1:{port}" for port in (9092, 9094, 9096)]
    assert len({p["log.dirs"] for p in every}) == 3
    for props in every:
        assert props["process.roles"] == "broker,controller"
        # three copies of everything, the offsets and transaction logs too; a write needs two
        assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] \
            == props["transaction.state.log.replication.factor"] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"


def test_replication_follows_the_node_count():
    assert [broker.replication_for(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]


def test_ports_that_clash_are_refused(config):
    clashing = replace(config, broker_port=9092, controller_port=9094)  # node 2's broker port
    with pytest.raises(BrokerError, match="clash"):
        broker.plan_nodes(clashing, 3)
    assert broker.plan_nodes(clashing, 1)  # one node: no clash
    with pytest.raises(BrokerError, match="exceed"):
        broker.plan_nodes(replace(config, broker_port=65532, controller_port=65533), 3)
    with pytest.raises(BrokerError):
        broker.plan_nodes(config, 0)


def test_every_command_bootstraps_from_all_nodes_of_a_cluster(config, monkeypatch):
    assert config.bootstrap == "127.0.0.1:9092"
    (config.state_dir / "cluster").mkdir(parents=True)
    (config.state_dir / "cluster" / "nodes").write_text("3\n")
    assert load_config().bootstrap == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    monkeypatch.setenv("THREATROUTE_BROKER_PORT", "22092")
    monkeypatch.setenv("THREATROUTE_CONTROLLER_PORT", "22093")
    assert load_config().bootstrap == "127.0.0.1:22092,127.0.0.1:22094,127.0.0.1:22096"
    monkeypatch.setenv("THREATROUTE_BOOTSTRAP", "kafka:9092")  # named: taken as it is
    assert load_config().bootstrap == "kafka:9092"


def test_a_store_keeps_its_node_count(config):
    assert broker._node_count(config, None) == 1
    assert broker._node_count(config, 3) == 3
    (config.state_dir / "cluster").mkdir(parents=True)
    (config.state_dir / "cluster" / "nodes").write_text("3\n")
    assert broker._node_count(config, None) == 3  # later starts need not repeat --nodes
    with pytest.raises(BrokerError, match="has 3 node"):
        broker._node_count(config, 1)
    with pytest.raises(BrokerError, match="no node 4"):
        broker._select(broker.plan_nodes(config, 3), 4)


def test_a_single_node_store_is_not_turned_into_a_cluster(config):
    meta = broker.broker_paths(config).data / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("cluster.id=x\nnode.id=1\n")
    assert broker._node_count(config, None) == 1
    with pytest.raises(BrokerError, match="has 1 node"):
        broker._node_count(config, 3)


def test_pipeline_topics_take_the_cluster_s_replication_unless_configured(config, tmp_path):
    assert {t.replication for t in config.topics} == {BROKER_DEFAULT}
    assert {t.replication for t in config.recipient_topics} == {BROKER_DEFAULT}
    custom = tmp_path / "c.toml"
    custom.write_text("[topics.defaults]\nreplication = 3\n")
    assert {t.replication for t in load_config(custom).topics} == {3}
