"""Build small offline ASN and geo databases for the demo and tests; fetch real ones.

`build_demo_data(dest)` (behind `threatroute data build`) writes, from the built-in table
`DEMO_NETWORKS` of documentation prefixes (RFC 5737, RFC 3849, RFC 2544, RFC 6598) and
documentation ASNs (RFC 5398):

- `ipasn.dat`: pyasn's IPASN text format (v4 and v6 in one file),
- `asnames.json`: pyasn's AS-names JSON,
- `demo-city.mmdb`: a MaxMind DB with GeoIP2-City-shaped records.

The MMDB writer is our own (about a hundred lines): the format is small and fully specified
(maxmind.github.io/MaxMind-DB), and writing it here saves two dependencies (mmdb-writer,
netaddr) for a file that tests read back with the official reader.

`fetch_asn_data` and `fetch_geo_data` fetch real data where the internet is reachable (see
docs/data.md); they raise `FetchError` with an operator-facing message on any failure.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

from threatroute.errors import ThreatrouteError

StrPath = str | PathLike[str]


class FetchError(ThreatrouteError):
    """Real data could not be fetched; the message says which step failed and why."""


@dataclass(frozen=True)
class DemoNetwork:
    """One row of the built-in table: a prefix, its origin AS, and where it is."""

    prefix: str
    asn: int
    as_name: str
    cc: str
    country: str
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None


# examplehost (AS64500) matches the registry example in DESIGN.md; the /25 and /48 inside
# larger prefixes exercise longest-prefix match; 203.0.113.0/24 has a country but no city.
DEMO_NETWORKS: tuple[DemoNetwork, ...] = (
    DemoNetwork("192.0.2.0/24", 64500, "EXAMPLEHOST Example Hosting Ltd, GB", "GB",
                "United Kingdom", "London", 51.5142, -0.0931),
    DemoNetwork("198.51.100.0/24", 64501, "DOCNET-B Documentation Net B, DE", "DE",
                "Germany", "Berlin", 52.5200, 13.4050),
    DemoNetwork("198.51.100.128/25", 64502, "NESTED-HOST Nested Hosting GmbH, DE", "DE",
                "Germany", "Frankfurt am Main", 50.1109, 8.6821),
    DemoNetwork("203.0.113.0/24", 64511, "DOCNET-C Documentation Net C, US", "US",
                "United States"),
    DemoNetwork("198.18.0.0/15", 64496, "BENCHNET Benchmarking Lab, NL", "NL",
                "Netherlands", "Amsterdam", 52.3740, 4.8897),
    DemoNetwork("100.64.0.0/10", 64510, "SHAREDNET Carrier NAT Co, JP", "JP",
                "Japan", "Tokyo", 35.6895, 139.6917),
    DemoNetwork("2001:db8::/32", 65536, "DOC6 Documentation v6, FR", "FR",
                "France", "Paris", 48.8566, 2.3522),
    DemoNetwork("2001:db8:1::/48", 64500, "EXAMPLEHOST Example Hosting Ltd, GB", "GB",
                "United Kingdom", "London", 51.5142, -0.0931),
    DemoNetwork("2001:db8:beef::/48", 65551, "DOC6-SE Documentation v6 Sweden, SE", "SE",
                "Sweden", "Stockholm", 59.3293, 18.0686),
)


class DemoData(NamedTuple):
    """Paths of the files `build_demo_data` wrote."""

    ipasn: Path
    asnames: Path
    mmdb: Path


def build_demo_data(dest: StrPath, networks: Iterable[DemoNetwork] = DEMO_NETWORKS) -> DemoData:
    """Write ipasn.dat, asnames.json and demo-city.mmdb into `dest` (created if missing)."""
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(networks)
    paths = DemoData(out / "ipasn.dat", out / "asnames.json", out / "demo-city.mmdb")
    _write_atomically(paths.ipasn, ipasn_text(rows).encode())
    names = {str(row.asn): row.as_name for row in rows}
    _write_atomically(paths.asnames, json.dumps(names, indent=1, sort_keys=True).encode())
    records = {row.prefix: city_record(row) for row in rows}
    _write_atomically(paths.mmdb, mmdb_bytes(records, "threatroute-Demo-City",
                                             "threatroute demo data (documentation prefixes)"))
    return paths


def ipasn_text(rows: Iterable[DemoNetwork]) -> str:
    """pyasn's IPASN format: `;` header, then `prefix<TAB>asn` lines."""
    lines = ["; IP-ASN32-DAT file", "; Original file : threatroute built-in demo table", ";"]
    lines += [f"{ipaddress.ip_network(row.prefix)}\t{row.asn}" for row in rows]
    return "\n".join(lines) + "\n"


def city_record(row: DemoNetwork) -> dict[str, Any]:
    """A GeoIP2-City-shaped record with only the fields the demo needs."""
    country = {"iso_code": row.cc, "names": {"en": row.country}}
    record: dict[str, Any] = {"country": country, "registered_country": country}
    if row.city is not None:
        record["city"] = {"names": {"en": row.city}}
    if row.latitude is not None and row.longitude is not None:
        record["location"] = {"latitude": row.latitude, "longitude": row.longitude}
    return record


def _write_atomically(path: Path, data: bytes) -> None:
    # write-then-rename so a reloading worker never opens a half-written file
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- MaxMind DB writer (format 2.0: IPv6 tree, IPv4 at ::/96, 32-bit records) ---

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(type_id: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes([size - 29])
    elif size < 65821:
        head, extra = 30, struct.pack(">H", size - 285)
    else:
        head, extra = 31, struct.pack(">I", size - 65821)[1:]
    if type_id <= 7:
        return bytes([(type_id << 5) | head]) + extra
    return bytes([head, type_id - 7]) + extra


class Uint32(int):
    """An int that must be encoded as uint32 (libmaxminddb checks the metadata's types)."""


class Uint64(int):
    """An int that must be encoded as uint64."""


def encode(value: Any) -> bytes:
    """One value in the MMDB data-section encoding (str, float, bool, uint, map, list)."""
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if not 0 <= value < 2**64:
            raise ValueError(f"only unsigned integers below 2**64 are supported: {value}")
        raw = value.to_bytes(8, "big").lstrip(b"\0")
        if isinstance(value, Uint64):
            type_id = 9
        elif isinstance(value, Uint32):
            type_id = 6
        else:
            type_id = 5 if value < 2**16 else 6 if value < 2**32 else 9
        return _control(type_id, len(raw)) + raw
    if isinstance(value, Mapping):
        body = b"".join(encode(str(k)) + encode(v) for k, v in value.items())
        return _control(7, len(value)) + body
    if isinstance(value, list | tuple):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__} in a MaxMind DB")


def mmdb_bytes(records: Mapping[str, Any], database_type: str, description: str) -> bytes:
    """A complete MaxMind DB mapping each network (v4 or v6 CIDR) to its record.

    More specific networks win over the ones containing them, whatever their order.
    """
    data = bytearray()
    offsets: dict[bytes, int] = {}
    # a trie of [left, right] lists; a leaf is ("data", offset); None means no data
    root: list[Any] = [None, None]
    items = sorted(((ipaddress.ip_network(n), r) for n, r in records.items()),
                   key=lambda item: item[0].prefixlen + (96 if item[0].version == 4 else 0))
    for network, record in items:
        blob = encode(record)
        if blob not in offsets:
            offsets[blob] = len(data)
            data += blob
        leaf = ("data", offsets[blob])
        bits = int(network.network_address)  # an IPv4 address is ::a.b.c.d in the IPv6 tree
        length = network.prefixlen + (96 if network.version == 4 else 0)
        node = root
        for depth in range(length - 1):
            bit = (bits >> (127 - depth)) & 1
            child = node[bit]
            if not isinstance(child, list):  # empty, or a shorter prefix's leaf to split
                child = node[bit] = [child, child]
            node = child
        node[(bits >> (128 - length)) & 1] = leaf
    nodes: list[list[Any]] = []
    index: dict[int, int] = {}
    queue = deque([root])
    while queue:  # breadth-first numbering; the root is node 0
        node = queue.popleft()
        if id(node) in index:  # a split leaf's subtree is never shared, but be safe
            continue
        index[id(node)] = len(nodes)
        nodes.append(node)
        queue.extend(child for child in node if isinstance(child, list))
    count = len(nodes)

    def record_value(child: Any) -> int:
        if child is None:
            return count
        if isinstance(child, list):
            return index[id(child)]
        return count + 16 + child[1]

    tree = b"".join(struct.pack(">II", record_value(n[0]), record_value(n[1])) for n in nodes)
    metadata = {
        "binary_format_major_version": 2, "binary_format_minor_version": 0,
        "build_epoch": Uint64(time.time()), "database_type": database_type,
        "description": {"en": description}, "ip_version": 6, "languages": ["en"],
        "node_count": Uint32(count), "record_size": 32,
    }
    return tree + bytes(16) + bytes(data) + _METADATA_MARKER + encode(metadata)


def uniform_ipv4_mmdb_bytes(records: list[Any], assignment: list[int], database_type: str,
                            description: str) -> bytes:
    """A MaxMind DB splitting IPv4 into len(assignment) equal networks (a power of two);
    network i holds records[assignment[i]].

    The tree is complete, so it is numbered arithmetically instead of built node by node:
    a million networks take seconds, where `mmdb_bytes` would need minutes and gigabytes.
    Lookups walk as deep as in a real City database (96 + log2(networks) bits).
    """
    networks = len(assignment)
    bits = networks.bit_length() - 1
    if networks < 2 or 1 << bits != networks:
        raise ValueError(f"the number of networks must be a power of two, got {networks}")
    data = bytearray()
    offsets = []
    for record in records:
        offsets.append(len(data))
        data += encode(record)
    inner = networks - 1                 # internal nodes of the IPv4 subtree
    count = 96 + inner                   # plus the path ::/0 -> ::/96 (IPv4 lives there)
    path = b"".join(struct.pack(">II", depth + 1, count) for depth in range(96))
    tree = bytearray(path)
    pack = struct.Struct(">II").pack
    for j in range(inner):
        left, right = 2 * j + 1, 2 * j + 2
        if left < inner:
            tree += pack(96 + left, 96 + right)
        else:  # children are leaves: networks left - inner and right - inner
            tree += pack(count + 16 + offsets[assignment[left - inner]],
                         count + 16 + offsets[assignment[right - inner]])
    metadata = {
        "binary_format_major_version": 2, "binary_format_minor_version": 0,
        "build_epoch": Uint64(time.time()), "database_type": database_type,
        "description": {"en": description}, "ip_version": 6, "languages": ["en"],
        "node_count": Uint32(count), "record_size": 32,
    }
    return bytes(tree) + bytes(16) + bytes(data) + _METADATA_MARKER + encode(metadata)


# --- real data, where the internet is reachable ---

DBIP_URL = "https://download.db-ip.com/free/dbip-{kind}-lite-{month}.mmdb.gz"
MAXMIND_URL = "https://download.maxmind.com/geoip/databases/{edition}/download?suffix=tar.gz"


def fetch_asn_data(dest: StrPath, *, ipv6: bool = True, scripts: StrPath | None = None,
                   timeout: float = 1800) -> tuple[Path, Path]:
    """Download the latest RouteViews RIB and convert it with pyasn's utilities.

    Runs `pyasn_util_download.py --latestv46` (`--latest`: IPv4 only, if not `ipv6`),
    `pyasn_util_convert.py --single RIB ipasn.dat` and `pyasn_util_asnames.py -o
    asnames.json` in `dest`; `scripts` is the folder holding them (default: beside the
    running Python). Each step may take `timeout` seconds. Returns (ipasn.dat, asnames.json).
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    bindir = Path(scripts) if scripts is not None else Path(sys.executable).parent
    _run([bindir / "pyasn_util_download.py", "--latestv46" if ipv6 else "--latest"], out, timeout)
    ribs = sorted(out.glob("rib.*.bz2"))
    if not ribs:
        raise FetchError(f"pyasn_util_download.py left no rib.*.bz2 in {out}")
    _run([bindir / "pyasn_util_convert.py", "--no-progress", "--single", ribs[-1].name,
          "ipasn.dat"], out, timeout)
    _run([bindir / "pyasn_util_asnames.py", "-o", "asnames.json"], out, timeout)
    return out / "ipasn.dat", out / "asnames.json"


def _run(command: list[Any], cwd: Path, timeout: float) -> None:
    script = Path(command[0])
    if not script.is_file():
        raise FetchError(f"{script.name} not found in {script.parent}; install pyasn there")
    try:
        done = subprocess.run([sys.executable, *map(str, command)], cwd=cwd, timeout=timeout,
                              capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired:
        raise FetchError(f"{script.name} did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"{script.name} failed (exit {done.returncode}): {last[0][:300]}")


def fetch_geo_data(dest: StrPath, *, account_id: str | None = None,
                   licence_key: str | None = None, edition: str = "GeoLite2-City",
                   month: str | None = None, url: str | None = None, timeout: float = 60) -> Path:
    """Download a City/Country MMDB into `dest` and return its path.

    With a MaxMind account id and licence key: the `edition` (GeoLite2-City, GeoLite2-Country)
    tarball, from which the .mmdb is extracted. Without: DB-IP's free "lite" City database
    for `month` (YYYY-MM, default this month; CC BY 4.0, attribution required). `url`
    overrides the download address (a mirror).
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    request: urllib.request.Request
    if licence_key:
        if not account_id:
            raise FetchError("a MaxMind licence key needs its account id as well")
        request = urllib.request.Request(url or MAXMIND_URL.format(edition=edition))
        token = b64encode(f"{account_id}:{licence_key}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        archive = out / f"{edition}.tar.gz"
    else:
        kind = "country" if "Country" in edition else "city"
        month = month or time.strftime("%Y-%m")
        request = urllib.request.Request(url or DBIP_URL.format(kind=kind, month=month))
        archive = out / f"dbip-{kind}-lite-{month}.mmdb.gz"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, \
                open(archive, "wb") as handle:
            shutil.copyfileobj(response, handle)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"download of {request.full_url.split('?')[0]} refused: "
                         f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot download {request.full_url.split('?')[0]}: {reason} "
                         "(no internet here? see docs/data.md)") from None
    return _unpack_mmdb(archive, out)


def _unpack_mmdb(archive: Path, out: Path) -> Path:
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith(".mmdb"))
                target = out / Path(member.name).name
                source = tar.extractfile(member)
                if source is None:
                    raise FetchError(f"{archive}: {member.name} is not a regular file")
                target.write_bytes(source.read())
        else:
            target = out / archive.name.removesuffix(".gz")
            target.write_bytes(gzip.decompress(archive.read_bytes()))
    except (OSError, EOFError, tarfile.TarError, StopIteration) as exc:
        raise FetchError(f"{archive} is not a usable database archive: {exc}") from None
    archive.unlink()
    return target
