from threatroute.feeds.feodo import FeodoCsv, FeodoJson


def test_json_agrees_with_intelmq(feeds_dir, parse, agrees_with_intelmq):
    parsed = parse("feodo-json", feeds_dir / "feodotracker/ipblocklist.json")
    assert len(parsed.accepted) == 4 and not parsed.rejected and not parsed.skipped
    agrees_with_intelmq(parsed.records,
                        feeds_dir / "feodotracker/ipblocklist.intelmq_expected_events.json")


def test_json_fields(feeds_dir, parse):
    first, _, _, last = parse("feodo-json", feeds_dir / "feodotracker/ipblocklist.json").records
    assert first["source.reverse_dns"] == "srv-web.ffconsulting.com"
    assert first["malware.name"] == "dridex"
    assert first["feed.name"] == FeodoJson.defaults["feed.name"]
    assert first["tlp"] == "CLEAR"
    # no first_seen: dated by last_online, as IntelMQ
    assert last["time.source"] == "2022-11-15T00:00:00+00:00"
    assert "source.reverse_dns" not in last  # hostname null


def test_csv(feeds_dir, parse):
    parsed = parse("feodo-csv", feeds_dir / "feodotracker/ipblocklist_2021.csv")
    assert [r["source.ip"] for r in parsed.records] == ["10.213.75.205", "192.16.238.101"]
    assert parsed.records[0]["source.port"] == 443
    assert parsed.records[0]["time.source"] == "2021-01-17T07:30:05+00:00"
    assert parsed.records[0]["classification.type"] == "c2-server"
    assert not parsed.rejected and not parsed.skipped  # banner and footer are comments
    assert parsed.accepted[0].number == 10  # line numbers are the file's
    assert FeodoCsv.defaults["feed.provider"] == "abuse.ch"
