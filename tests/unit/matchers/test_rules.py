"""The rules' configuration: hours in TOML, policies out."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from threatroute.errors import ConfigError
from threatroute.matchers.rules import RoutingRules, rules_from

DOC = tomllib.loads("""
[feedback]
false_positive_mute_hours = 48
[trust]
prior_reports = 3
min_factor = 0.4
[hygiene]
suppressions = "sup.yaml"
default_expiry_hours = 0
[hygiene.feed_expiry_hours]
"demo-c2" = 168
[escalation]
tick_seconds = 0.5
default_hours = 0
[escalation.acknowledge_within_hours]
"C&C" = 0.01
infected-system = 72
""")


def test_hours_become_policies(tmp_path: Path):
    rules = rules_from(DOC, tmp_path)
    assert rules.feedback.false_positive_mute == timedelta(hours=48)
    assert (rules.trust.prior_reports, rules.trust.min_factor, rules.trust.max_factor) == \
        (3.0, 0.4, 1.0)
    assert rules.hygiene.feed_expiry == {"demo-c2": timedelta(hours=168)}
    assert rules.hygiene.default_expiry is None
    # classification aliases are canonicalised, as in feeds
    assert rules.escalation.deadline("c2-server") == timedelta(hours=0.01)
    assert rules.escalation.deadline("phishing") is None
    assert rules.escalation_tick == timedelta(seconds=0.5)
    assert rules.suppressions == tmp_path / "sup.yaml"
    (tmp_path / "sup.yaml").write_text(
        "suppressions:\n  - {addresses: [192.0.2.1], reason: r, expires: 2099-01-01}\n")
    assert len(rules.suppression_list()) == 1


def test_defaults_and_errors():
    rules = rules_from({})
    assert rules == RoutingRules() and len(rules.suppression_list()) == 0
    with pytest.raises(ConfigError, match=r"escalation\.acknowledge_within_hours\.nonsense"):
        rules_from({"escalation": {"acknowledge_within_hours": {"nonsense": 1}}})
    with pytest.raises(ConfigError, match=r"feedback\.false_positive_mute_hours"):
        rules_from({"feedback": {"false_positive_mute_hours": -1}})
    with pytest.raises(ConfigError, match="min_factor"):
        rules_from({"trust": {"min_factor": 2}})
    with pytest.raises(ConfigError, match="not found"):
        rules_from({"hygiene": {"suppressions": "/nonexistent.yaml"}}).suppression_list()
