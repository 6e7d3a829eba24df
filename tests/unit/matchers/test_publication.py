"""match.routed -> alerts.<recipient>: where a routed alert goes, or why it cannot."""

from __future__ import annotations

from threatroute import topics
from threatroute.matchers.publication import Publication, Unpublishable, publication, routed

ALERT = b'{"alert_id": "a1"}'


def test_a_routed_alert_is_published_with_its_own_key_and_other_headers():
    key, headers = routed("cert-be", "ip:192.0.2.1", (("trace", b"x"),))
    assert key == b"cert-be"
    assert headers == (("trace", b"x"), (topics.ALERT_KEY_HEADER, b"ip:192.0.2.1"))
    assert publication(key, ALERT, headers) == Publication(
        "cert-be", "alerts.cert-be", b"ip:192.0.2.1", (("trace", b"x"),))


def test_bytes_keys_travel_unchanged():
    key, headers = routed("isp_1", b"\xff\x00odd")
    where = publication(key, ALERT, headers)
    assert isinstance(where, Publication)
    assert (where.topic, where.key, where.headers) == ("alerts.isp_1", b"\xff\x00odd", ())


def test_a_header_without_value_stays_as_empty_bytes():
    key, headers = routed("isp", "k")
    where = publication(key, ALERT, [*headers, ("empty", None)])
    assert isinstance(where, Publication) and where.headers == (("empty", b""),)


def refusal(key: bytes | None, headers: list[tuple[str, bytes | None]], value: bytes | None = ALERT
            ) -> Unpublishable:
    where = publication(key, value, headers)
    assert isinstance(where, Unpublishable), where
    return where


def test_records_it_cannot_place_are_refused_with_a_reason():
    carried = [(topics.ALERT_KEY_HEADER, b"ip:192.0.2.1")]
    assert "without a recipient key" in refusal(None, carried).reason
    assert refusal(b"", carried).field == "key"
    assert "not ASCII" in refusal("é".encode(), carried).reason
    for bad in (b"Upper", b"has.dot", b"-lead", b"a/b", b"x" * 64, b"a b"):
        assert "is not a recipient id" in refusal(bad, carried).reason, bad
    # the pipeline's own alerts.* topics are never a recipient's
    assert "is not a recipient id" in refusal(b"ledger", carried).reason
    assert "is not a recipient id" in refusal(b"status", carried).reason
    assert "found 0" in refusal(b"isp", []).reason
    assert "found 2" in refusal(b"isp", carried * 2).reason
    assert refusal(b"isp", [(topics.ALERT_KEY_HEADER, b"")]).field == topics.ALERT_KEY_HEADER
    assert "empty value" in refusal(b"isp", carried, value=b"").reason
    assert "empty value" in refusal(b"isp", carried, value=None).reason


def test_an_alert_without_key_cannot_be_published():
    key, headers = routed("isp", None)
    assert headers == ()
    assert "found 0" in refusal(key, list(headers)).reason


def test_the_publish_stage_keeps_value_timestamp_and_order_and_dead_letters_the_rest():
    from datetime import UTC, datetime

    from threatroute.streams.config import DEFAULT_CONFIG, load_config
    from threatroute.streams.runtime.step import Input, Step
    from threatroute.streams.stages.publish import AlertTopics, PublishStage

    asked: list[list[str]] = []
    config = load_config(DEFAULT_CONFIG)
    alert_topics = AlertTopics(config, ensure=lambda ids: asked.append(ids) or ids[:1])
    alert_topics.known, alert_topics._listed = {"known"}, True  # as the first listing found
    stage = PublishStage(config, worker=3, alert_topics=alert_topics)
    inputs = []
    for n, rid in enumerate(["known", "new", "known", "Bad.Id", "new"]):
        key, headers = routed(rid, f"ip:192.0.2.{n}")
        inputs.append(Input(key, {}, b"alert %d" % n, topics.MATCH_ROUTED, 0, n, 1_700_000 + n,
                            headers))
    step = Step(datetime.now(UTC))
    stage.process(inputs, step)
    assert [(o.topic, o.key, o.value, o.timestamp, o.headers) for o in step.outputs] == [
        ("alerts.known", b"ip:192.0.2.0", b"alert 0", 1_700_000, None),
        ("alerts.new", b"ip:192.0.2.1", b"alert 1", 1_700_001, None),
        ("alerts.known", b"ip:192.0.2.2", b"alert 2", 1_700_002, None),
        ("alerts.new", b"ip:192.0.2.4", b"alert 4", 1_700_004, None)]
    assert [(r.raw, r.field) for r in step.refused] == [(b"alert 3", "key")]
    assert asked == [["new"]]  # missing topics ensured once, before the batch is produced
    stage.process(inputs[1:2], Step(datetime.now(UTC)))
    assert asked == [["new"]]
    assert stage.instance and stage.instance.endswith("-3")  # its own transactional id
