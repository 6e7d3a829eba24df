"""Longest-prefix match for IPv4 and IPv6 at millions of prefixes, on pytricia's Patricia trie.

One trie per address family (pytricia, a C extension). Chosen over the hand-written search
this module had (binary search on prefix lengths, Waldvogel et al., SIGCOMM 1997) and over
py-radix by benchmarks/bench_prefixes.py at 100k recipients / 1M prefixes: pytricia builds
about 10x faster, takes less memory, and answers longest and all-covering queries 2-3x faster
(figures in the issue 8 note; py-radix covers faster still but takes 4x the memory).

Prefixes are stored in canonical text (host bits cleared, as `fields.network` does); queries
take address text, or a parsed address (`parse_ip`) with the `*_int` methods, which callers
that query several maps for one record use to parse once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

import pytricia

V = TypeVar("V")
WIDTH = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def parse_ip(text: str) -> tuple[int, int]:
    """(family 4|6, address as int) for canonical address text; ValueError if it is not one."""
    try:
        if ":" in text:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, TypeError):
        raise ValueError(f"not an IP address: {str(text)[:64]!r}") from None


def parse_network(text: str) -> tuple[int, int, int]:
    """(family, network address int, length) for CIDR text (a bare address is a host route).

    Host bits are cleared, as `fields.network` does.
    """
    address, _, length_text = text.partition("/")
    family, value = parse_ip(address)
    width = WIDTH[family]
    try:
        length = int(length_text) if length_text else width
    except ValueError:
        raise ValueError(f"bad prefix length in {text[:64]!r}") from None
    if not 0 <= length <= width:
        raise ValueError(f"prefix length out of range in {text[:64]!r}")
    shift = width - length
    return family, (value >> shift) << shift, length


def format_network(family: int, network: int, length: int) -> str:
    """CIDR text for a (family, network int, length) triple."""
    packed = network.to_bytes(WIDTH[family] // 8, "big")
    return f"{socket.inet_ntop(_FAMILY[family], packed)}/{length}"


class PrefixMap(Generic[V]):
    """Map of IP prefixes (v4 and v6) to values with longest-match and all-matches queries.

    Values must not be None or False.
    """

    __slots__ = ("_trees",)

    def __init__(self, items: Iterable[tuple[str, V]] = ()) -> None:
        self._trees = {family: pytricia.PyTricia(WIDTH[family], _FAMILY[family])
                       for family in WIDTH}
        for network, value in items:
            self[network] = value

    def compile(self) -> None:
        """Nothing to build: the trie answers as it is filled (kept for callers that build
        first, then query)."""

    def __len__(self) -> int:
        return sum(len(tree) for tree in self._trees.values())

    def __setitem__(self, network: str, value: V) -> None:
        if value is None or value is False:
            raise ValueError("PrefixMap values must not be None or False")
        family, address, length = parse_network(network)
        self._trees[family][format_network(family, address, length)] = value

    def get(self, network: str, default: V | None = None) -> V | None:
        """The value stored for exactly this prefix."""
        family, address, length = parse_network(network)
        tree, key = self._trees[family], format_network(family, address, length)
        return tree[key] if tree.has_key(key) else default

    def __contains__(self, network: object) -> bool:
        return isinstance(network, str) and self.get(network) is not None

    def items(self) -> Iterator[tuple[str, V]]:
        """Every (prefix, value), shortest prefixes first."""
        for tree in self._trees.values():
            for key in sorted(tree, key=_length):
                yield key, tree[key]

    def longest(self, ip: str) -> tuple[str, V] | None:
        """(most specific prefix containing `ip`, its value), or None."""
        family, address = parse_ip(ip)
        return self.longest_int(family, address)

    def all_matches(self, ip: str) -> list[tuple[str, V]]:
        """Every prefix containing `ip`, most specific first."""
        family, address = parse_ip(ip)
        return self.all_matches_int(family, address)

    def longest_covering(self, network: str) -> tuple[str, V] | None:
        """The most specific prefix that contains the whole of `network`."""
        family, address, length = parse_network(network)
        return self.longest_int(family, address, length)

    def all_covering(self, network: str) -> list[tuple[str, V]]:
        """Every prefix that contains the whole of `network`, most specific first."""
        family, address, length = parse_network(network)
        return self.all_matches_int(family, address, length)

    def longest_int(self, family: int, address: int, max_length: int = 128
                    ) -> tuple[str, V] | None:
        """`longest` for a parsed address; only prefixes of length <= max_length count."""
        tree = self._trees[family]
        key = tree.get_key(_query(family, address, max_length))
        return None if key is None else (key, tree[key])

    def all_matches_int(self, family: int, address: int, max_length: int = 128
                        ) -> list[tuple[str, V]]:
        """`all_matches` for a parsed address; only prefixes of length <= max_length count."""
        tree = self._trees[family]
        found: list[tuple[str, V]] = []
        key = tree.get_key(_query(family, address, max_length))
        while key is not None:
            found.append((key, tree[key]))
            key = tree.parent(key)
        return found


def _query(family: int, address: int, max_length: int) -> bytes | str:
    """What pytricia looks up: the packed address, or the network of `max_length` (whose
    covering prefixes are those of length <= max_length containing the address)."""
    width = WIDTH[family]
    if max_length >= width:
        return address.to_bytes(width // 8, "big")
    shift = width - max_length
    return format_network(family, address >> shift << shift, max_length)


def _length(key: str) -> int:
    return int(key.rpartition("/")[2])


__all__ = ["PrefixMap", "format_network", "parse_ip", "parse_network"]
