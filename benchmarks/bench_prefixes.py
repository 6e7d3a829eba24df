"""Longest-prefix match: matchers/prefixes.py against pytricia and py-radix (issue 8).

PrefixMap was a hand-written binary search on prefix lengths until this comparison chose
pytricia for it (the figures are in the issue 8 note); it now measures PrefixMap's own cost
over the bare libraries.

    .venv/bin/pip install py-radix    # not a dependency: only this comparison
    .venv/bin/python benchmarks/bench_prefixes.py [--recipients 100000] [--prefixes 1000000]

The prefixes are bench_match.py's registries (each recipient's owned prefixes, v4 and v6
nested, with aggregates covering other recipients), at 100 and at 100k recipients / 1M
prefixes; the addresses are its "same" indicators (inside the first 100 hosters' space plus
unowned ones). For each implementation it prints the build time and memory, then per address:
`longest` (the owner: most specific prefix and its value) and `covering` (every prefix that
contains the address, most specific first: what the subscription index needs). Each starts
from the address text, as the stages do. Checks that all three give the same answers.
"""

from __future__ import annotations

import argparse
import gc
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench_match import indicators, per_item_us, registry, rss_bytes

from threatroute.matchers.prefixes import PrefixMap


class Ours:
    name = "PrefixMap (matchers)"

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self.map: PrefixMap[str] = PrefixMap(items)
        self.map.compile()

    def longest(self, ip: str) -> tuple[str, str] | None:
        return self.map.longest(ip)

    def covering(self, ip: str) -> list[tuple[str, str]]:
        return self.map.all_matches(ip)


class Tricia:
    name = "pytricia"

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        import pytricia

        self.trees = {4: pytricia.PyTricia(32), 6: pytricia.PyTricia(128, socket.AF_INET6)}
        for prefix, value in items:
            self.trees[6 if ":" in prefix else 4][prefix] = value

    def longest(self, ip: str) -> tuple[str, str] | None:
        tree = self.trees[6 if ":" in ip else 4]
        key = tree.get_key(ip)
        return None if key is None else (key, tree[key])

    def covering(self, ip: str) -> list[tuple[str, str]]:
        tree = self.trees[6 if ":" in ip else 4]
        found, key = [], tree.get_key(ip)
        while key is not None:
            found.append((key, tree[key]))
            key = tree.parent(key)
        return found


class Radix:
    name = "py-radix"

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        import radix

        self.tree = radix.Radix()
        for prefix, value in items:
            self.tree.add(prefix).data["v"] = value

    def longest(self, ip: str) -> tuple[str, str] | None:
        node = self.tree.search_best(ip)
        return None if node is None else (node.prefix, node.data["v"])

    def covering(self, ip: str) -> list[tuple[str, str]]:
        return [(node.prefix, node.data["v"]) for node in self.tree.search_covering(ip)]


def owned_prefixes(count: int, prefixes: int, seed: int) -> list[tuple[str, str]]:
    return [(prefix, r.id) for r in registry(count, prefixes, seed) for prefix in r.owns.prefixes]


def measure(kind: Callable[[Sequence[tuple[str, str]]], Any], items: list[tuple[str, str]],
            addresses: list[str]) -> tuple[Any, dict[str, float]]:
    gc.collect()
    before, start = rss_bytes(), time.perf_counter()
    built = kind(items)
    seconds = time.perf_counter() - start
    gc.collect()
    return built, {"build_s": seconds, "rss_mib": (rss_bytes() - before) / 2**20,
                   "longest_us": per_item_us(built.longest, addresses),
                   "covering_us": per_item_us(built.covering, addresses)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    kinds: list[Any] = [Ours]
    for module, kind in (("pytricia", Tricia), ("radix", Radix)):
        try:
            __import__(module)
            kinds.append(kind)
        except ImportError:
            print(f"{kind.name} not installed: skipped")
    addresses = [r["source"]["ip"] for r in indicators(args.addresses, args.small, ["XX"],
                                                       args.seed)]
    per_recipient = args.prefixes // args.recipients
    same = True
    for count in (args.small, args.recipients):
        items = owned_prefixes(count, per_recipient * count, args.seed)
        print(f"{count} recipients, {len(items):,} prefixes, {len(addresses):,} addresses "
              f"(python {sys.version.split()[0]})", flush=True)
        reference = None
        for kind in kinds:
            built, figures = measure(kind, items, addresses)
            answers = [(built.longest(a), built.covering(a)) for a in addresses[:20_000]]
            reference = reference or answers
            same &= answers == reference
            print(f"  {kind.name:<21} build {figures['build_s']:6.2f} s  RSS +"
                  f"{figures['rss_mib']:6.1f} MiB | longest {figures['longest_us']:5.2f} us  "
                  f"covering {figures['covering_us']:5.2f} us per address", flush=True)
            del built
    print(f"same answers from every implementation: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
