"""`threatroute corrections list|accept|reject` against the real broker: a not_ours claim on
the compacted `corrections` topic becomes the reporter's `disowns` in the registry topic, or
is closed without touching it."""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Producer

from tests.integration.conftest import threatroute
from threatroute import topics
from threatroute.matchers.reroute import Correction, correction_id
from threatroute.streams.config import load_config
from threatroute.streams.runtime.registry import import_registry, read_registry


def test_accept_writes_disowns_to_the_registry_and_reject_keeps_it(kafka_env, bootstrap):
    run = uuid.uuid4().hex[:6]
    reseller, big = f"reseller-{run}", f"big-{run}"
    config = load_config(bootstrap=bootstrap)
    import_registry(config, f"""
recipients:
  - {{id: {big}, name: Big, owns: {{prefixes: [198.18.111.0/24]}}}}
  - {{id: {reseller}, name: Reseller, owns: {{prefixes: [198.18.111.64/26]}}}}
""")
    claims = [Correction(correction_id(reseller, f"198.18.111.{n}/32"), reseller, "prefixes",
                         f"198.18.111.{n}/32", "prefix 198.18.111.64/26", "k" * 32,
                         "2026-06-01T09:02:00+00:00", "returned block", big,
                         "prefix 198.18.111.0/24") for n in (70, 71)]
    producer = Producer({"bootstrap.servers": bootstrap})
    for claim in claims:
        producer.produce(topics.CORRECTIONS, json.dumps(claim.to_json()).encode(), claim.id)
    assert producer.flush(30) == 0

    listed = threatroute("corrections", "list", env=kafka_env).stdout.decode()
    assert all(f"{c.id}  open     {reseller} says {c.locator} is not theirs" in listed
               for c in claims)
    accepted = threatroute("corrections", "accept", claims[0].id, env=kafka_env)
    assert f"{reseller} no longer owns 198.18.111.70/32; the next owner is {big}" in \
        accepted.stdout.decode()
    assert "- 198.18.111.70/32" in accepted.stdout.decode()  # the lines for the registry file
    threatroute("corrections", "reject", claims[1].id, env=kafka_env)
    assert read_registry(config)[reseller].disowns.prefixes == ("198.18.111.70/32",)

    mine = {}
    for line in threatroute("corrections", "list", "--all", "--json",
                            env=kafka_env).stdout.decode().splitlines():
        value = json.loads(line)
        if value["recipient"] == reseller:
            mine[value["locator"]] = value["state"]
    assert mine == {"198.18.111.70/32": "accepted", "198.18.111.71/32": "rejected"}
    # decided once: a second decision is refused (exit code 1), the registry unchanged
    again = threatroute("corrections", "accept", claims[1].id, env=kafka_env, check=False)
    assert again.returncode == 1 and b"already rejected" in again.stderr
    unknown = threatroute("corrections", "reject", "nosuchid", env=kafka_env, check=False)
    assert unknown.returncode == 1
    assert read_registry(config)[reseller].disowns.prefixes == ("198.18.111.70/32",)
