"""The demo world: a valid registry, data rows for every hoster, and the story's inputs."""

from __future__ import annotations

from datetime import UTC, datetime

from threatroute.enrichers.demoworld import CERT, UPSTREAM, answer, build_world
from threatroute.matchers.suppression import load_suppressions
from threatroute.record import indicator_key, normalise_indicator
from threatroute.registry import load_registry

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_the_world_is_about_fifty_valid_recipients_with_data_rows():
    world = build_world(NOW)
    recipients = load_registry(world.registry_yaml())
    assert len(recipients) == 50 and {UPSTREAM, CERT} <= {r.id for r in recipients}
    assert len(world.networks) == 49
    assert len(load_suppressions(world.suppressions_yaml())) == 1


def test_every_indicator_is_valid_and_the_sinkhole_rows_are_one_indicator_per_host():
    world = build_world(NOW)
    records = [normalise_indicator(r) for r in world.round_one + world.round_two]
    sinkhole = [r for r in records if r["feed"]["name"] == "sinkhole"
                and r["source"]["ip"] == "198.18.3.50"]  # wont_fix: seen in both rounds
    assert len(sinkhole) == 10 and len({indicator_key(r) for r in sinkhole}) == 1


def test_simulated_answers_follow_the_roles():
    alert = {"indicator": {"feed": {"name": "phish-noisy"}, "classification": {"type": "phishing"},
                           "source": {"ip": "198.18.7.30"}}, "reasons": ["owner"]}
    assert answer("hoster-07", alert) == ["false_positive"]
    assert answer("hoster-05", alert) == ["acknowledged", "remediated"]
    assert answer("hoster-23", alert) == []
    c2 = {"indicator": {"classification": {"type": "c2-server"},
                        "source": {"ip": "198.18.11.70"}}, "reasons": ["owner"]}
    assert answer("hoster-12", c2) == ["not_ours"]
    assert answer("hoster-11", {**c2, "reasons": ["rerouted: ..."]}) == ["acknowledged"]
    bot = {"indicator": {"classification": {"type": "infected-system"},
                         "source": {"ip": "198.18.3.50"}}, "reasons": ["owner"]}
    assert answer("hoster-03", bot) == ["acknowledged", "wont_fix"]
    assert answer(UPSTREAM, bot) == []
