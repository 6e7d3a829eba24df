def test_agrees_with_intelmq(feeds_dir, parse, agrees_with_intelmq):
    parsed = parse("phishtank-json", feeds_dir / "phishtank/online-valid.json")
    assert len(parsed.accepted) == 3 and not parsed.rejected
    agrees_with_intelmq(parsed.records,
                        feeds_dir / "phishtank/online-valid.intelmq_expected_events.json")


def test_fields_and_url_split(feeds_dir, parse):
    first = parse("phishtank-json", feeds_dir / "phishtank/online-valid.json").records[0]
    assert first["source.network"] == "204.152.192.0/19"
    assert first["source.asn"] == 8100
    assert first["event_description.target"] == "AEON Card"
    assert first["status"] == "online"
    # deliberate difference: the URL is split, so the host is routable by domain too
    assert first["source.fqdn"] == "ardentig.top"
    assert first["source.urlpath"] == "/"
    assert first["extra"]["phishtank.phish_id"] == "7946016"
