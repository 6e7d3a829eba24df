"""Per-recipient topics: bounded creation requests, the alert-topic template, broker limits."""

from __future__ import annotations

from dataclasses import replace

from threatroute.registry import Recipient
from threatroute.streams.config import BROKER_DEFAULT, TopicSpec, load_config
from threatroute.streams.kafka import broker
from threatroute.streams.kafka.admin import PARTITIONS_PER_REQUEST, _requests
from threatroute.streams.runtime.registry import recipient_topic_specs


def test_requests_stay_under_the_partition_bound():
    specs = [TopicSpec(f"alerts.r{i}", 1 if i % 7 else 6, 1) for i in range(10_000)]
    chunks = list(_requests(specs))
    assert [s for chunk in chunks for s in chunk] == specs  # all, once, in order
    assert all(sum(s.partitions for s in chunk) <= PARTITIONS_PER_REQUEST for chunk in chunks)
    assert len(chunks) <= 2 * sum(s.partitions for s in specs) // PARTITIONS_PER_REQUEST + 1


def test_a_topic_larger_than_the_bound_goes_alone():
    big = TopicSpec("big", PARTITIONS_PER_REQUEST + 5, 1)
    assert list(_requests([TopicSpec("a", 1, 1), big, TopicSpec("b", 1, 1)])) == [
        [TopicSpec("a", 1, 1)], [big], [TopicSpec("b", 1, 1)]]


def test_recipient_topics_have_one_partition_unless_configured(tmp_path):
    config = load_config()
    assert config.topic("indicators.raw").partitions == 6
    assert recipient_topic_specs(config, Recipient(id="a", name="A")) == [TopicSpec(
        "alerts.a", 1, BROKER_DEFAULT, {"retention.ms": "604800000"})]
    own = recipient_topic_specs(config, Recipient(id="b", name="B", alert_partitions=4))
    assert own[0].partitions == 4
    custom = tmp_path / "c.toml"
    custom.write_text('[topics.defaults]\npartitions = 12\nretention_ms = 1000\n'
                      '[topics."feedback.*"]\npartitions = 3\n')
    secure = replace(load_config(custom), security_protocol="SASL_SSL")
    specs = {s.name: (s.partitions, s.configs["retention.ms"])
             for s in recipient_topic_specs(secure, "a")}
    assert specs == {"alerts.a": (1, "1000"), "feedback.a": (3, "1000"),
                     "contributions.a": (1, "1000")}


def test_limits_advice_names_what_to_raise(tmp_path, monkeypatch):
    maps = tmp_path / "max_map_count"
    maps.write_text("65530\n")
    monkeypatch.setattr(broker, "MAX_MAP_COUNT", maps)
    assert any("sysctl -w vm.max_map_count=262144" in line for line in broker.limits_advice())
    maps.write_text("262144\n")
    assert not any("max_map_count" in line for line in broker.limits_advice())
