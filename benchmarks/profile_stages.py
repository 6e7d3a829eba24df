"""CPU cost per record of the fused chain and of the match stage, without a broker: what the
stages' own Python costs, next to what `threatroute bench` measures end to end.

    .venv/bin/python benchmarks/profile_stages.py [--count 20000] [--profile match|chain]

Builds (or reuses) `threatroute bench`'s world (.threatroute/bench/world), decodes the same
indicator mix, runs it through the fused chain's stages (asn, geo, hoster: `EnrichStage.run`)
and then the match stage's `process` (routing, dedup states, alert rendering), and encodes
every output as the loop does. Prints records/s of each part in CPU seconds of this process;
`--profile` prints pyinstrument's top of that part instead. Not a test.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from threatroute import topics
from threatroute.benchworld import build_world, indicators
from threatroute.enrichers.asn import AsnDatabase, enrich_asn, enrich_asn_many
from threatroute.enrichers.geo import GeoDatabase, enrich_geo
from threatroute.enrichers.hoster import enrich_owner
from threatroute.matchers.acting import FeedbackRouting
from threatroute.matchers.dedup import AlertState, DedupPolicy
from threatroute.matchers.ownership import OwnershipIndex
from threatroute.registry import load_registry
from threatroute.streams.config import load_config
from threatroute.streams.kafka.clients import encode
from threatroute.streams.runtime.chain import FusedChain
from threatroute.streams.runtime.loop import decode_batch
from threatroute.streams.runtime.step import Step
from threatroute.streams.runtime.tables import Table
from threatroute.streams.stages.enrich import EnrichStage
from threatroute.streams.stages.match import MatchStage, Routing


class Message:
    """What decode_batch reads of a consumed message (a record the benchmark made)."""

    def __init__(self, key: str, value: bytes, topic: str, offset: int) -> None:
        self._key, self._value, self._topic, self._offset = key.encode(), value, topic, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._offset % 6

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def headers(self) -> None:
        return None


class NoRegistryRouting(Routing):
    """The match index built from the registry file (the stage reads the registry topic)."""

    def rebuild_from(self, recipients: dict[str, Any]) -> None:
        from threatroute.matchers.index import MatchIndex
        from threatroute.matchers.privacy import content_of
        self.formats = {rid: r.format for rid, r in recipients.items()}
        self.contents = {rid: content_of(r) for rid, r in recipients.items()}
        self.index = MatchIndex.build(recipients.values(), default_tlp=self._config.default_tlp)


def match_stage(config: Any, recipients: dict[str, Any]) -> MatchStage:
    """The match stage's decisions and rendering, its Kafka parts left out."""
    stage = MatchStage.__new__(MatchStage)
    stage.config, stage.clock, stage.metrics = config, None, None
    stage.policy = DedupPolicy(timedelta(hours=config.dedup_window_hours),
                               timedelta(hours=config.renotify_hours))
    routing = NoRegistryRouting(config)
    routing.rebuild_from(recipients)
    stage.routing = routing
    stage.states = Table(topics.MATCH_STATE, AlertState.from_json, AlertState.to_json)
    stage.states.rows = {p: {} for p in range(6)}
    stage.acting = FeedbackRouting(config.rules, config.rules.suppression_list())
    stage.remediations = {}  # type: ignore[assignment]
    from collections import Counter
    stage._events = Counter()
    return stage


def timed(what: str, count: int, work: Callable[[], Any], profile: bool) -> Any:
    if profile:
        from pyinstrument import Profiler
        profiler = Profiler(interval=0.0005)
        profiler.start()
    started = time.process_time()
    result = work()
    seconds = time.process_time() - started
    if profile:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    print(f"{what}: {count / seconds:,.0f} records/s ({seconds:.2f} CPU s)", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path(".threatroute/bench"))
    parser.add_argument("--profile", choices=("chain", "match"), default=None)
    parser.add_argument("--no-freeze", action="store_true",
                        help="leave the loaded data to the cyclic GC (what "
                             "streams/runtime/heap.py saves)")
    args = parser.parse_args()
    world = build_world(args.workdir.resolve() / "world")
    config = load_config()
    recipients = {r.id: r for r in load_registry(world.registry.read_text())}
    asn, geo = AsnDatabase(world.ipasn, world.asnames), GeoDatabase(world.geoip)
    owners = OwnershipIndex.build(recipients.values())
    chain = FusedChain([
        EnrichStage("asn", topics.RAW, topics.ASN, lambda r: enrich_asn(r, asn),
                    transform_many=lambda rs: enrich_asn_many(rs, asn)),
        EnrichStage("geo", topics.ASN, topics.GEO, lambda r: enrich_geo(r, geo)),
        EnrichStage("hoster", topics.GEO, topics.ENRICHED, lambda r: enrich_owner(r, owners))],
        intermediate_topics=False)
    stage = match_stage(config, recipients)
    raw = [Message(k, v, topics.RAW, n)
           for n, (k, v) in enumerate(indicators(world, args.count, seed=1))]
    now = datetime(2026, 2, 1, tzinfo=UTC)
    if not args.no_freeze:
        gc.freeze()  # as the workers do once their data is loaded (streams/runtime/heap.py)

    def run_chain() -> list[bytes]:
        out = []
        for first in range(0, len(raw), 2000):
            inputs, _ = decode_batch(raw[first:first + 2000])
            step = Step(now)
            chain.process(inputs, step)
            out += [encode(o.value) for o in step.outputs if isinstance(o.value, dict)]
        return out

    enriched = timed("fused chain (decode, asn, geo, hoster, encode)", len(raw), run_chain,
                     args.profile == "chain")
    messages = [Message(m.key().decode(), v, topics.ENRICHED, n)
                for n, (m, v) in enumerate(zip(raw, enriched, strict=True))]
    produced = [0]

    def run_match() -> None:
        for first in range(0, len(messages), 2000):
            inputs, _ = decode_batch(messages[first:first + 2000], check=None)
            step = Step(now)
            stage.process(inputs, step)
            for output in [*step.outputs, *stage.states.changes()]:
                value = output.value
                if isinstance(value, dict):
                    encode(value)
                produced[0] += 1

    timed("match (decode, route, render, encode)", len(messages), run_match,
          args.profile == "match")
    print(f"  {produced[0] / len(messages):.1f} records produced per indicator")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
