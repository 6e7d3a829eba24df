"""Hostile input for the fuzz tests: hypothesis strategies for every feed format and for the
records stages decode, the fixed cases of issue 12, and the checks every outcome must pass.

Hypothesis draws the hostile vocabulary of each example (values for every kind of field, half
plausible and half not: wrong types, lone surrogates, scoped IPv6, over-long strings, huge or
non-finite numbers, nested JSON, raw bytes) and a seed; a seeded assembler then spreads that
vocabulary over a report of many lines or elements in the format's own shape (header, columns,
document), damaging some (cut short, bytes inserted, deep nesting, over-size, a BOM). Drawing
each line through hypothesis costs ~2 ms; this costs ~0.1 ms, so a fuzz run covers 100,000
items in a minute or two and still shrinks a failure (to fewer values, a simpler seed).
Each report knows which of its lines or elements are items, so a test checks that every one
is accounted for.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from threatroute.contract import MAX_RECORD_BYTES, check_record
from threatroute.errors import InvalidRecord
from threatroute.feeds.base import Accepted, Outcome, Rejected
from threatroute.record import flatten, indicator_key, nest

# how many items each fuzz test drove, per component: printed at the end of the run
# (tests/conftest.py) so the issue's note can quote them
COUNTS: Counter[str] = Counter()
# the counters that are inputs given (the rest break them down): their sum is the total
TOTALS = ("feed parsers: items", "stage decoder: messages", "feedback decoder: reports",
          "ingest (broker): lines", "stages (broker): messages")
SCALE = 1.0  # tests multiply their example counts by THREATROUTE_FUZZ_SCALE (conftest sets it)
BROKER_MESSAGE_LIMIT = 1_000_000  # the producer's default message.max.bytes


def fuzz_settings(examples: int) -> settings:
    """Deterministic (CI reproduces a failure), no example database, no deadline."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example,
                                           HealthCheck.filter_too_much])


# -- values --------------------------------------------------------------------------------------

SURROGATES = ["\ud800", "x\udfffy", "\udc80", "caf\udce9"]
EDGE_TEXT = [
    "", " ", "\t", "\x00", "null", "None", "NaN", "-", "%", "\u2028", "\ufeff", "\u202e",
    "fe80::1%eth0", "[fe80::1%eth0]", "fe80::%eth0/64", "::ffff:192.0.2.1", "1.2.3",
    "999.1.2.3", "0x7f.1", "AS", "AS-1", "tlp:purple", "http://", "a..b", "😀" * 3,
]
HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 10**30, -(10**40)]

text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)  # surrogates too
long_text = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "\ud800", "0.", "%"]),
                      st.sampled_from([4097, 9000, 70_000]))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True), text, st.sampled_from(SURROGATES),
    st.sampled_from(EDGE_TEXT))
json_values = st.one_of(scalars, scalars, scalars, st.recursive(
    scalars, lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=6))

# values by kind: what feeds write (GOOD) and what a validator must refuse or repair (BAD)
GOOD: dict[str, list[Any]] = {
    "ip": ["192.0.2.10", "198.51.100.7", "203.0.113.99", "2001:db8::1", "2001:DB8:0:0::5",
           "::ffff:192.0.2.1", "10.0.0.1", "192.0.2[.]11", "[2001:db8::2]", "198.51.100.200",
           "192.0.2.77", "100.64.1.2"],
    "network": ["192.0.2.0/24", "2001:db8::/32", "192.0.2.1/24", "10.0.0.0/8",
                "198.51.100.128/25", "192.0.2.0"],
    "fqdn": ["example.com", "bad.example", "xn--caf-dma.example", "café.example",
             "EXAMPLE.ORG.", "example[.]com", "example(dot)net", "_dmarc.example.org",
             "www.example.com", "c2.bad.example"],
    "url": ["http://example.com/x", "hxxps://bad[.]example/login", "http://192.0.2.10:8080/a?b",
            "http://[2001:db8::1]/", "example.com/path", "ftp://x.example/f",
            "https://user:pw@bad.example/", "http://xn--caf-dma.example/\u00e9",
            "https://www.example.com/login.php?x=1#f", "http://198.51.100.7/gate.php"],
    "time": ["2024-01-02T03:04:05Z", "2024-01-02 03:04:05", "1700000000", "1700000000000",
             "Mon, 14 Sep 2015 04:39:22 GMT", "2024-01-02T03:04:05+0530", 1700000000, 1.7e12],
    "asn": ["AS64500", "64500", 64500, 65536, "AS 64501", 64500.0, 64501],
    "port": [80, "443", 0, 65535, 8080],
    "cc": ["GB", "gb", "DE", "FR", "US"],
    "tlp": ["GREEN", "tlp:amber", "white", "RED", "AMBER+STRICT", "TLP:CLEAR"],
    "ctype": ["phishing", "c2-server", "C&C", "scanner", "botnet drone", "infected-system",
              "malware-distribution", "Phishing "],
    "accuracy": [90, "75", 100.0, 50.5, 60],
    "name": ["Feed A", "abuse.ch", "Ümlaut feed", "mirai", "x" * 4000],
    "hash": ["d41d8cd98f00b204e9800998ecf8427e"],
    "status": ["online", "offline", "unknown"],
}
BAD: dict[str, list[Any]] = {
    "ip": ["fe80::1%eth0", "fe80::1%25eth0", "192.0.2.256", "01.2.3.4", "1.2.3", "::1%lo"],
    "network": ["fe80::%eth0/64", "192.0.2.0/33", "2001:db8::/129", "0.0.0.0/-1"],
    "fqdn": ["a..b", "-x.example", "x" * 70 + ".com", "localhost", "192.0.2.4", "a.123"],
    "url": ["http://[fe80::1%25eth0]/", "http://", "http://a b/", "javascript:alert(1)",
            "http://[::1", "https://bad.example:99999/", "http://" + "a" * 300 + ".com/"],
    "time": ["1970-01-01T00:00:00Z", "2024-13-45", "yesterday", "99999999999999", "2101-01-01"],
    "asn": [0, -1, 2**32, "ASx", True],
    "port": [70000, -1, "http", 8080.5],
    "cc": ["XX1", "G", "GBR", "U\u0053S"],
    "tlp": ["purple", "TLP:", 3],
    "ctype": ["no-such", "", 7],
    "accuracy": [101, -5, "high", float("nan")],
    "name": ["\ud800feed", "x" * 5000],
    "hash": ["", 5],
    "status": [["online"]],
}
@dataclass
class Vocab:
    """What hypothesis drew for one example: values by kind, junk and a seed for the assembler."""

    values: dict[str, list[Any]]
    junk: list[Any]
    noise: list[bytes]
    seed: int

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.bad = {kind: [*BAD[kind], *self.values.get(kind, [])] for kind in GOOD}

    def chance(self, one_in: int) -> bool:
        return self.rng.randrange(one_in) == 0

    def cell(self, kind: str | None) -> Any:
        """A value for a field of `kind`: mostly what a feed writes (so records get accepted and
        reach the stages), often what it must not (a bad value of the kind, or anything)."""
        roll = self.rng.randrange(24)
        if kind is None or roll == 0:
            return self.rng.choice(self.junk)
        if roll < 3:
            return self.rng.choice(self.bad[kind])
        return self.rng.choice(GOOD[kind])

    def pick(self, options: list[Any]) -> Any:
        return self.rng.choice(options)


vocabularies = st.builds(
    Vocab,
    values=st.fixed_dictionaries({kind: st.lists(
        st.one_of(scalars, long_text) if kind in ("name", "url") else scalars, max_size=2)
        for kind in GOOD}),
    junk=st.lists(json_values, min_size=1, max_size=8),
    noise=st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1))


def as_text(value: Any) -> str:
    """A cell of a text format: the value as a feed would write it (None: empty)."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


_BLANK = b" \t\r\n\x0b\x0c\xef\xbb\xbf"


def sanitise_line(line: bytes) -> bytes:
    """A data line the splitter keeps as one item: one line, not blank, not a comment."""
    line = line.replace(b"\n", b" ").replace(b"\r", b" ")
    stripped = line.strip()
    # `[` first (past blanks and a BOM) would make an intelmq report a JSON list document
    if not stripped or stripped[:1] in (b"#", b";") or line.lstrip(_BLANK)[:1] == b"[":
        line = b"x" + line
    return line


def dumps(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes as a careless producer writes them: NaN allowed, surrogates passed through."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass")


def utf8(text_: str) -> bytes:
    return text_.encode("utf-8", "surrogatepass")


def mangled(v: Vocab, line: bytes) -> bytes:
    """The line as it is (mostly), or damaged: cut short, bytes inserted, replaced by noise,
    nested past any limit, over the size an item may have, or led by a BOM."""
    how = v.rng.randrange(40)
    if how == 0 and len(line) > 2:
        return line[:v.rng.randrange(1, len(line) - 1)]
    if how == 1:
        at = v.rng.randrange(len(line) + 1)
        return line[:at] + v.pick(v.noise) + line[at:]
    if how == 2:
        return v.pick(v.noise)
    if how == 3:
        depth = v.pick([20, 300, 5000])
        return b'{"extra": ' + b"[" * depth + b"]" * depth + b"}"
    if how == 4:  # beyond the 256 KiB an item may have
        return line[:-1] + b', "comment": "' + b"x" * (300 * 1024) + b'"}'
    if how == 5:
        return b"\xef\xbb\xbf" + line
    return line


# -- indicators as JSON (jsonl, intelmq, stage inputs) ---------------------------------------------

KNOWN_PATHS = ["source.ip", "source.url", "source.fqdn", "source.network", "source.asn",
               "source.port", "source.geolocation.cc", "classification.type", "feed.accuracy",
               "tlp", "time.source", "time.observation", "extra", "source", "classification",
               "extra.owner", "destination.ip", "source.geolocation.latitude", "raw",
               "classification.taxonomy", "feed", "source.ip.x", "x.y.z.w.v", "", "source..ip"]
LOCATOR_KINDS = ["ip", "url", "fqdn", "network", "asn"]
OPTIONAL = {"source.port": "port", "source.geolocation.cc": "cc", "tlp": "tlp",
            "time.source": "time", "feed.accuracy": "accuracy", "feed.name": "name",
            "malware.hash.md5": "hash", "status": "status"}


def indicator_object(v: Vocab, flat: bool | None = None) -> Any:
    """An indicator as a feed writes it (nested or flat IntelMQ names), often broken."""
    if v.chance(12):
        return v.pick(v.junk)
    event: dict[str, Any] = {"classification.type": v.cell("ctype")}
    for kind in v.rng.sample(LOCATOR_KINDS, v.pick([1, 1, 1, 2])):
        event[f"source.{kind}"] = v.cell(kind)
    for name, kind in OPTIONAL.items():
        if v.chance(2):
            event[name] = v.cell(kind)
    if v.chance(5):
        event["extra"] = v.pick([v.pick(v.junk), {"k": v.pick(v.junk)}, {"n": 1, "tags": ["a"]}])
    if v.chance(6):
        event[v.pick(KNOWN_PATHS)] = v.pick(v.junk)
    if flat if flat is not None else v.chance(2):
        return event
    try:
        return nest(event)
    except InvalidRecord:  # a value and a group under one name: sent flat
        return event


def json_line(v: Vocab, flat: bool | None = None) -> bytes:
    return sanitise_line(mangled(v, dumps(indicator_object(v, flat), v.chance(2))))


# -- reports per format ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Report:
    """A generated report: its bytes, how many items it holds, whether the document as a whole
    is broken (then it is one refused item), and the parse options it needs."""

    data: bytes
    items: int
    broken: bool = False
    options: tuple[tuple[str, str], ...] = ()
    first: int = 1  # the number of the first item (a line's number counts the header lines)

    @property
    def numbers(self) -> set[int]:
        """The item numbers the outcomes must cover, exactly."""
        return {0} if self.broken else set(range(self.first, self.first + self.items))


def line_report(header: list[bytes], lines: list[bytes], **options: str) -> Report:
    return Report(b"\n".join([*header, *lines]) + b"\n", len(lines),
                  options=tuple(options.items()), first=len(header) + 1)


def csv_line(v: Vocab, kinds: list[str | None], delimiter: str = ",") -> bytes:
    cells = [as_text(v.cell(kind)).replace("\n", " ").replace("\r", " ") for kind in kinds]
    if v.chance(15):  # a row with a cell too many or too few
        cells = cells[:-1] if v.chance(2) else [*cells, "extra"]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(cells)
    return sanitise_line(mangled(v, utf8(out.getvalue())))


FEODO_CSV: list[str | None] = ["time", "ip", "port", "status", "time", "name"]
URLHAUS: list[str | None] = [None, "time", "url", "status", "time", "name", "name", "url", "name"]
SHADOWSERVER: dict[str, tuple[list[str], list[str | None]]] = {
    "scan_rdp": (["timestamp", "ip", "port", "hostname", "protocol", "tag", "asn", "geo",
                  "region", "city", "naics"],
                 ["time", "ip", "port", "fqdn", "name", "name", "asn", "cc", "name", "name",
                  None]),
    "malware_url": (["timestamp", "url", "host", "ip", "tag", "sha256", "asn", "geo"],
                    ["time", "url", "fqdn", "ip", "name", "hash", "asn", "cc"]),
    "event4_sinkhole_http": (["timestamp", "protocol", "src_ip", "src_port", "src_asn",
                              "src_geo", "dst_ip", "dst_port", "tag", "family", "http_host",
                              "http_url"],
                             ["time", "name", "ip", "port", "asn", "cc", "ip", "port", "name",
                              "name", "fqdn", "url"]),
}
CYMRU_CATEGORIES = ["bot", "bots", "bruteforce", "controller", "darknet", "phishing", "proxy",
                    "scanner", "malwareurl", "openresolver", "conficker", "nonsense"]
CYMRU_NOTES = ["", "port: 80; protocol: 6", "srcport 1337 mwtype Conficker destaddr 172.16.0.22",
               "http://bad.example/x", "hostname: c2.example; dest_port: 80,443 (total_count:2)",
               "proxy_type: http-8080", "ssh", "family: mirai; dest_addr: 192.0.2.1",
               "hostname: 192.0.2.1", "protocol: 99"]


def cymru_line(v: Vocab) -> bytes:
    cells = [v.pick(CYMRU_CATEGORIES) if v.rng.randrange(6) else as_text(v.pick(v.junk)),
             as_text(v.cell("ip")), as_text(v.cell("asn")), as_text(v.cell("time")),
             v.pick(CYMRU_NOTES) if v.rng.randrange(5) else as_text(v.pick(v.junk)),
             v.pick(["Example AS, GB", "", "x", "Name, ZZ"])]
    if v.chance(15):
        cells = cells[:v.rng.randrange(6)]
    return sanitise_line(mangled(v, utf8("|".join(cells))))


def spamhaus_line(v: Vocab, asn: bool) -> bytes:
    if v.chance(2):  # the JSON-lines form
        entry = ({"asn": v.cell("asn"), "cc": v.cell("cc"), "asname": v.cell("name")} if asn
                 else {"cidr": v.cell("network"), "sblid": v.cell("name")})
        line = dumps(entry, v.chance(2))
    elif asn:
        line = utf8(f"{as_text(v.cell('asn'))} ; {as_text(v.cell('cc'))} | "
                    f"{as_text(v.cell('name'))}")
    else:
        line = utf8(f"{as_text(v.cell('network'))} ; SBL{v.rng.randrange(10**6)}")
    return sanitise_line(mangled(v, line))


# -- JSON documents --------------------------------------------------------------------------------

def entry(v: Vocab, fields: dict[str, str | None]) -> Any:
    """An element of a JSON document: an object of (key: value kind), often damaged,
    sometimes not an object at all."""
    if v.chance(8):
        return v.pick(v.junk)
    obj = {key: v.cell(kind) for key, kind in fields.items() if v.rng.randrange(6)}
    if v.chance(6):
        obj[v.pick([*fields, "x"])] = v.pick(v.junk)
    return obj


def document(v: Vocab, items: list[Any], wrap: Callable[[list[Any]], Any]) -> Report:
    data = dumps(wrap(items), v.chance(2))
    how = v.rng.randrange(14)
    if how == 0:
        return Report(data[:v.rng.randrange(1, len(data) - 1)], 1, broken=True)
    if how == 1:
        return Report(v.pick(v.noise) + b"}", 1, broken=True)
    if how == 2:
        return Report(dumps(v.pick([None, 1, "x", True]), True), 1, broken=True)
    if how == 3:  # one element beyond the broker's message limit
        first = items[0] if isinstance(items[0], dict) else {}
        items[0] = {"padding": "p" * (1200 * 1024), **first}
        data = dumps(wrap(items), True)
    return Report(data, len(items))


FEODO_JSON = {"ip_address": "ip", "port": "port", "status": "status", "hostname": "fqdn",
              "as_number": "asn", "as_name": "name", "country": "cc", "first_seen": "time",
              "last_online": "time", "malware": "name"}
PHISHTANK = {"url": "url", "submission_time": "time", "phish_detail_url": "url",
             "target": "name", "online": None, "phish_id": None, "verified": None}
PHISHTANK_DETAIL = {"ip_address": "ip", "cidr_block": "network", "announcing_network": "asn",
                    "country": "cc"}
THREATFOX = {"threat_type": None, "malware_printable": "name", "confidence_level": "accuracy",
             "first_seen": "time", "tags": None}
IOC_TYPES = ["ip:port", "domain", "url", "md5_hash", "sha256_hash", "nonsense"]


def phishtank_entry(v: Vocab) -> Any:
    value = entry(v, PHISHTANK)
    if isinstance(value, dict) and v.chance(2):
        value = dict(value)  # never a junk value itself: that could end up inside itself
        value["details"] = [entry(v, PHISHTANK_DETAIL)] if v.rng.randrange(4) else v.pick(v.junk)
    return value


def threatfox_entry(v: Vocab) -> Any:
    value = entry(v, THREATFOX)
    if isinstance(value, dict) and v.rng.randrange(5):
        value = dict(value)
        kind = v.pick(IOC_TYPES)
        value["ioc_type"] = kind
        value["ioc"] = {"ip:port": lambda: f"{as_text(v.cell('ip'))}:{as_text(v.cell('port'))}",
                        "domain": lambda: v.cell("fqdn"), "url": lambda: v.cell("url")}.get(
            kind, lambda: v.cell(None))()
        value["threat_type"] = v.pick(["botnet_cc", "payload_delivery", "x"])
    return value


MISP_TYPES: dict[str, str | None] = {
    "ip-dst": "ip", "ip-src": "ip", "domain": "fqdn", "hostname": "fqdn", "url": "url",
    "ip-dst|port": None, "domain|ip": None, "md5": "hash", "link": "url", "nonsense": None}
MISP_TAGS = ["tlp:green", "tlp:red", 'rsit:fraud="phishing"', "x", 'ecsirt:malicious-code="c2"']


def misp_attribute(v: Vocab) -> Any:
    if v.chance(7):
        return v.pick(v.junk)
    kind = v.pick(list(MISP_TYPES))
    pool = MISP_TYPES[kind]
    value = v.cell(pool) if pool else (f"{as_text(v.cell('ip'))}|{as_text(v.cell('port'))}"
                                       if v.chance(2) else v.cell(None))
    attribute: dict[str, Any] = {"type": kind, "value": value}
    for key, make in (("category", lambda: v.pick(["Network activity", "Payload delivery"])),
                      ("to_ids", lambda: v.chance(2)), ("comment", lambda: v.cell("name")),
                      ("timestamp", lambda: v.cell("time")),
                      ("Tag", lambda: [{"name": v.pick(MISP_TAGS)}] if v.rng.randrange(4)
                       else v.pick(v.junk))):
        if v.chance(2):
            attribute[key] = make()
    return attribute


STIX_PATTERNS = ["[ipv4-addr:value = '{ip}']", "[domain-name:value = '{fqdn}']",
                 "[url:value = '{url}'] OR [ipv6-addr:value = '{ip}']",
                 "[ipv4-addr:value = '{ip}' AND url:value = '{url}']",
                 "[file:hashes.MD5 = 'x']", "[ipv4-addr:value = '{network}'] WITHIN 5 SECONDS",
                 "not a pattern ((", "[ipv4-addr:value != '{ip}']", "[ipv4-addr:value = '{network}']"]
TLP_MARKINGS = ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
                "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "nonsense"]


def stix_object(v: Vocab) -> Any:
    if v.chance(7):
        return v.pick([v.pick(v.junk), {"type": "malware", "id": "malware--1"}])
    values = {kind: as_text(v.cell(kind)).replace("'", "\\'")
              for kind in ("ip", "fqdn", "url", "network")}
    obj: dict[str, Any] = {
        "type": "indicator", "id": f"indicator--{v.rng.getrandbits(64):016x}",
        "pattern": v.pick(STIX_PATTERNS).format(**values) if v.rng.randrange(8) else
        v.pick(v.junk), "pattern_type": v.pick(["stix", "stix", "stix", "sigma"])}
    for key, make in (
            ("indicator_types", lambda: [v.pick(["malicious-activity", "benign", "compromised",
                                                 "x"])] if v.rng.randrange(4) else v.pick(v.junk)),
            ("valid_from", lambda: v.cell("time")), ("confidence", lambda: v.cell("accuracy")),
            ("name", lambda: v.cell("name")),
            ("object_marking_refs", lambda: [v.pick(TLP_MARKINGS)]),
            ("revoked", lambda: v.chance(4))):
        if v.chance(2):
            obj[key] = make()
    return obj


def report_builders(size: int) -> dict[str, Callable[[Vocab], Report]]:
    """How to assemble a report of about `size` items in each format, by format name."""
    def count(v: Vocab) -> int:
        return v.rng.randrange(1, size + 1)

    def lines(header: list[bytes], line: Callable[[Vocab], bytes], **options: str
              ) -> Callable[[Vocab], Report]:
        return lambda v: line_report(header, [line(v) for _ in range(count(v))], **options)

    def doc(element: Callable[[Vocab], Any], wrap: Callable[[list[Any]], Any]
            ) -> Callable[[Vocab], Report]:
        return lambda v: document(v, [element(v) for _ in range(count(v))], wrap)

    def intelmq(v: Vocab) -> Report:
        if v.chance(3):  # IntelMQ's JSON list form: told by its leading "["
            report = doc(lambda w: indicator_object(w, flat=True), list)(v)
            if report.data.lstrip(_BLANK)[:1] != b"[":
                report = Report(b"[" + report.data, 1, broken=True)
            return report
        return lines([], lambda w: json_line(w, flat=True))(v)

    def shadowserver(v: Vocab) -> Report:
        report = v.pick(list(SHADOWSERVER))
        columns, kinds = SHADOWSERVER[report]
        return lines([",".join(columns).encode()], lambda w: csv_line(w, kinds),
                     report=report)(v)

    return {
        "jsonl": lines([], json_line),
        "intelmq": intelmq,
        "feodo-json": doc(lambda v: entry(v, FEODO_JSON), list),
        "feodo-csv": lines([b"# banner", b'"first_seen_utc","dst_ip","dst_port","c2_status",'
                            b'"last_online","malware"'], lambda v: csv_line(v, FEODO_CSV)),
        "urlhaus-csv": lines([b"# URLhaus", b"# id,dateadded,url,url_status,last_online,"
                              b"threat,tags,urlhaus_link,reporter"],
                             lambda v: csv_line(v, URLHAUS)),
        "threatfox-json": doc(threatfox_entry, lambda items: {"query_status": "ok",
                                                              "data": items}),
        "phishtank-json": doc(phishtank_entry, list),
        "openphish": lines([], lambda v: sanitise_line(utf8(as_text(v.cell("url"))))),
        "spamhaus-drop": lines([b"; Last-Modified: Mon, 14 Sep 2015 04:39:22 GMT"],
                               lambda v: spamhaus_line(v, asn=False)),
        "spamhaus-asndrop": lines([b"; Last-Modified: 2024-01-02T03:04:05Z"],
                                  lambda v: spamhaus_line(v, asn=True)),
        "cymru": lines([b"# category|address|asn|timestamp|optional_information|asninfo"],
                       cymru_line),
        "shadowserver": shadowserver,
        "misp": doc(misp_attribute, lambda items: {"Event": {
            "info": "fuzz", "uuid": "5b1b8f5e-4a55-4d0b-9f3e-7d6f1d1f0a11",
            "Tag": [{"name": "tlp:amber"}], "Attribute": items}}),
        "stix": doc(stix_object, lambda items: {"type": "bundle", "id": "bundle--1",
                                                "objects": items}),
    }


def reports(size: int = 60) -> dict[str, st.SearchStrategy[Report]]:
    """A report strategy for every feed format, by format name."""
    return {fmt: vocabularies.map(build) for fmt, build in report_builders(size).items()}


def jsonl_lines(v: Vocab, count: int) -> list[bytes]:
    """`count` hostile JSON lines (for a file ingested against the broker)."""
    return [json_line(v) for _ in range(count)]


# -- records as the stages decode them -------------------------------------------------------------

BASE_RECORD = {
    "classification": {"type": "c2-server", "taxonomy": "malicious-code"},
    "source": {"ip": "192.0.2.10", "port": 443, "asn": 64500, "network": "192.0.2.0/24",
               "as_name": "EXAMPLEHOST", "geolocation": {"cc": "GB", "city": "London"}},
    "feed": {"name": "fuzz", "accuracy": 90.0},
    "tlp": "GREEN",
    "time": {"observation": "2024-01-02T03:04:05+00:00", "source": "2024-01-01T00:00:00+00:00"},
    "extra": {"owner": {"id": "examplehost", "name": "Example", "rule": "prefix 192.0.2.0/24"}},
}


def stage_message(v: Vocab) -> bytes:
    """A message value on an indicator topic: a valid record damaged at a few paths, a
    feed-shaped object, or anything at all."""
    how = v.rng.randrange(6)
    if how == 0:
        return mangled(v, dumps(indicator_object(v), v.chance(2)))
    record = json.loads(json.dumps(BASE_RECORD))
    for _ in range(v.pick([0, 0, 0, 1, 1, 2, 3])):
        *groups, leaf = v.pick(KNOWN_PATHS).split(".")
        node = record
        for group in groups:
            child = node.get(group)
            if not isinstance(child, dict):
                child = node[group] = {}
            node = child
        if v.rng.randrange(5):
            # a copy: a later path may lead into this value, which must never contain itself
            node[leaf] = copy.deepcopy(v.cell(v.pick(list(GOOD))) if v.chance(2)
                                       else v.pick(v.junk))
        else:
            node.pop(leaf, None)
    return mangled(v, dumps(record, v.chance(2)))


def stage_key(v: Vocab) -> bytes | None:
    """A message key: the stages' own (32 hex), none, or one a careless producer chose."""
    how = v.rng.randrange(20)
    if how == 0:
        return None
    if how == 1:
        return v.pick([*v.noise, b"", b"k" * 300, "\u00e9".encode()])
    return b"%032x" % v.rng.getrandbits(128)


Keyed = tuple[bytes | None, bytes]


def stage_messages(count: int) -> st.SearchStrategy[list[Keyed]]:
    """Lists of (key, value) messages for an indicator topic."""
    return vocabularies.map(lambda v: [(stage_key(v), stage_message(v)) for _ in range(
        v.rng.randrange(count // 2, count + 1))])


# -- the fixed cases of issue 12 -------------------------------------------------------------------

ISSUE_GOOD = {"classification": {"type": "c2-server"}, "source": {"ip": "192.0.2.10"},
        "feed": {"name": "issue-12"}, "tlp": "GREEN"}
ISSUE_LINES: dict[str, bytes] = {
    "lone surrogate": b'{"classification": {"type": "phishing"}, "source": {"url": '
                      b'"http://example.com/"}, "comment": "\\ud800"}',
    "lone surrogate in extra": b'{"classification.type": "scanner", "source.ip": "192.0.2.1", '
                               b'"extra": {"note": "x\\udfff"}}',
    "over-size line": json.dumps({**ISSUE_GOOD, "comment": "x" * (1100 * 1024)}).encode(),
    "scoped IPv6": json.dumps({**ISSUE_GOOD, "source": {"ip": "fe80::1%eth0"}}).encode(),
    "scoped IPv6 network": json.dumps({**ISSUE_GOOD, "source": {"network": "fe80::%eth0/64"}}).encode(),
    "scoped IPv6 in a URL": json.dumps({**ISSUE_GOOD, "source": {"url": "http://[fe80::1%25eth0]/"}}
                                       ).encode(),
    "typed port": json.dumps({**ISSUE_GOOD, "source": {"ip": "192.0.2.1", "port": [80]}}).encode(),
    "typed ip": json.dumps({**ISSUE_GOOD, "source": {"ip": {"v": "192.0.2.1"}, "fqdn": "x.example"}}
                           ).encode(),
    "typed geolocation": json.dumps({**ISSUE_GOOD, "source": {"ip": "192.0.2.1", "geolocation": 5}}
                                    ).encode(),
    "typed extra": json.dumps({**ISSUE_GOOD, "extra": [1, 2]}).encode(),
    "typed tlp": json.dumps({**ISSUE_GOOD, "tlp": ["GREEN"]}).encode(),
    "typed accuracy": json.dumps({**ISSUE_GOOD, "feed": {"accuracy": "NaN"}}).encode(),
    "deep unknown group": json.dumps({**ISSUE_GOOD, "a": {"b": {"c": {"d": {"e": "f"}}}}}).encode(),
}
ISSUE_STAGE_RECORDS: dict[str, bytes] = {  # produced past ingest, straight onto a stage input
    "scoped IPv6": json.dumps({**BASE_RECORD, "source": {"ip": "fe80::1%eth0"}}).encode(),
    "non-canonical IPv6": json.dumps({**BASE_RECORD, "source": {"ip": "2001:DB8::1"}}).encode(),
    "typed asn": json.dumps({**BASE_RECORD, "source": {"ip": "192.0.2.1", "asn": "64500"}}
                            ).encode(),
    "typed source": json.dumps({**BASE_RECORD, "source": ["192.0.2.1"]}).encode(),
    "typed extra": json.dumps({**BASE_RECORD, "extra": "owner"}).encode(),
    "typed feed": json.dumps({**BASE_RECORD, "feed": {"accuracy": "90"}}).encode(),
    "typed classification": json.dumps({**BASE_RECORD, "classification": {"type": 7}}).encode(),
    "lone surrogate": json.dumps({**BASE_RECORD, "comment": "\ud800"}).encode(),
    "no locator": json.dumps({**BASE_RECORD, "source": {"port": 80}}).encode(),
    "not an object": b"[1, 2, 3]",
    "not JSON": b"\xff\xfe{",
}


def stix_over_size(count: int = 2) -> bytes:
    """STIX documents over the broker's message size: one indicator with a 1.2 MB name."""
    objects = [{"type": "indicator", "id": f"indicator--{i:08d}-0000-4000-8000-000000000000",
                "pattern": "[ipv4-addr:value = '192.0.2.10']", "pattern_type": "stix",
                "name": "n" * (1200 * 1024)} for i in range(count)]
    return json.dumps({"type": "bundle", "id": "bundle--1", "objects": objects}).encode()


# -- what every outcome must satisfy ---------------------------------------------------------------

def check_outcome(outcome: Outcome, encode: Callable[[dict[str, Any]], bytes],
                  dead_letter: Callable[..., dict[str, Any]]) -> None:
    """An accepted record holds the contract and is what ingest sends; a refused item has a
    reason and a dead letter that fits in one message."""
    if isinstance(outcome, Accepted):
        assert check_record(outcome.record) is None, (check_record(outcome.record), outcome)
        assert outcome.value == orjson.dumps(outcome.record)
        assert len(outcome.value) <= MAX_RECORD_BYTES
        assert outcome.key == indicator_key(outcome.record)
        assert all(isinstance(name, str) for name in flatten(outcome.record))
    elif isinstance(outcome, Rejected):
        assert isinstance(outcome.reason, str) and outcome.reason.strip(), outcome
        letter = encode(dead_letter(outcome.raw, outcome.reason, stage="ingest",
                                    field=outcome.field, origin={"item": outcome.number}))
        assert len(letter) < BROKER_MESSAGE_LIMIT
        orjson.loads(letter)  # valid UTF-8 JSON, whatever the reason quoted
