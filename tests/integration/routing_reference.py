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
