import io

from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, parse_report


def test_tld_feed(feeds_dir, parse):
    parsed = parse("urlhaus-csv", feeds_dir / "urlhaus/urlhaus_tld_ch_2019.csv")
    assert len(parsed.accepted) == 2 and not parsed.rejected and not parsed.skipped
    first = parsed.records[0]
    assert first["source.url"] == "http://marconuenlist.ch/verif.accounts.docs.net/"
    assert first["source.fqdn"] == "marconuenlist.ch"
    assert first["source.ip"] == "62.241.37.242"
    assert first["source.asn"] == 29083
    assert first["source.geolocation.cc"] == "DE"
    assert first["status"] == "offline"
    assert first["time.source"] == "2019-02-13T00:34:42+00:00"
    assert first["classification.type"] == "malware-distribution"
    assert parsed.records[1]["source.asn"] == 29222


def test_full_csv_layout():
    report = (b'# URLhaus\n'
              b'# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n'
              b'"1","2024-01-02 03:04:05","http://198.51.100.7:8080/x.sh","online",'
              b'"2024-01-03 00:00:00","malware_download","elf,mirai",'
              b'"https://urlhaus.abuse.ch/url/1/","someone"\n')
    (outcome,) = parse_report(get_format("urlhaus-csv"), io.BytesIO(report))
    assert isinstance(outcome, Accepted)
    source = outcome.record["source"]
    assert source == {"url": "http://198.51.100.7:8080/x.sh", "ip": "198.51.100.7",
                      "port": 8080, "urlpath": "/x.sh"}
    assert outcome.record["extra"]["tags"] == ["elf", "mirai"]
