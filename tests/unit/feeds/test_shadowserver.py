import io

import pytest

from threatroute.errors import ConfigError
from threatroute.feeds import get_format
from threatroute.feeds.base import Accepted, Context, parse_report
from threatroute.feeds.shadowserver import REPORTS, resolve_report

SAMPLES = {  # sample file -> (report type, rows)
    "blocklist": ("blocklist", 3),
    "compromised_website": ("compromised_website", 3),
    "event4_honeypot_brute_force": ("event4_honeypot_brute_force", 6),
    "event4_sinkhole_http": ("event4_sinkhole_http", 5),
    "malware_url": ("malware_url", 3),
    "phish_url": ("phish_url", 3),
    "scan_rdp": ("scan_rdp", 2),
    "test_smb": ("scan_smb", 3),
    "test_telnet": ("scan_telnet", 2),
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_agrees_with_intelmq(sample, feeds_dir, parse, agrees_with_intelmq):
    report, rows = SAMPLES[sample]
    parsed = parse("shadowserver", feeds_dir / f"shadowserver/{sample}.csv")
    assert len(parsed.accepted) == rows and not parsed.rejected and not parsed.skipped
    # deliberate difference (docs/feeds.md): feed.name is "Shadowserver <report title>", not
    # the name IntelMQ's collector configuration gave the test report
    ours = {"feed.name": lambda _: f"Shadowserver {REPORTS[report].title}"}
    agrees_with_intelmq(parsed.records,
                        feeds_dir / f"shadowserver/{sample}.intelmq_expected_events.json", ours)


def test_report_type_from_option_wins(feeds_dir, parse):
    parsed = parse("shadowserver", feeds_dir / "shadowserver/test_smb.csv", report="scan_telnet")
    assert parsed.records[0]["protocol.application"] == "telnet"


def test_values(feeds_dir, parse):
    blocklist = parse("shadowserver", feeds_dir / "shadowserver/blocklist.csv").records
    assert blocklist[2]["source.network"] == "198.123.245.0/24"
    assert blocklist[0]["extra"]["reason"] == "Malicious Host AA"
    sinkhole = parse("shadowserver", feeds_dir / "shadowserver/event4_sinkhole_http.csv").records
    assert sinkhole[0]["destination.fqdn"] == "differentia.ru"
    assert sinkhole[1]["extra"]["source.naics"] == "517311"
    rdp = parse("shadowserver", feeds_dir / "shadowserver/scan_rdp.csv").records
    assert rdp[0]["extra"]["bluekeep_vulnerable"] == "N"  # row one column short: padded


@pytest.mark.parametrize(("name", "report"), [
    ("2019-09-04-scan_rdp-austria-geo.csv", "scan_rdp"),
    ("/reports/event6_sinkhole_http.csv", "event4_sinkhole_http"),
    ("test_telnet", "scan_telnet"),
    ("scan6_smb", "scan_smb"),
    ("nothing-here.csv", None),
])
def test_resolve_report(name, report):
    assert resolve_report(name) == report


def test_unknown_report_is_a_config_error():
    stream = io.BytesIO(b'"timestamp","ip"\n"2020-01-01 00:00:00","192.0.2.1"\n')
    with pytest.raises(ConfigError, match="--report"):
        list(parse_report(get_format("shadowserver"), stream, Context(filename="weird.csv")))
    stream.seek(0)
    (outcome,) = parse_report(get_format("shadowserver"), stream,
                              Context(options={"report": "blocklist"}))
    assert isinstance(outcome, Accepted)
