"""Longest-prefix match for IPv4 and IPv6 that stays fast at millions of prefixes.

Binary search on prefix lengths (Waldvogel, Varghese, Turner, Plattner, SIGCOMM 1997): each
address family keeps one hash table per prefix length present, `{length: {network >> shift:
entry}}`, and a query probes about log2(lengths present) of them instead of every length:
~5 probes for IPv4, ~4 for IPv6 with realistic tables, whatever the number of prefixes. At
1M prefixes every probe is a likely cache miss, so the number of probes is what matters.

For the search to go the right way, each prefix leaves *markers* at the shorter lengths on its
search path; every entry (prefix or marker) holds the node of its best matching real prefix,
and every node `(length, value, parent)` links to the next shorter real prefix that contains
it, so all containing prefixes come from one search plus a walk up the chain. The tables are
compiled on the first query after changes: build once, query many (the indexes are rebuilt
when the registry changes).

Addresses are parsed with `socket.inet_pton`, several times faster than `ipaddress`; callers
that query several maps for one record parse once with `parse_ip` and use the `*_int` methods.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

V = TypeVar("V")
WIDTH = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
Node = tuple[int, Any, Any]  # (length, value, parent Node | None)


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


class _Family:
    """One address family: `levels[i] = (length, shift, table)`, lengths ascending.

    A table maps `address >> shift` to a Node (its own for a real prefix; the best matching
    real prefix's for a marker) or False (a marker that no real prefix contains).
    """

    __slots__ = ("levels", "pending", "size", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.size = 0  # real prefixes compiled
        self.levels: list[tuple[int, int, dict[int, Any]]] = []
        self.pending: dict[int, dict[int, Any]] = {}  # {length: {key: value}} not compiled yet

    def real(self) -> dict[int, dict[int, Any]]:
        """{length: {key: value}} of every real prefix, compiled or pending."""
        out: dict[int, dict[int, Any]] = {}
        for length, _, table in self.levels:
            out[length] = {key: node[1] for key, node in table.items()
                           if node and node[0] == length}
        for length, table in self.pending.items():
            out.setdefault(length, {}).update(table)
        return out

    def search(self, address: int, max_length: int) -> Node | None:
        """The node of the longest real prefix of length <= max_length containing `address`."""
        levels = self.levels
        lo, hi = 0, len(levels) - 1
        best = None
        while lo <= hi:
            mid = (lo + hi) >> 1
            length, shift, table = levels[mid]
            entry = None if length > max_length else table.get(address >> shift)
            if entry is None:
                hi = mid - 1
            else:
                if entry:
                    best = entry
                lo = mid + 1
        return best

    def compile(self) -> None:
        real = self.real()
        self.pending = {}
        self.levels = []  # drop the old tables before building the new ones
        lengths = sorted(real)
        self.size = sum(len(table) for table in real.values())
        self.levels = [(length, self.width - length, {}) for length in lengths]
        # Shorter prefixes first: a prefix's parent and its markers' targets exist by then,
        # and markers only land on shorter lengths, so every search below sees a valid
        # structure for the prefixes inserted so far.
        for index, length in enumerate(lengths):
            shift = self.width - length
            table = self.levels[index][2]
            path = _right_turns(len(lengths), index)
            for key, value in real[length].items():
                node = (length, value, self.search(key << shift, length - 1))
                table[key] = node
                for mid in path:
                    marker_length, _, marker_table = self.levels[mid]
                    marker = key >> (length - marker_length)
                    if marker not in marker_table:
                        target = node[2]
                        while target is not None and target[0] > marker_length:
                            target = target[2]
                        marker_table[marker] = target or False


def _right_turns(count: int, target: int) -> list[int]:
    """Levels where the binary search towards `target` must turn right (need a marker)."""
    turns = []
    lo, hi = 0, count - 1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if mid == target:
            break
        if mid < target:
            turns.append(mid)
            lo = mid + 1
        else:
            hi = mid - 1
    return turns


class PrefixMap(Generic[V]):
    """Map of IP prefixes (v4 and v6) to values with longest-match and all-matches queries.

    Values must not be None or False. Inserting after a query recompiles on the next query,
    so build first, then query.
    """

    __slots__ = ("_dirty", "_families")

    def __init__(self, items: Iterable[tuple[str, V]] = ()) -> None:
        self._families = {4: _Family(32), 6: _Family(128)}
        self._dirty = False
        for network, value in items:
            self[network] = value

    def compile(self) -> None:
        """Build the search tables now rather than on the first query."""
        self._ready()

    def _ready(self) -> dict[int, _Family]:
        if self._dirty:
            for family in self._families.values():
                if family.pending:
                    family.compile()
            self._dirty = False
        return self._families

    def __len__(self) -> int:
        return sum(family.size for family in self._ready().values())

    def __setitem__(self, network: str, value: V) -> None:
        if value is None or value is False:
            raise ValueError("PrefixMap values must not be None or False")
        family, address, length = parse_network(network)
        pending = self._families[family].pending
        pending.setdefault(length, {})[address >> (WIDTH[family] - length)] = value
        self._dirty = True

    def get(self, network: str, default: V | None = None) -> V | None:
        """The value stored for exactly this prefix."""
        family, address, length = parse_network(network)
        for level, shift, table in self._ready()[family].levels:
            if level == length:
                node = table.get(address >> shift)
                return node[1] if node and node[0] == length else default
        return default

    def __contains__(self, network: object) -> bool:
        return isinstance(network, str) and self.get(network) is not None

    def items(self) -> Iterator[tuple[str, V]]:
        """Every (prefix, value), shortest prefixes first."""
        for family, fam in self._ready().items():
            for length, shift, table in fam.levels:
                for key, node in table.items():
                    if node and node[0] == length:
                        yield format_network(family, key << shift, length), node[1]

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
        fam = self._ready()[family]
        node = fam.search(address, max_length)
        if node is None:
            return None
        shift = fam.width - node[0]
        return format_network(family, address >> shift << shift, node[0]), node[1]

    def all_matches_int(self, family: int, address: int, max_length: int = 128
                        ) -> list[tuple[str, V]]:
        """`all_matches` for a parsed address; only prefixes of length <= max_length count."""
        fam = self._ready()[family]
        node = fam.search(address, max_length)
        found: list[tuple[str, V]] = []
        while node is not None:
            shift = fam.width - node[0]
            found.append((format_network(family, address >> shift << shift, node[0]), node[1]))
            node = node[2]
        return found


__all__ = ["PrefixMap", "format_network", "parse_ip", "parse_network"]
