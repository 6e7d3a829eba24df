import pytest

from threatroute import fields
from threatroute.errors import InvalidRecord


@pytest.mark.parametrize(("defanged", "plain"), [
    ("hxxp://evil.example/a", "http://evil.example/a"),
    ("HXXPS://evil.example", "https://evil.example"),
    ("evil[.]example", "evil.example"),
    ("evil(dot)example", "evil.example"),
    ("evil [dot] example", "evil . example"),  # spaces outside the brackets stay (not an FQDN)
    ("http[:]//evil.example", "http://evil.example"),
    ("http[://]evil.example", "http://evil.example"),
    ("fxp://files.example", "ftp://files.example"),
])
def test_refang(defanged, plain):
    assert fields.refang(defanged) == plain


def test_refanged_values_validate():
    assert fields.ip("192.0.2[.]1") == "192.0.2.1"
    assert fields.fqdn("evil(dot)Example[.]COM.") == "evil.example.com"
    parts = fields.url("hxxps[:]//evil[.]example:8443/x?y=1")
    assert (parts.url, parts.fqdn, parts.port, parts.path) == (
        "https://evil.example:8443/x?y=1", "evil.example", 8443, "/x?y=1")


@pytest.mark.parametrize(("given", "canonical"), [
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    (" 192.0.2.1 ", "192.0.2.1"),
])
def test_ip_canonical(given, canonical):
    assert fields.ip(given) == canonical


@pytest.mark.parametrize("bad", ["999.1.1.1", "1.2.3", "example.com", "", 3232235777, None])
def test_ip_refuses(bad):
    with pytest.raises(InvalidRecord):
        fields.ip(bad)


def test_url_with_ipv6_host_and_userinfo():
    parts = fields.url("http://user:pw@[2001:DB8::1]:8080/p")
    assert (parts.url, parts.ip, parts.fqdn) == ("http://[2001:db8::1]:8080/p", "2001:db8::1", None)


def test_network():
    assert fields.network("192.0.2.77/24") == "192.0.2.0/24"
    assert fields.network("2001:DB8::/32") == "2001:db8::/32"
    with pytest.raises(InvalidRecord):
        fields.network("10.0.0.0/33")


@pytest.mark.parametrize(("given", "encoded"), [
    ("bücher.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example.", "xn--bcher-kva.example"),
    ("münchen.de", "xn--mnchen-3ya.de"),
])
def test_fqdn_idna(given, encoded):
    assert fields.fqdn(given) == encoded


@pytest.mark.parametrize("bad", ["localhost", "a..example", "-a.example", "192.0.2.1",
                                 "a.123", "a" * 64 + ".example", "☃" * 70 + ".example"])
def test_fqdn_refuses(bad):
    with pytest.raises(InvalidRecord):
        fields.fqdn(bad)


@pytest.mark.parametrize(("given", "utc"), [
    ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00"),
    ("2024-01-02 03:04:05", "2024-01-02T03:04:05+00:00"),  # naive: taken as UTC
    ("2024-01-02T05:04:05+02:00", "2024-01-02T03:04:05+00:00"),
    ("2024-01-02T03:04:05+0200", "2024-01-02T01:04:05+00:00"),
    ("2022-01-07 16:29:58 UTC", "2022-01-07T16:29:58+00:00"),
    ("Mon, 14 Sep 2015 04:39:22 GMT", "2015-09-14T04:39:22+00:00"),
    (1465681304, "2016-06-11T21:41:44+00:00"),
    ("1465681304000", "2016-06-11T21:41:44+00:00"),  # milliseconds
    ("2021-03-27T00:00:00.521730Z", "2021-03-27T00:00:00+00:00"),
])
def test_timestamp_to_utc(given, utc):
    assert fields.timestamp(given) == utc


@pytest.mark.parametrize("bad", ["yesterday", "1970-01-01", "2200-01-01", True, 1e20, ""])
def test_timestamp_refuses(bad):
    with pytest.raises(InvalidRecord):
        fields.timestamp(bad)


@pytest.mark.parametrize(("given", "level"), [
    ("white", "CLEAR"), ("TLP:WHITE", "CLEAR"), ("tlp:clear", "CLEAR"), ("green", "GREEN"),
    ("Amber", "AMBER"), ("amber+strict", "AMBER+STRICT"), ("TLP: RED", "RED"),
])
def test_tlp(given, level):
    assert fields.tlp(given) == level


@pytest.mark.parametrize("bad", ["purple", "", 1, "tlp:ex:chr"])
def test_tlp_refuses(bad):
    with pytest.raises(InvalidRecord):
        fields.tlp(bad)


@pytest.mark.parametrize(("given", "value"), [(0, 0.0), (100, 100.0), ("55.5", 55.5)])
def test_confidence(given, value):
    assert fields.confidence(given) == value


@pytest.mark.parametrize("bad", [-1, 100.01, "NaN", "inf", True, "high"])
def test_confidence_refuses(bad):
    with pytest.raises(InvalidRecord):
        fields.confidence(bad)


def test_asn_and_port():
    assert fields.asn("AS64500") == 64500
    assert fields.port("443") == 443
    for bad in (0, 4294967296, "ASx"):
        with pytest.raises(InvalidRecord):
            fields.asn(bad)
    with pytest.raises(InvalidRecord):
        fields.port(65536)
