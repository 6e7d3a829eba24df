"""KRaft cluster ids: never one the storage tool would read as an option."""

from __future__ import annotations

import base64
import itertools

from threatroute.streams.kafka.broker import cluster_id

IDS = 100_000


def test_generated_ids_never_begin_with_a_dash_and_are_kafka_uuids():
    ids = [cluster_id() for _ in range(IDS)]
    assert not [i for i in ids if i.startswith("-")]
    assert {len(i) for i in ids} == {22}
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids[:1000])
    assert len(set(ids)) == IDS
    # about one in 64 candidates begins with "-": the redraw is what keeps them out
    print(f"{IDS} cluster ids, none beginning with '-'")


def test_a_candidate_beginning_with_a_dash_is_drawn_again():
    # 0xf8: the first six bits are 62, which URL-safe base64 writes as "-"
    candidates = itertools.chain([b"\xf8" + bytes(15), b"\xfb" * 16], itertools.repeat(bytes(16)))
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).startswith(b"-")
    assert cluster_id(lambda: next(candidates)) == "AAAAAAAAAAAAAAAAAAAAAA"
