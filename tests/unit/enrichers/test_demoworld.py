"""The demo world: a valid registry, data rows for every hoster, and the story's inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from threatroute.enrichers.demoworld import CERT, UPSTREAM, answer, build_world
from threatroute.matchers.suppression import load_suppressions
from threatroute.record import indicator_key, normalise_indicator
from threatroute.registry import load_registry

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_the_world_is_about_fifty_valid_recipients_with_data_rows():
    world = build_world(NOW)
    recipients = load_registry(world.registry_yaml())
    assert len(recipients) == 50 and {UPSTREAM, CERT} <= {r.id for r in recipients}
    assert world.ids == [r.id for r in recipients]
    assert len(world.networks) == 49
    assert len(load_suppressions(world.suppressions_yaml())) == 1


def test_a_tag_renames_every_recipient_and_feed_and_nothing_else():
    plain, tagged = build_world(NOW), build_world(NOW, "t1-")
    assert tagged.ids == [f"t1-{rid}" for rid in plain.ids]
    assert {r["feed"]["name"] for r in tagged.round_one} == \
        {f"t1-{r['feed']['name']}" for r in plain.round_one}
    assert [r["source"] for r in tagged.round_one] == [r["source"] for r in plain.round_one]
    assert load_registry(tagged.registry_yaml())


def test_every_indicator_is_valid_and_the_sinkhole_rows_are_one_indicator_per_host():
    world = build_world(NOW)
    records = [normalise_indicator(r) for r in
               world.round_one + world.round_two(NOW + timedelta(hours=3))]
    sinkhole = [r for r in records if r["feed"]["name"] == "sinkhole"
                and r["source"]["ip"] == "198.18.3.50"]  # wont_fix: seen in both rounds
    assert len(sinkhole) == 10 and len({indicator_key(r) for r in sinkhole}) == 1
    assert {r["time"]["source"] for r in sinkhole} == {
        (NOW - timedelta(minutes=5)).isoformat(), (NOW + timedelta(hours=3)).isoformat()}


def test_simulated_answers_follow_the_roles():
    world = build_world(NOW, "x-")
    alert = {"indicator": {"feed": {"name": "x-phish-noisy"},
                           "classification": {"type": "phishing"},
                           "source": {"ip": "198.18.7.30"}}, "reasons": ["owner"]}
    assert answer(world, "x-hoster-07", alert) == ["false_positive"]
    assert answer(world, "x-hoster-05", alert) == ["acknowledged", "remediated"]
    assert answer(world, "x-hoster-23", alert) == []
    c2 = {"indicator": {"classification": {"type": "c2-server"},
                        "source": {"ip": "198.18.11.70"}}, "reasons": ["owner"]}
    assert answer(world, "x-hoster-12", c2) == ["not_ours"]
    assert answer(world, "x-hoster-11", {**c2, "notification": "reroute"}) == ["acknowledged"]
    bot = {"indicator": {"classification": {"type": "infected-system"},
                         "source": {"ip": "198.18.3.50"}}, "reasons": ["owner"]}
    assert answer(world, "x-hoster-03", bot) == ["acknowledged", "wont_fix"]
    assert answer(world, "x-hoster-07", bot) == ["false_positive"]
    bot4 = {"indicator": {"classification": {"type": "infected-system"},
                          "source": {"ip": "198.18.4.50"}}, "reasons": ["owner"]}
    assert answer(world, "x-hoster-04", bot4) == ["acknowledged", "remediated"]
    assert answer(world, f"x-{UPSTREAM}", bot) == []
