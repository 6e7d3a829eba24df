"""`threatroute demo world` writes a world the pipeline can read: registry, indicators, data,
and a configuration with the story's short times (the packaged one otherwise)."""

from __future__ import annotations

import json
from datetime import timedelta

from threatroute.registry import load_registry
from threatroute.streams.commands.cli import main
from threatroute.streams.config import load_config


def test_world_files_and_a_config_with_short_times(tmp_path, capsys):
    assert main(["demo", "world", "--out", str(tmp_path), "--tag", "t-",
                 "--ack-seconds", "36"]) == 0
    recipients = load_registry((tmp_path / "registry.yaml").read_text())
    assert len(recipients) == 50 and all(r.id.startswith("t-") for r in recipients)
    rows = [json.loads(x) for x in (tmp_path / "round-1.jsonl").read_text().splitlines()]
    assert len(rows) == 218 and {r["feed"]["name"] for r in rows} >= {"t-phish-noisy"}
    config = load_config(tmp_path / "threatroute.toml")
    packaged = load_config()
    assert config.rules.escalation.deadline("c2-server") == timedelta(seconds=36)
    assert config.rules.escalation.deadline("phishing") is None
    assert config.rules.escalation_tick == timedelta(seconds=2)
    assert config.renotify_hours == 40 / 3600
    assert len(config.rules.suppression_list()) == 1
    assert config.ipasn == tmp_path / "data" / "ipasn.dat" and config.ipasn.is_file()
    # everything else as packaged
    assert config.topics == packaged.topics and config.dedup_window_hours == \
        packaged.dedup_window_hours
    assert main(["demo", "round-two", "--out", str(tmp_path)]) == 0
    second = [json.loads(x) for x in (tmp_path / "round-2.jsonl").read_text().splitlines()]
    assert len(second) == 48 + 12 * 5 + 6 + 10
    assert "c2-server alerts acknowledged within 36s" in capsys.readouterr().out
