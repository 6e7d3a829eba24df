"""A realistic world for the end-to-end benchmark (`threatroute bench`): data, recipients, feeds.

- ASN table: the real 2014 pyasn table (512k prefixes) from ../shared/data/asn where present,
  else a generated table of the same size and shape (mostly /24s, ~45k origin ASNs).
- City database: the real GeoLite2 City of the `maxminddb-geolite2` package (the `bench`
  extra) where installed, else a generated City database of a million networks.
- Recipients (10,000 by default): hosters each owning an origin AS of the table, a few of its
  prefixes, a hosting customer's nested prefix now and then, and domains; a national CERT
  per country subscribing it; upstream ISPs subscribing their customers' ASNs. Filters vary
  like real ones.
- Indicators shaped like the feeds: IPs (Shadowserver-like scans and infections, C2s), URLs
  (phishing, malware distribution) and domains, with repeats of earlier indicators, each in
  the wire form ingest produces (`normalise_indicator`).

Pure: no Kafka. Every choice is seeded, so two runs build the same world.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from threatroute.enrichers.asn import read_text
from threatroute.enrichers.databuild import uniform_ipv4_mmdb_bytes
from threatroute.record import indicator_key, normalise_indicator

REAL_ASN_TABLE = "asn/ipasn_20140513.dat.gz"
REAL_AS_NAMES = "asn/asnames.json.gz"
TABLE_SIZE = 512_000
CITY_NETWORKS = 1 << 20  # "a million networks"
COUNTRIES = ("US", "DE", "GB", "FR", "NL", "RU", "CN", "BR", "IN", "JP", "PL", "IT", "ES",
             "UA", "SE", "CA", "AU", "KR", "TR", "VN")
CLASSES_IP = (("infected-system", 35), ("scanner", 25), ("c2-server", 10), ("ddos", 5),
              ("vulnerable-system", 25))
CLASSES_URL = (("phishing", 60), ("malware-distribution", 40))
CLASSES_DOMAIN = (("phishing", 50), ("malware-distribution", 20), ("c2-server", 30))
TLPS = (("GREEN", 55), ("AMBER", 35), ("CLEAR", 8), ("RED", 2))
FEEDS = {"ip": ("shadowserver-scan", 80), "url": ("urlhaus", 90), "domain": ("threatfox", 70)}


def shared_data() -> Path:
    """../shared/data beside the checkout (THREATROUTE_SHARED_DATA overrides)."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("THREATROUTE_SHARED_DATA", default))


@dataclass
class World:
    """Paths of the data files, the registry, and what the indicator generator draws from."""

    root: Path
    ipasn: Path
    asnames: Path | None
    geoip: Path
    registry: Path
    asn_source: str
    geo_source: str
    recipients: int
    owned: list[tuple[int, int]] = field(repr=False, default_factory=list)  # (net, hosts)
    routed: list[tuple[int, int]] = field(repr=False, default_factory=list)
    domains: list[str] = field(repr=False, default_factory=list)

    def describe(self) -> str:
        return (f"ASN table: {self.asn_source}; City database: {self.geo_source}; "
                f"{self.recipients:,} recipients")


def build_world(root: Path, recipients: int = 10_000, seed: int = 13) -> World:
    """Write (or reuse) the data files and write the registry under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ipasn, asnames, asn_source = _asn_table(root, rng)
    geoip, geo_source = _city_database(root)
    rows = _table_rows(ipasn)
    world = World(root, ipasn, asnames, geoip, root / "registry.yaml", asn_source, geo_source,
                  recipients)
    entries = _recipients(rows, recipients, rng, world)
    world.registry.write_text(yaml.dump({"recipients": entries}, Dumper=_DUMPER,
                                        sort_keys=False, width=200))
    return world


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# -- data files ---------------------------------------------------------------------------------

def _asn_table(root: Path, rng: random.Random) -> tuple[Path, Path | None, str]:
    shared = shared_data()
    if (shared / REAL_ASN_TABLE).exists():
        names = shared / REAL_AS_NAMES
        return (shared / REAL_ASN_TABLE, names if names.exists() else None,
                f"real pyasn table {REAL_ASN_TABLE} from {shared}")
    path = root / "ipasn-generated.dat"
    if not path.exists():
        path.write_text(generated_asn_table(TABLE_SIZE, random.Random(rng.random())))
    return path, None, f"generated, {TABLE_SIZE:,} prefixes ({shared} has no real table)"


def generated_asn_table(size: int, rng: random.Random) -> str:
    """pyasn text of `size` distinct IPv4 prefixes shaped like a BGP table: ~60% /24, the rest
    /16 to /23, origin ASNs drawn with a long tail (a few large networks, many small ones)."""
    lengths = [24] * 60 + [23] * 8 + [22] * 12 + [21] * 6 + [20] * 6 + [19] * 3 + [18] * 2 + \
        [17] + [16] * 2
    asns = [rng.randrange(1, 400_000) for _ in range(45_000)]
    seen: set[tuple[int, int]] = set()
    lines = ["; IP-ASN32-DAT file", "; generated by threatroute benchworld", ";"]
    while len(seen) < size:
        length = rng.choice(lengths)
        first = rng.randrange(1, 224)
        if first in (10, 127):
            continue
        network = ((first << 24) | rng.getrandbits(24)) & ~((1 << (32 - length)) - 1)
        if (network, length) in seen:
            continue
        seen.add((network, length))
        asn = asns[min(int(rng.paretovariate(1.2)) - 1, len(asns) - 1) if rng.random() < 0.3
                   else rng.randrange(len(asns))]
        lines.append(f"{ipaddress.IPv4Address(network)}/{length}\t{asn}")
    return "\n".join(lines) + "\n"


def _city_database(root: Path) -> tuple[Path, str]:
    try:
        from _maxminddb_geolite2 import geolite2_database  # the `bench` extra

        return Path(geolite2_database()), "real GeoLite2 City (maxminddb-geolite2 package)"
    except ImportError:
        pass
    return _generated(root), (f"generated, {CITY_NETWORKS:,} networks (install the `bench` "
                              "extra for the real GeoLite2 City)")


def _generated(root: Path) -> Path:
    path = root / f"city-generated-{CITY_NETWORKS}.mmdb"
    if not path.exists():
        path.write_bytes(generated_city_mmdb(CITY_NETWORKS))
    return path


def generated_city_mmdb(networks: int, cities: int = 40_000, seed: int = 1) -> bytes:
    """A GeoIP2-City-shaped database covering IPv4 with `networks` equal blocks."""
    rng = random.Random(seed)
    records = []
    for i in range(cities):
        cc = rng.choice(COUNTRIES)
        country = {"geoname_id": 1000 + COUNTRIES.index(cc), "iso_code": cc,
                   "names": {"en": f"Country {cc}"}}
        records.append({
            "city": {"geoname_id": 100_000 + i, "names": {"en": f"City {i}", "de": f"Stadt {i}"}},
            "continent": {"code": "EU", "geoname_id": 6255148, "names": {"en": "Europe"}},
            "country": country, "registered_country": country,
            "location": {"accuracy_radius": rng.choice((5, 10, 20, 50, 100, 500)),
                         "latitude": round(rng.uniform(-60, 70), 4),
                         "longitude": round(rng.uniform(-180, 180), 4),
                         "time_zone": "Europe/Berlin"},
            "postal": {"code": f"{rng.randrange(10000, 99999)}"},
            "subdivisions": [{"geoname_id": 200_000 + i % 5000, "iso_code": f"S{i % 90}",
                              "names": {"en": f"Region {i % 5000}"}}],
        })
    assignment = [rng.randrange(cities) for _ in range(networks)]
    return uniform_ipv4_mmdb_bytes(records, assignment, "GeoIP2-City",
                                   "threatroute benchmark: generated City database")


def _table_rows(ipasn: Path) -> dict[int, list[tuple[int, int]]]:
    """{origin ASN: [(network as int, prefix length), ...]} of the IPv4 prefixes of a table."""
    rows: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for line in read_text(ipasn).splitlines():
        if not line or line[0] == ";" or ":" in line:
            continue
        prefix, _, asn = line.partition("\t")
        address, _, length = prefix.partition("/")
        if asn.isdigit() and length:
            a, b, c, d = address.split(".")
            network = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
            rows[int(asn)].append((network, int(length)))
    return rows


# -- recipients ---------------------------------------------------------------------------------

def _recipients(rows: dict[int, list[tuple[int, int]]], count: int, rng: random.Random,
                world: World) -> list[dict[str, Any]]:
    asns = sorted(asn for asn in rows if 1 <= asn < 4_200_000_000)
    chosen = rng.sample(asns, min(count, len(asns)))
    entries: list[dict[str, Any]] = []
    for i, asn in enumerate(chosen):
        prefixes = rows[asn]
        owned = rng.sample(prefixes, min(len(prefixes), rng.choice((1, 2, 3, 5, 8))))
        listed = [f"{ipaddress.IPv4Address(n)}/{length}" for n, length in owned]
        domains = [f"r{i}-{w}.example" for w in rng.sample(("host", "cloud", "web", "srv"),
                                                           rng.choice((1, 1, 2, 3)))]
        world.domains += domains
        world.owned += [(n, 1 << (32 - length)) for n, length in prefixes]
        entry: dict[str, Any] = {
            "id": f"r{i:05d}", "name": f"Recipient {i} (AS{asn})",
            "contacts": [f"abuse@r{i}-host.example"],
            "owns": {"asns": [asn], "prefixes": listed, "domains": domains},
            "tlp_clearance": rng.choice(("amber", "amber", "green")),
        }
        if rng.random() < 0.3:
            entry["classifications"] = rng.sample(
                ["phishing", "c2-server", "infected-system", "malware-distribution", "scanner",
                 "ddos", "vulnerable-system"], 3)
        if rng.random() < 0.3:
            entry["min_confidence"] = rng.choice((50, 75, 85))
        if rng.random() < 0.05:
            entry["format"] = rng.choice(("stix", "csv"))
        entries.append(entry)
    _nest_customers(entries, rng)
    _subscribers(entries, rng)
    taken = set(chosen)
    others = [p for asn in asns if asn not in taken for p in rows[asn]]
    world.routed = [(n, 1 << (32 - length)) for n, length in others]
    return entries


def _nest_customers(entries: list[dict[str, Any]], rng: random.Random) -> None:
    """One hoster in twenty also owns a /28 inside another's prefix (its hosting customer)."""
    owned = {p for entry in entries for p in entry["owns"]["prefixes"]}
    for entry in entries[::20]:
        host = rng.choice(entries)
        if host is entry or not host["owns"]["prefixes"]:
            continue
        network = ipaddress.ip_network(host["owns"]["prefixes"][0])
        if network.prefixlen <= 28:
            inner = ipaddress.ip_network((int(network.network_address) + 16 * rng.randrange(
                network.num_addresses // 16), 28))
            if str(inner) not in owned:
                owned.add(str(inner))
                entry["owns"]["prefixes"].append(str(inner))


def _subscribers(entries: list[dict[str, Any]], rng: random.Random) -> None:
    """A national CERT per country (20), 5% upstream ISPs (10-30 customer ASNs each)."""
    every_asn = [e["owns"]["asns"][0] for e in entries]
    for cc, entry in zip(COUNTRIES, rng.sample(entries, len(COUNTRIES)), strict=False):
        entry["subscribe"] = {"countries": [cc]}
        entry["tlp_clearance"] = "amber"
    for entry in rng.sample(entries, len(entries) // 20):
        entry.setdefault("subscribe", {})["asns"] = rng.sample(every_asn, rng.randrange(10, 31))


# -- indicators ---------------------------------------------------------------------------------

def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in table], [w for _, w in table])[0]


def indicators(world: World, count: int, seed: int, repeat: float = 0.3
               ) -> Iterator[tuple[str, bytes]]:
    """`count` (key, JSON value) records as ingest writes them to indicators.raw.

    Mix: 60% IPs (70% in recipients' networks, 25% elsewhere in the table, 5% unrouted),
    25% URLs (half on recipients' domains, a fifth on bare IPs), 15% domains; `repeat` of the
    records repeat an earlier indicator (feeds report the same infection daily).
    """
    rng = random.Random(seed)
    earlier: list[dict[str, Any]] = []
    run = f"{seed:x}"
    for n in range(count):
        if earlier and rng.random() < repeat:
            raw = dict(rng.choice(earlier))
        else:
            raw = _fresh(world, rng, run, n)
            if len(earlier) < 50_000:
                earlier.append(raw)
        raw["time"] = {"observation": f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:00:00+00:00"}
        record = normalise_indicator(raw)
        yield indicator_key(record), orjson.dumps(record)


def _address(world: World, rng: random.Random) -> str:
    roll = rng.random()
    pool = world.owned if roll < 0.7 else world.routed if roll < 0.95 else None
    if not pool:
        return f"240.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    network, size = rng.choice(pool)
    return str(ipaddress.IPv4Address(network + rng.randrange(size)))


def _fresh(world: World, rng: random.Random, run: str, n: int) -> dict[str, Any]:
    kind = rng.choices(("ip", "url", "domain"), (60, 25, 15))[0]
    feed, accuracy = FEEDS[kind]
    record: dict[str, Any] = {"feed": {"name": feed, "accuracy": accuracy},
                              "tlp": _weighted(rng, TLPS)}
    if kind == "ip":
        record["classification"] = {"type": _weighted(rng, CLASSES_IP)}
        record["source"] = {"ip": _address(world, rng), "port": rng.choice((22, 23, 445, 3389,
                                                                            8080, 443))}
        record["malware"] = {"name": rng.choice(("mirai", "conficker", "qakbot", "emotet"))}
        return record
    domain = rng.choice(world.domains) if world.domains and rng.random() < 0.5 else \
        f"x{run}-{n}.example.net"
    if kind == "url":
        record["classification"] = {"type": _weighted(rng, CLASSES_URL)}
        host = _address(world, rng) if rng.random() < 0.2 else f"www.{domain}"
        record["source"] = {"url": f"http://{host}/{run}/{n}/login.php"}
    else:
        record["classification"] = {"type": _weighted(rng, CLASSES_DOMAIN)}
        record["source"] = {"fqdn": f"{rng.choice(('', 'mail.', 'cdn.'))}{run}-{n}.{domain}"}
    return record
