"""Lookups/s of the bare libraries vs the ASN and geo enrichers, and their ratio.

    .venv/bin/python benchmarks/bench_enrichers.py [--ipasn FILE] [--mmdb FILE] [--count N]

The same random addresses go through `pyasn.lookup` and `enrich_asn`, then through
`maxminddb.Reader.get` and `enrich_geo`; half are drawn from networks the database has (so
the enricher does its full work), half uniformly. Each timing is the best of `--repeat`
interleaved runs. Exits 1 if an enricher costs more than 2x its bare lookup.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import maxminddb
import pyasn

from threatroute.enrichers.asn import AsnDatabase, enrich_asn
from threatroute.enrichers.databuild import build_demo_data
from threatroute.enrichers.geo import GeoDatabase, enrich_geo

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MAX_RATIO = 2.0


def _random_in(network: ipaddress.IPv4Network | ipaddress.IPv6Network, rnd: random.Random
               ) -> str:
    return str(network.network_address + rnd.randrange(network.num_addresses))


def make_ips(networks: list[str], count: int, seed: int) -> list[str]:
    """`count` addresses: half inside `networks` (CIDR strings), half uniform IPv4 unicast."""
    rnd = random.Random(seed)
    ips = [_random_in(ipaddress.ip_network(rnd.choice(networks)), rnd) for _ in range(count // 2)]
    ips += [str(ipaddress.IPv4Address(rnd.randrange(1 << 24, 224 << 24)))
            for _ in range(count - len(ips))]
    rnd.shuffle(ips)
    return ips


def each(function: Callable[[Any], object], items: list[Any]) -> Callable[[], None]:
    """A loop calling `function` on every item and dropping the result, as a stage does once
    a record is produced (keeping 200k results alive would time the garbage collector)."""
    def run() -> None:
        for item in items:
            function(item)
    return run


def compare(label: str, count: int, repeat: int, bare: Callable[[], None],
            enriched: Callable[[], None]) -> float:
    """Best-of-`repeat` time of each, runs interleaved so machine noise hits both alike."""
    best = {bare: float("inf"), enriched: float("inf")}
    for _ in range(repeat):
        for run in (bare, enriched):
            started = time.perf_counter()
            run()
            best[run] = min(best[run], time.perf_counter() - started)
    ratio = best[enriched] / best[bare]
    verdict = f"  > {MAX_RATIO} FAIL" if ratio > MAX_RATIO else ""
    print(f"{label:>4}: bare {count / best[bare]:>12,.0f}/s   "
          f"enricher {count / best[enriched]:>12,.0f}/s   ratio {ratio:.2f}{verdict}")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipasn", type=Path, default=SHARED / "asn" / "ipasn_20140513.dat.gz")
    parser.add_argument("--asnames", type=Path, default=SHARED / "asn" / "asnames.json.gz")
    parser.add_argument("--mmdb", type=Path, default=SHARED / "mmdb" / "GeoIP2-City-Test.mmdb")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    demo_dir = tempfile.TemporaryDirectory()
    if not all(path.is_file() for path in (args.ipasn, args.asnames, args.mmdb)):
        demo = build_demo_data(demo_dir.name)  # no shared data: fall back to the demo files
        if not args.ipasn.is_file():
            args.ipasn = demo.ipasn
        if not args.asnames.is_file():
            args.asnames = demo.asnames
        if not args.mmdb.is_file():
            args.mmdb = demo.mmdb
    print(f"ipasn {args.ipasn} (names {args.asnames})\nmmdb  {args.mmdb}\n"
          f"{args.count:,} addresses, best of {args.repeat}")

    bare_asn = pyasn.pyasn(str(args.ipasn))
    with AsnDatabase(args.ipasn, args.asnames) as asn_db:
        prefixes = bare_asn.radix.prefixes()
        print(f"table: {len(prefixes):,} prefixes")
        ips = make_ips([p for p in prefixes if ":" not in p], args.count, args.seed)
        records = [{"classification": {"type": "c2-server"}, "source": {"ip": ip}} for ip in ips]
        asn_ratio = compare("asn", args.count, args.repeat, each(bare_asn.lookup, ips),
                            each(lambda r: enrich_asn(r, asn_db), records))

    with maxminddb.open_database(str(args.mmdb), maxminddb.MODE_AUTO) as reader, \
            GeoDatabase(args.mmdb) as geo_db:
        networks = [str(n) for n, _ in islice(reader, 100_000)]
        ips = make_ips([n for n in networks if ":" not in n] or networks, args.count, args.seed)
        records = [{"classification": {"type": "c2-server"}, "source": {"ip": ip}} for ip in ips]
        geo_ratio = compare("geo", args.count, args.repeat, each(reader.get, ips),
                            each(lambda r: enrich_geo(r, geo_db), records))
    demo_dir.cleanup()
    return 1 if max(asn_ratio, geo_ratio) > MAX_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
