import io

from threatroute.feeds import get_format
from threatroute.feeds.base import Rejected, parse_report


def test_legacy_infected(feeds_dir, parse):
    parsed = parse("cymru", feeds_dir / "cymru/infected_20171031.txt")
    assert len(parsed.accepted) == 9 and not parsed.rejected
    types = [r["classification.type"] for r in parsed.records]
    assert types == ["brute-force", "vulnerable-system", "phishing", "proxy", "spam",
                     "infected-system", "infected-system", "infected-system", "infected-system"]
    assert all(r["source.ip"] == "172.16.0.21" for r in parsed.records)
    assert parsed.records[0]["protocol.application"] == "ssh"
    assert parsed.records[2]["source.url"] == "http://www.example.com/"
    bot = parsed.records[5]
    assert (bot["source.port"], bot["malware.name"], bot["destination.ip"]) == (
        1337, "conficker", "172.16.0.22")
    assert "source.asn" not in parsed.records[8]  # ASN 0 means unknown
    assert parsed.records[8]["event_description.text"] == "Some Botnet"
    assert parsed.records[0]["time.source"] == "2017-10-31T10:00:00+00:00"
    assert parsed.records[0]["source.as_name"] == "Example AS Name"


def test_certname(feeds_dir, parse):
    parsed = parse("cymru", feeds_dir / "cymru/certname_20190327.txt")
    assert len(parsed.accepted) == 35 and not parsed.rejected and not parsed.skipped
    by_line = {o.number: r for o, r in zip(parsed.accepted, parsed.records, strict=True)}
    assert by_line[4]["source.as_name"] == "Example AS Name"  # ", AT" is the AS's country
    assert by_line[5]["extra"]["destination_ports"] == [80]
    assert by_line[5]["protocol.transport"] == "tcp"
    assert by_line[8]["source.fqdn"] == "www.example.com"  # a controller's hostname
    assert by_line[13]["source.port"] == 34320 and by_line[13]["protocol.application"] == "http"
    assert by_line[36]["classification.type"] == "brute-force"
    assert by_line[36]["source.port"] == 16794
    assert by_line[38]["source.reverse_dns"] == "21-0-16-172.example.tld"
    assert by_line[27]["extra"]["destination_ports"][-1] == 60704


def test_unknown_category_and_short_line():
    report = b"#category|address|asn|timestamp|optional_information|asninfo\n" \
             b"nonsense|192.0.2.1|64496|2019-03-22 11:18:52||AS, AT\nbot|192.0.2.1\n"
    first, second = parse_report(get_format("cymru"), io.BytesIO(report))
    assert isinstance(first, Rejected) and "category" in first.reason
    assert isinstance(second, Rejected) and second.raw == b"bot|192.0.2.1"
