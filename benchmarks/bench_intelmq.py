"""In-process enrichment (ASN, then City geolocation) next to IntelMQ 3.5's own expert bots run
in library mode, on the same events and the same databases.

    .venv/bin/pip install -e '.[dev,bench]'          # intelmq (dev), geoip2 + GeoLite2 (bench)
    .venv/bin/python benchmarks/bench_intelmq.py --count 20000

IntelMQ side: `ASNLookupExpertBot` then `GeoIPExpertBot` (intelmq.bots.experts.asn_lookup and
maxmind_geoip), constructed with `BotLibSettings` and fed with `process_message` in batches,
the way IntelMQ documents library use; the GeoIP bot's output is what is timed. Our side:
`enrich_asn_many` over a batch then `enrich_geo` per record, over the same addresses as nested
records, as the fused chain runs them. Databases: the ASN table and City database of
`threatroute bench`'s world (the real 2014 pyasn table and GeoLite2 City where present).
Prints events/s of each and the ratio.
Timed in CPU seconds of this process (time.process_time), so that other work on a shared
machine does not count against either side; both sides get an untimed warm-up round first,
and the loaded data is then frozen out of the cyclic GC (as the workers do) for both. Not a
test: figures depend on the machine.
Without intelmq installed it prints our side and a note.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from threatroute.benchworld import build_world
from threatroute.enrichers.asn import AsnDatabase, enrich_asn_many
from threatroute.enrichers.geo import GeoDatabase, enrich_geo


def addresses(world_owned: list[tuple[int, int]], count: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        network, size = rng.choice(world_owned)
        value = network + rng.randrange(size)
        out.append(".".join(str((value >> s) & 255) for s in (24, 16, 8, 0)))
    return out


def ours(asn: AsnDatabase, geo: GeoDatabase, ips: list[str]) -> float:
    records: list[dict[str, Any]] = [
        {"classification": {"type": "scanner", "taxonomy": "information-gathering"},
         "feed": {"name": "bench"}, "source": {"ip": ip}} for ip in ips]
    started = time.process_time()
    # as the fused chain runs them: the asn stage's batch path, then geo per record
    out = [enrich_geo(record, geo) for record in enrich_asn_many(records, asn)]
    seconds = time.process_time() - started
    assert sum("asn" in r["source"] for r in out) > len(out) // 2, "the ASN table missed"
    return len(out) / seconds


def intelmq_experts(ipasn_plain: Path, city: Path) -> tuple[Any, Any]:
    from intelmq.bots.experts.asn_lookup.expert import ASNLookupExpertBot
    from intelmq.bots.experts.maxmind_geoip.expert import GeoIPExpertBot
    from intelmq.lib.bot import BotLibSettings

    # logging at WARNING: its per-500-messages INFO lines are not what is compared
    quiet = BotLibSettings | {"autoupdate_cached_database": False, "logging_level": "WARNING"}
    return (ASNLookupExpertBot("asn-lookup-expert",
                               settings=quiet | {"database": str(ipasn_plain)}),
            GeoIPExpertBot("geoip-expert", settings=quiet | {"database": str(city)}))


def intelmq_bots(asn: Any, geo: Any, ips: list[str], batch: int = 1000) -> float:
    events = [{"__type": "Event", "classification.type": "scanner", "feed.name": "bench",
               "source.ip": ip} for ip in ips]
    started = time.process_time()
    done = 0
    for first in range(0, len(events), batch):
        enriched = asn.process_message(*events[first:first + batch])["output"]
        located = geo.process_message(*enriched)["output"]
        done += len(located)
    seconds = time.process_time() - started
    return done / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternate runs of each side; the best and the spread are shown")
    parser.add_argument("--workdir", type=Path, default=Path(".threatroute/bench"))
    args = parser.parse_args()
    world = build_world(args.workdir.resolve() / "world", recipients=1_000)
    print(world.describe().split("; 1,000 recipients")[0])
    try:
        import intelmq.lib.bot  # noqa: F401
    except ImportError:
        intelmq_present = False
    else:
        intelmq_present = True
    mine: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "ipasn.dat"  # pyasn.pyasn(path) reads plain text only
        data = world.ipasn.read_bytes()
        plain.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        # each side opens its databases once, as a running stage or bot does; each round has
        # new addresses (same shape), alternating sides so a noisy neighbour hits both
        databases = AsnDatabase(world.ipasn, world.asnames), GeoDatabase(world.geoip)
        bots = intelmq_experts(plain, world.geoip) if intelmq_present else None
        # an untimed round each, as a running stage or bot is warm (caches, lazy imports);
        # then what is loaded is frozen out of the cyclic GC, for both sides alike, as our
        # workers do (streams/runtime/heap.py)
        warm = addresses(world.owned, 2_000, seed=args.repeat + 1)
        ours(*databases, warm)
        if bots:
            intelmq_bots(*bots, warm)
        gc.collect()
        gc.freeze()
        for round_ in range(args.repeat):
            ips = addresses(world.owned, args.count, seed=round_)
            mine.append(ours(*databases, ips))
            if bots:
                theirs.append(intelmq_bots(*bots, ips))
    print(f"{args.count:,} events a round (IPs in the recipients' networks), best of "
          f"{args.repeat} rounds (all in brackets), CPU time")
    print(f"threatroute enrich_asn_many + enrich_geo, in process:   {max(mine):10,.0f} events/s"
          f"  [{', '.join(f'{r:,.0f}' for r in mine)}]")
    if not intelmq_present:
        print("intelmq is not installed: pip install -e '.[dev,bench]' to compare")
        return 0
    print(f"IntelMQ 3.5 ASNLookupExpertBot + GeoIPExpertBot (library): {max(theirs):10,.0f} "
          f"events/s  [{', '.join(f'{r:,.0f}' for r in theirs)}]")
    print(f"ratio of the best runs: {max(mine) / max(theirs):.1f}x, of the medians: "
          f"{statistics.median(mine) / statistics.median(theirs):.1f}x (target >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
