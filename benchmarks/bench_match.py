"""Routing cost at 100 vs 100,000 recipients (1M prefixes): per-indicator cost must not grow.

    .venv/bin/python benchmarks/bench_match.py [--recipients 100000] [--prefixes 1000000]
                                               [--indicators 100000] [--decode]

The registry is generated deterministically, recipient by recipient, so the small registry is
exactly the first 100 recipients of the large one. Each hoster i owns a v4 /20 and a v6 /48
(plus nested prefixes down to /32 and /128 inside them), ASN 100000+i and h<i>.example; every
8th/16th/64th/256th/4096th recipient also owns the covering /17, /16, /14, /12, /8 (v6: /44,
/40, /36), so ownership nests across recipients. Every 400th is a national CERT subscribing to
one country, every 100th (+1) an upstream subscribing to 20 customers' ASNs, (+2) a watcher of
10 customers' domains, (+3) a subscriber to a v4 /16 and a v6 /44 aggregate.

Two sets of indicators, each matched against both indexes:
- "same": inside the first 100 hosters' space (plus unowned addresses and domain-only ones),
  with countries only the small registry's CERT or nobody subscribes to. Both registries route
  them identically (checked), so any difference in cost is the index size alone. This is the
  gated figure: exit status 1 if the large index costs >= 2x the small one per indicator.
- "spread": over the whole large registry (informational). The large registry finds an owner
  and subscribers for most of them and the small one for almost none, so the difference
  there is mostly the extra routing output, plus cache misses in the big tables.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from threatroute.matchers.index import MatchIndex
from threatroute.registry import Owns, Recipient, Subscribe

V4_BASE = 1 << 24          # 1.0.0.0: hoster i has the /20 at V4_BASE + i * 4096
V6_BASE = 0x2A00 << 112    # hoster i has the /48 at V6_BASE + (i << 80)
COUNTRIES = [a + b for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXY"]  # 250 codes
TYPES = ["phishing", "c2-server", "infected-system", "scanner", "malware-distribution", "ddos"]
TLPS = ["CLEAR"] * 3 + ["GREEN"] * 4 + ["AMBER"] * 2 + ["AMBER+STRICT", "RED"]
V4_AGGREGATES = ((8, 17), (16, 16), (64, 14), (256, 12), (4096, 8))  # (every k-th, length)
V6_AGGREGATES = ((16, 44), (256, 40), (4096, 36))


def v4(address: int, length: int) -> str:
    address = address >> (32 - length) << (32 - length)
    return f"{IPv4Address(address)}/{length}"


def v6(address: int, length: int) -> str:
    address = address >> (128 - length) << (128 - length)
    return f"{IPv6Address(address)}/{length}"


def recipient(i: int, per_recipient: int, seed: int) -> Recipient:
    """Recipient i: the same whatever the registry size."""
    rng = random.Random(seed * 1_000_003 + i)
    base4, base6 = V4_BASE + i * 4096, V6_BASE + (i << 80)
    prefixes = {v4(base4, 20), v6(base6, 48)}
    prefixes.update(v4(base4, length) for k, length in V4_AGGREGATES if i % k == 0)
    prefixes.update(v6(base6, length) for k, length in V6_AGGREGATES if i % k == 0)
    while len(prefixes) < per_recipient:
        if rng.random() < 0.7:  # nested inside its own /20, lengths 21..32
            length = rng.randint(21, 32)
            prefixes.add(v4(base4 + rng.getrandbits(12), length))
        else:
            length = rng.choice((52, 56, 60, 64, 64, 64, 128))
            prefixes.add(v6(base6 + rng.getrandbits(80), length))
    subscribe = Subscribe()
    if i % 400 == 0:
        subscribe = Subscribe(countries=(COUNTRIES[(i // 400) % len(COUNTRIES)],))
    elif i % 100 == 1:
        subscribe = Subscribe(asns=tuple(100_000 + i + k for k in range(1, 21)))
    elif i % 100 == 2:
        subscribe = Subscribe(domains=tuple(f"h{i + k}.example" for k in range(1, 11)))
    elif i % 100 == 3:
        subscribe = Subscribe(prefixes=(v4(base4 + (50 << 12), 16), v6(base6 + (50 << 80), 44)))
    return Recipient(
        id=f"r{i}", name=f"Recipient {i}", contacts=(f"abuse@h{i}.example",),
        owns=Owns(asns=(100_000 + i,), prefixes=tuple(sorted(prefixes)),
                  domains=(f"h{i}.example",) + ((f"cdn.h{i}.example",) if i % 3 == 0 else ())),
        subscribe=subscribe,
        classifications=tuple(rng.sample(TYPES, 3)) if i % 5 == 0 else None,
        min_confidence=rng.choice((0, 0, 30, 50, 70)),
        tlp_clearance=rng.choice(("GREEN", "GREEN", "AMBER", "AMBER+STRICT")),
    )


def registry(count: int, prefixes: int, seed: int) -> list[Recipient]:
    return [recipient(i, max(2, prefixes // count), seed) for i in range(count)]


def indicators(count: int, targets: int, countries: Sequence[str], seed: int
               ) -> list[dict[str, Any]]:
    """Indicators in the space of hosters [0, targets), with countries from `countries`."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        roll = rng.random()
        j = rng.randrange(targets)
        source: dict[str, Any] = {"asn": 100_000 + j, "geolocation": {"cc": rng.choice(countries)}}
        if roll < 0.8:  # inside hoster j's space
            if rng.random() < 0.7:
                source["ip"] = str(IPv4Address(V4_BASE + j * 4096 + rng.getrandbits(12)))
            else:
                source["ip"] = str(IPv6Address(V6_BASE + (j << 80) + rng.getrandbits(80)))
            if rng.random() < 0.3:
                source["fqdn"] = f"www{rng.randrange(9)}.h{j}.example"
        elif roll < 0.9:  # a domain on unregistered space
            source["fqdn"] = f"login.h{j}.example"
            source["ip"] = str(IPv4Address((200 << 24) + rng.getrandbits(24)))
        else:  # nobody's address, sometimes v6
            source["asn"] = 4_000_000 + rng.randrange(1000)
            source["ip"] = (str(IPv4Address((200 << 24) + rng.getrandbits(24))) if rng.random() < .7
                            else str(IPv6Address((0x3FFF << 112) + rng.getrandbits(100))))
        out.append({"classification": {"type": rng.choice(TYPES)}, "source": source,
                    "tlp": rng.choice(TLPS), "feed": {"accuracy": rng.choice((40, 60, 80, 100))}})
    return out


def rss_bytes() -> int:
    """Resident set size now (Linux); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def per_item_us(function: Callable[[Any], Any], items: Sequence[Any], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            function(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def build(label: str, recipients: list[Recipient]) -> MatchIndex:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    index = MatchIndex.build(recipients)
    seconds = time.perf_counter() - start
    gc.collect()
    memory = (rss_bytes() - before) / 2**20
    prefixes = sum(len(r.owns.prefixes) + len(r.subscribe.prefixes) for r in recipients)
    print(f"  {label:>5} index: {len(recipients):>7} recipients {prefixes:>8} prefixes | "
          f"build {seconds:6.2f} s | RSS +{memory:6.1f} MiB", flush=True)
    return index


def cost(label: str, index: MatchIndex, records: list[dict[str, Any]]) -> float:
    """Print and return match cost per indicator (us)."""
    owner_us = per_item_us(index.ownership.owner_of, records)
    match_us = per_item_us(index.match, records)
    owned = sum(1 for r in records if index.ownership.owner_of(r)) / len(records)
    fanout = sum(len(index.match(r)) for r in records) / len(records)
    print(f"  {label:>5} index: owner_of {owner_us:5.2f} us, match {match_us:5.2f} us per indicator"
          f" | owned {owned:4.0%}, recipients per indicator {fanout:.2f}", flush=True)
    return match_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--indicators", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--decode", action="store_true",
                        help="also time Recipient.from_json over the large registry")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    large = registry(args.recipients, args.prefixes, args.seed)
    small = large[:args.small]
    # Routed identically by both registries: only the index size differs (the gated figure).
    same = indicators(args.indicators, args.small, ["AA", "ZZ", "KR", "XX"], args.seed)
    # Realistic spread over the whole large registry: more owners and subscribers found there.
    spread = indicators(args.indicators, args.recipients, COUNTRIES, args.seed + 1)
    print(f"generated {len(large)} recipients and 2 x {args.indicators} indicators in "
          f"{time.perf_counter() - start:.1f} s (python {sys.version.split()[0]})", flush=True)
    if args.decode:
        values = [r.to_json() for r in large]
        start = time.perf_counter()
        decoded = [Recipient.from_json(value) for value in values]
        print(f"from_json (validating) {len(decoded)} recipients: "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        del values, decoded
    print("build:")
    small_index = build("small", small)
    large_index = build("large", large)
    identical = all(small_index.match(r) == large_index.match(r) for r in same)
    print(f"same indicators, same routing in both registries (identical results: {identical}):")
    small_us = cost("small", small_index, same)
    large_us = cost("large", large_index, same)
    print("spread indicators over the whole large registry (informational; more matches there):")
    cost("small", small_index, spread)
    cost("large", large_index, spread)
    ratio = large_us / small_us
    print(f"per-indicator match cost ratio large/small: {ratio:.2f} (must be < 2.00)")
    return 0 if ratio < 2 and identical else 1


if __name__ == "__main__":
    sys.exit(main())
