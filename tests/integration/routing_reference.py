"""An independent, brute-force statement of the routing rules (DESIGN "Recipients and
matching"), written without matchers/ so the end-to-end test checks the product against it."""

from __future__ import annotations

import ipaddress
from typing import Any

RANK = {"CLEAR": 0, "GREEN": 1, "AMBER": 2, "AMBER+STRICT": 3, "RED": 4}


def _address(source: dict) -> Any:
    if "ip" in source:
        return ipaddress.ip_network(source["ip"])
    if "network" in source:
        return ipaddress.ip_network(source["network"])
    return None


def _within(address: Any, prefix: str) -> bool:
    net = ipaddress.ip_network(prefix)
    return address is not None and address.version == net.version and address.subnet_of(net)


def _suffix_of(fqdn: str | None, domain: str) -> bool:
    return bool(fqdn) and (fqdn == domain or fqdn.endswith("." + domain))


def owner(record: dict, registry: list[dict]) -> tuple[str, str] | None:
    source = record["source"]
    address = _address(source)
    prefixes = [(ipaddress.ip_network(p).prefixlen, r["id"], p) for r in registry
                for p in r.get("owns", {}).get("prefixes", []) if _within(address, p)]
    if prefixes:
        _, rid, prefix = max(prefixes)
        return rid, f"prefix {ipaddress.ip_network(prefix)}"
    for r in registry:
        if source.get("asn") in r.get("owns", {}).get("asns", []):
            return r["id"], f"asn {source['asn']}"
    domains = [(len(d), r["id"], d) for r in registry for d in r.get("owns", {}).get("domains", [])
               if _suffix_of(source.get("fqdn"), d)]
    if domains:
        _, rid, domain = max(domains)
        return rid, f"domain {domain}"
    return None


def recipients(record: dict, registry: list[dict]) -> set[str]:
    """Who must receive `record` (an enriched indicator)."""
    tlp = record.get("tlp", "AMBER")
    if tlp == "RED":
        return set()
    source = record["source"]
    address = _address(source)
    found = owner(record, registry)
    owner_id = found[0] if found else None
    selected = {owner_id} if owner_id else set()
    for r in registry:
        sub = r.get("subscribe", {})
        if (source.get("geolocation", {}).get("cc") in sub.get("countries", [])
                or source.get("asn") in sub.get("asns", [])
                or any(_within(address, p) for p in sub.get("prefixes", []))
                or any(_suffix_of(source.get("fqdn"), d) for d in sub.get("domains", []))):
            selected.add(r["id"])
    by_id = {r["id"]: r for r in registry}
    accuracy = record.get("feed", {}).get("accuracy", 100)
    out = set()
    for rid in selected:
        r = by_id[rid]
        if tlp == "AMBER+STRICT" and rid != owner_id:
            continue
        # AMBER+STRICT narrows who may be told; the owner needs AMBER clearance for it
        if RANK[r.get("tlp_clearance", "green").upper()] < min(RANK[tlp], RANK["AMBER"]):
            continue
        if r.get("classifications") and record["classification"]["type"] not in r["classifications"]:
            continue
        if accuracy < r.get("min_confidence", 0):
            continue
        out.add(rid)
    return out


def _suffixes(fqdn: str | None) -> list[str]:
    """fqdn and every parent name of it: a.b.example -> a.b.example, b.example, example."""
    if not fqdn:
        return []
    labels = fqdn.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


class IndexedReference:
    """`owner` and `recipients` above, the same rules looked up in dicts instead of scanned:
    for worlds of a thousand recipients and more. Still written without matchers/; the crash
    test checks it against the brute-force functions on a sample before relying on it."""

    def __init__(self, registry: list[dict]) -> None:
        self.by_id = {r["id"]: r for r in registry}
        self.owned_prefixes: dict[tuple[int, int, int], list[tuple[str, str]]] = {}
        self.owned_asns: dict[int, str] = {}
        self.owned_domains: dict[str, list[str]] = {}
        self.sub_countries: dict[str, set[str]] = {}
        self.sub_asns: dict[int, set[str]] = {}
        self.sub_prefixes: dict[tuple[int, int, int], set[str]] = {}
        self.sub_domains: dict[str, set[str]] = {}
        for r in registry:
            owns, sub, rid = r.get("owns", {}), r.get("subscribe", {}), r["id"]
            for prefix in owns.get("prefixes", []):
                self.owned_prefixes.setdefault(_net_key(prefix), []).append((rid, prefix))
            for asn in owns.get("asns", []):
                self.owned_asns.setdefault(asn, rid)  # the first in registry order, as above
            for domain in owns.get("domains", []):
                self.owned_domains.setdefault(domain, []).append(rid)
            for cc in sub.get("countries", []):
                self.sub_countries.setdefault(cc, set()).add(rid)
            for asn in sub.get("asns", []):
                self.sub_asns.setdefault(asn, set()).add(rid)
            for prefix in sub.get("prefixes", []):
                self.sub_prefixes.setdefault(_net_key(prefix), set()).add(rid)
            for domain in sub.get("domains", []):
                self.sub_domains.setdefault(domain, set()).add(rid)

    def owner(self, record: dict) -> tuple[str, str] | None:
        source = record["source"]
        address = _address(source)
        for key in _covering(address):  # most specific first
            if key in self.owned_prefixes:
                rid, prefix = max(self.owned_prefixes[key])
                return rid, f"prefix {ipaddress.ip_network(prefix)}"
        if source.get("asn") in self.owned_asns:
            return self.owned_asns[source["asn"]], f"asn {source['asn']}"
        domains = [(len(d), rid, d) for d in _suffixes(source.get("fqdn"))
                   for rid in self.owned_domains.get(d, [])]
        if domains:
            _, rid, domain = max(domains)
            return rid, f"domain {domain}"
        return None

    def recipients(self, record: dict) -> set[str]:
        tlp = record.get("tlp", "AMBER")
        if tlp == "RED":
            return set()
        source = record["source"]
        found = self.owner(record)
        owner_id = found[0] if found else None
        selected = {owner_id} if owner_id else set()
        selected |= self.sub_countries.get(source.get("geolocation", {}).get("cc"), set())
        selected |= self.sub_asns.get(source.get("asn"), set())
        for key in _covering(_address(source)):
            selected |= self.sub_prefixes.get(key, set())
        for domain in _suffixes(source.get("fqdn")):
            selected |= self.sub_domains.get(domain, set())
        accuracy = record.get("feed", {}).get("accuracy", 100)
        out = set()
        for rid in selected:
            r = self.by_id[rid]
            if tlp == "AMBER+STRICT" and rid != owner_id:
                continue
            if RANK[r.get("tlp_clearance", "green").upper()] < min(RANK[tlp], RANK["AMBER"]):
                continue
            if r.get("classifications") and \
                    record["classification"]["type"] not in r["classifications"]:
                continue
            if accuracy < r.get("min_confidence", 0):
                continue
            out.add(rid)
        return out


def _net_key(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix)
    return net.version, int(net.network_address), net.prefixlen


def _covering(address: Any) -> list[tuple[int, int, int]]:
    """Keys of every network containing `address` (itself included), most specific first."""
    if address is None:
        return []
    bits, value = address.max_prefixlen, int(address.network_address)
    return [(address.version, value & ~((1 << (bits - length)) - 1) & ((1 << bits) - 1), length)
            for length in range(address.prefixlen, -1, -1)]
