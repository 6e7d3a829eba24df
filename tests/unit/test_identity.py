"""Indicator identity: the port counts only where a service is the thing to take down."""

from __future__ import annotations

import pytest

from threatroute.record import identity, indicator_key


def rec(ctype, port=None, ip="192.0.2.7"):
    source = {"ip": ip} if port is None else {"ip": ip, "port": port}
    return {"classification": {"type": ctype}, "source": source}


@pytest.mark.parametrize("ctype", ["c2-server", "malware-distribution", "ddos-amplifier",
                                   "vulnerable-system", "proxy"])
def test_services_are_told_apart_by_port(ctype):
    assert indicator_key(rec(ctype, 443)) != indicator_key(rec(ctype, 8080))
    assert identity(rec(ctype, 443))[2] == "192.0.2.7:443"


@pytest.mark.parametrize("ctype", ["infected-system", "scanner", "brute-force", "ddos", "spam"])
def test_clients_are_the_address_alone(ctype):
    keys = {indicator_key(rec(ctype, port)) for port in (49152, 49153, 50000, 61000, 65535)}
    assert keys == {indicator_key(rec(ctype))}
    assert identity(rec(ctype, 49152)) == (ctype, "ip", "192.0.2.7")


def test_classification_still_separates_indicators():
    assert indicator_key(rec("scanner")) != indicator_key(rec("infected-system"))
