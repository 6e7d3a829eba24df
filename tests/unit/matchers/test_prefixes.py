"""PrefixMap against a brute-force reference, v4 and v6, with nested prefixes."""

from __future__ import annotations

import ipaddress
import random

import pytest

from threatroute.matchers.prefixes import PrefixMap, format_network, parse_ip, parse_network


def random_prefixes(rng: random.Random, version: int, count: int) -> list[str]:
    """Nested, clustered prefixes: children carved out of earlier ones, plus fresh roots."""
    width = 32 if version == 4 else 128
    base = 0x0A000000 if version == 4 else 0x20010DB8 << 96  # cluster so that nesting happens
    made: list[ipaddress._BaseNetwork] = []
    while len(made) < count:
        if made and rng.random() < 0.6:
            parent = rng.choice(made)
            if parent.prefixlen >= width:
                continue
            length = rng.randint(parent.prefixlen + 1, min(width, parent.prefixlen + 12))
            address = int(parent.network_address) | rng.getrandbits(width - parent.prefixlen)
        else:
            length = rng.randint(1, 24) if version == 4 else rng.randint(16, 64)
            address = base | rng.getrandbits(width - 16 if version == 4 else 96 - 8)
        made.append(ipaddress.ip_network((address >> (width - length) << (width - length),
                                          length)))
    return [str(n) for n in made]


def random_addresses(rng: random.Random, prefixes: list[str], count: int) -> list[str]:
    out = []
    for _ in range(count):
        net = ipaddress.ip_network(rng.choice(prefixes))
        host = int(net.network_address) | rng.getrandbits(net.max_prefixlen - net.prefixlen)
        if rng.random() < 0.2:  # some near misses
            host ^= 1 << rng.randrange(net.max_prefixlen)
        out.append(str(ipaddress.ip_address(host) if net.version == 6
                       else ipaddress.IPv4Address(host)))
    return out


@pytest.mark.parametrize("version", [4, 6])
def test_matches_brute_force(version):
    rng = random.Random(version)
    prefixes = random_prefixes(rng, version, 400)
    table = PrefixMap((p, f"v{i}") for i, p in enumerate(prefixes))
    values = {p: f"v{i}" for i, p in enumerate(prefixes)}  # later duplicates overwrite
    networks = [ipaddress.ip_network(p) for p in values]
    assert len(table) == len(values)
    for address in random_addresses(rng, prefixes, 2000):
        ip = ipaddress.ip_address(address)
        containing = sorted((n for n in networks if ip in n), key=lambda n: -n.prefixlen)
        expected = [(str(n), values[str(n)]) for n in containing]
        assert table.all_matches(address) == expected
        assert table.longest(address) == (expected[0] if expected else None)


@pytest.mark.parametrize("version", [4, 6])
def test_covering_matches_brute_force(version):
    rng = random.Random(10 + version)
    prefixes = random_prefixes(rng, version, 300)
    table = PrefixMap((p, p) for p in prefixes)
    networks = [ipaddress.ip_network(p) for p in set(prefixes)]
    for address in random_addresses(rng, prefixes, 1000):
        width = 32 if version == 4 else 128
        query = ipaddress.ip_network(f"{address}/{rng.randint(0, width)}", strict=False)
        containing = sorted((n for n in networks if query.subnet_of(n)),  # type: ignore[arg-type]
                            key=lambda n: -n.prefixlen)
        assert table.all_covering(str(query)) == [(str(n), str(n)) for n in containing]


def test_insert_after_query_recompiles():
    table = PrefixMap([("10.0.0.0/8", "a")])
    assert table.longest("10.1.2.3") == ("10.0.0.0/8", "a")
    table["10.1.0.0/16"] = "b"
    table["10.0.0.0/8"] = "c"
    assert table.all_matches("10.1.2.3") == [("10.1.0.0/16", "b"), ("10.0.0.0/8", "c")]
    assert len(table) == 2


def test_covering_a_network():
    table = PrefixMap([("10.0.0.0/8", "a"), ("10.1.0.0/16", "b"), ("10.1.2.0/24", "c")])
    assert table.longest_covering("10.1.0.0/20") == ("10.1.0.0/16", "b")
    assert table.all_covering("10.1.0.0/20") == [("10.1.0.0/16", "b"), ("10.0.0.0/8", "a")]
    assert table.longest_covering("10.1.2.0/24") == ("10.1.2.0/24", "c")
    assert table.longest_covering("10.0.0.0/7") is None
    assert table.longest_covering("10.1.2.3") == ("10.1.2.0/24", "c")


def test_families_are_separate_and_default_routes_work():
    table = PrefixMap([("0.0.0.0/0", "v4-any"), ("::/0", "v6-any"), ("2001:db8::/32", "doc")])
    assert table.longest("192.0.2.1") == ("0.0.0.0/0", "v4-any")
    assert table.longest("2001:db8::1") == ("2001:db8::/32", "doc")
    assert table.all_matches("2001:db9::1") == [("::/0", "v6-any")]
    assert table.longest("0.0.0.0") == ("0.0.0.0/0", "v4-any")  # v4 zero is not v6 ::


def test_exact_get_overwrite_items():
    table: PrefixMap[int] = PrefixMap()
    table["192.0.2.0/24"] = 1
    table["192.0.2.0/24"] = 2
    table["192.0.2.7/32"] = 3
    assert len(table) == 2
    assert table.get("192.0.2.0/24") == 2 and table.get("192.0.2.0/25") is None
    assert "192.0.2.7" in table and "192.0.2.8" not in table
    assert sorted(table.items()) == [("192.0.2.0/24", 2), ("192.0.2.7/32", 3)]
    with pytest.raises(ValueError):
        table["10.0.0.0/8"] = None  # type: ignore[assignment]


@pytest.mark.parametrize("bad", ["", "300.1.1.1", "1.2.3", "2001:db8::g", "fe80::1%eth0"])
def test_bad_address(bad):
    with pytest.raises(ValueError, match="not an IP address"):
        PrefixMap().longest(bad)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.0/x", "::/129"])
def test_bad_network(bad):
    with pytest.raises(ValueError):
        parse_network(bad)


def test_parse_helpers():
    assert parse_ip("192.0.2.1") == (4, 0xC0000201)
    assert parse_network("192.0.2.77/24") == (4, 0xC0000200, 24)
    assert format_network(6, 0x20010DB8 << 96, 32) == "2001:db8::/32"
