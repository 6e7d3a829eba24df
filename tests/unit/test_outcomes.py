import json
from datetime import UTC, datetime

import pytest

from threatroute.errors import InvalidRecord
from threatroute.matchers.dedup import Action, AlertState
from threatroute.matchers.formats import alert_record
from threatroute.outcomes import (
    CLOSED,
    DURATION_BUCKETS,
    STATUSES,
    AlertFacts,
    AlertStatus,
    BaselineWindow,
    Histogram,
    alert_facts,
    apply_feedback,
    judge_report,
    summarise,
)

ALERT_ID = "A" * 22
OTHER_ID = "B" * 22
KEY = "0" * 32
SENT = "2026-01-01T00:00:00+00:00"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
FACTS = AlertFacts(ALERT_ID, "alpha", KEY, "phishing", "urlhaus", "prefix 192.0.2.0/24", SENT,
                   "2026-01-01T12:00:00+00:00")


def feedback(status="acknowledged", time="2026-01-01T01:00:00+00:00", **extra):
    return {"alert_id": ALERT_ID, "recipient": "alpha", "status": status, "time": time, **extra}


def status_of(status, at="2026-01-01T01:00:00+00:00"):
    return AlertStatus(ALERT_ID, "alpha", KEY, status, at, acknowledged_at=at,
                       remediated_at=at if status == "remediated" else None)


# --- alert facts -----------------------------------------------------------------------------

def ledger_record(recipient="alpha", owner="alpha", feed="urlhaus", first="2026-01-01T00:00:00+00:00",
                  last="2026-01-03T00:00:00+00:00"):
    indicator = {"classification": {"type": "phishing", "taxonomy": "fraud"},
                 "source": {"ip": "192.0.2.7"}, "time": {"observation": first}}
    if feed is not None:
        indicator["feed"] = {"name": feed, "accuracy": 90}
    if owner is not None:
        indicator["extra"] = {"owner": {"id": owner, "name": "Alpha Ltd", "rule": "prefix 192.0.2.0/24"}}
    state = AlertState(ALERT_ID, recipient, KEY, first, last, last, 3)
    return alert_record(state, Action.RENOTIFY, indicator, ["owner"], last)


def test_alert_facts_from_a_real_ledger_record_of_the_owner():
    facts = alert_facts(ledger_record())
    assert facts == AlertFacts(ALERT_ID, "alpha", KEY, "phishing", "urlhaus", "prefix 192.0.2.0/24",
                               "2026-01-01T00:00:00+00:00", "2026-01-03T00:00:00+00:00")


def test_alert_facts_rule_is_subscription_unless_the_recipient_owns_the_indicator():
    assert alert_facts(ledger_record(recipient="cert", owner="alpha")).rule == "subscription"
    assert alert_facts(ledger_record(owner=None)).rule == "subscription"


def test_alert_facts_without_feed_name_and_with_other_time_notations():
    record = ledger_record(feed=None, first="2026-01-01T00:00:00Z", last="2025-12-31T00:00:00Z")
    facts = alert_facts(record)
    assert facts.feed is None
    assert facts.sent_at == "2026-01-01T00:00:00+00:00"
    assert facts.last_seen == facts.sent_at  # never before first_seen


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.pop("alert_id"), "alert_id"),
    (lambda r: r.update(recipient=7), "recipient"),
    (lambda r: r.pop("indicator_key"), "indicator_key"),
    (lambda r: r.update(indicator="x"), "indicator"),
    (lambda r: r["indicator"].pop("classification"), "classification.type"),
    (lambda r: r.pop("first_seen"), "first_seen"),
    (lambda r: r.update(last_seen="not a time"), "last_seen"),
])
def test_alert_facts_refuses_unusable_records(mutate, field):
    record = ledger_record()
    mutate(record)
    with pytest.raises(InvalidRecord) as caught:
        alert_facts(record)
    assert caught.value.field == field


def test_alert_facts_refuses_a_non_object():
    with pytest.raises(InvalidRecord):
        alert_facts(["not", "an", "object"])  # type: ignore[arg-type]


# --- transitions -----------------------------------------------------------------------------

# written out by hand, independently of the module's table
ALLOWED = {
    None: set(STATUSES),
    "acknowledged": {"in_progress", "remediated", "false_positive", "not_ours", "wont_fix"},
    "in_progress": {"remediated", "false_positive", "not_ours", "wont_fix"},
    "wont_fix": {"in_progress", "remediated"},
    "remediated": set(),
    "false_positive": set(),
    "not_ours": set(),
}


@pytest.mark.parametrize("new", STATUSES)
@pytest.mark.parametrize("old", (None, *STATUSES))
def test_every_transition(old, new):
    current = status_of(old) if old else None
    record = feedback(new, time="2026-01-01T02:00:00+00:00")
    if new in ALLOWED[old]:
        result = apply_feedback(record, FACTS, current, NOW)
        assert result.status == new and result.updated_at == "2026-01-01T02:00:00+00:00"
        return
    with pytest.raises(InvalidRecord) as caught:
        apply_feedback(record, FACTS, current, NOW)
    assert caught.value.field == "status"
    if old == new:
        assert caught.value.reason == f"already {new}"


def test_closed_statuses_are_final():
    assert all(not ALLOWED[status] for status in CLOSED)


# --- rejections ------------------------------------------------------------------------------

@pytest.mark.parametrize("record", [None, [], "acknowledged", 42, True])
def test_refuses_non_objects(record):
    with pytest.raises(InvalidRecord) as caught:
        apply_feedback(record, FACTS, None, NOW)
    assert "object" in caught.value.reason


def _without(name):
    record = feedback()
    del record[name]
    return record


@pytest.mark.parametrize(("record", "field", "words"), [
    (_without("alert_id"), "alert_id", "missing"),
    (feedback(alert_id=12345), "alert_id", "string"),
    (feedback(alert_id="short"), "alert_id", "not a valid alert id"),
    (_without("recipient"), "recipient", "missing"),
    (feedback(recipient=["alpha"]), "recipient", "string"),
    (feedback(recipient="Alpha Hosting"), "recipient", "not a valid recipient"),
    (_without("status"), "status", "missing"),
    (feedback(status=3), "status", "string"),
    (feedback(status="fixed"), "status", "unknown status"),
    (_without("time"), "time", "missing"),
    (feedback(time=1767225600), "time", "string"),
    (feedback(time="yesterday"), "time", "not a recognised time"),
    (feedback(time="2026-01-02T00:05:01+00:00"), "time", "future"),
    (feedback(note=42), "note", "string"),
    (feedback(note="x" * 4097), "note", "too long"),
])
def test_refuses_bad_fields(record, field, words):
    with pytest.raises(InvalidRecord) as caught:
        apply_feedback(record, FACTS, None, NOW)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_accepts_limits():
    five_minutes_ahead = feedback(time="2026-01-02T00:05:00+00:00", note="x" * 4096)
    result = apply_feedback(five_minutes_ahead, FACTS, None, NOW)
    assert result.note == "x" * 4096
    assert apply_feedback(feedback(time="2026-01-01T01:00:00Z"), FACTS, None, NOW).updated_at \
        == "2026-01-01T01:00:00+00:00"


@pytest.mark.parametrize("facts", [None, AlertFacts(OTHER_ID, "alpha", KEY, "phishing", None,
                                                    "subscription", SENT, SENT)])
def test_refuses_unknown_alert(facts):
    with pytest.raises(InvalidRecord) as caught:
        apply_feedback(feedback(), facts, None, NOW)
    assert caught.value.field == "alert_id"
    assert "unknown alert id" in caught.value.reason


def test_refuses_another_recipients_alert_without_saying_whose_it_is():
    facts = AlertFacts(ALERT_ID, "secretowner", KEY, "phishing", None, "subscription", SENT, SENT)
    with pytest.raises(InvalidRecord) as caught:
        apply_feedback(feedback(), facts, None, NOW)
    assert caught.value.field == "recipient"
    assert "not sent to recipient 'alpha'" in caught.value.reason
    assert "secretowner" not in str(caught.value)


# --- times, clamping -------------------------------------------------------------------------

def test_first_feedback_sets_acknowledged_at_and_later_ones_keep_it():
    first = apply_feedback(feedback("in_progress", "2026-01-01T01:00:00+00:00", note=" looking "),
                           FACTS, None, NOW)
    assert (first.acknowledged_at, first.updated_at, first.remediated_at, first.note) == (
        "2026-01-01T01:00:00+00:00", "2026-01-01T01:00:00+00:00", None, "looking")
    done = apply_feedback(feedback("remediated", "2026-01-01T05:00:00+00:00"), FACTS, first, NOW)
    assert (done.acknowledged_at, done.updated_at, done.remediated_at, done.note) == (
        "2026-01-01T01:00:00+00:00", "2026-01-01T05:00:00+00:00", "2026-01-01T05:00:00+00:00",
        None)
    assert (done.alert_id, done.recipient, done.indicator_key) == (ALERT_ID, "alpha", KEY)


def test_time_before_the_alert_was_sent_is_clamped_to_sent_at():
    result = apply_feedback(feedback("remediated", "2025-12-31T23:00:00+00:00"), FACTS, None, NOW)
    assert result.updated_at == result.acknowledged_at == result.remediated_at == SENT


def test_time_never_moves_back_behind_the_previous_feedback():
    current = status_of("acknowledged", "2026-01-01T03:00:00+00:00")
    result = apply_feedback(feedback("remediated", "2026-01-01T02:00:00+00:00"), FACTS, current, NOW)
    assert result.updated_at == result.remediated_at == "2026-01-01T03:00:00+00:00"


# --- status record round trip ---------------------------------------------------------------

def test_status_round_trips_through_json_and_tolerates_unknown_fields():
    status = AlertStatus(ALERT_ID, "alpha", KEY, "remediated", "2026-01-01T05:00:00+00:00",
                         "2026-01-01T01:00:00+00:00", "2026-01-01T05:00:00+00:00", "patched")
    value = json.loads(json.dumps(status.to_json()))
    assert AlertStatus.from_json(value) == status
    assert AlertStatus.from_json({**value, "added_later": [1, 2]}) == status
    minimal = AlertStatus(ALERT_ID, "alpha", KEY, "acknowledged", SENT)
    assert AlertStatus.from_json(json.loads(json.dumps(minimal.to_json()))) == minimal


def test_status_carries_time_for_the_match_stage_recurrence_check():
    # threatroute.streams.stages.match.remediation_fold reads value["time"] of remediated statuses
    status = status_of("remediated", "2026-01-01T05:00:00+00:00")
    assert status.to_json()["time"] == status.remediated_at


@pytest.mark.parametrize("value", [
    None, [], {"alert_id": ALERT_ID},
    {**status_of("acknowledged").to_json(), "status": "fixed"},
    {**status_of("acknowledged").to_json(), "note": 3},
])
def test_status_from_json_refuses_unusable_values(value):
    with pytest.raises(InvalidRecord):
        AlertStatus.from_json(value)


# --- summarise -------------------------------------------------------------------------------

def at(day, hour=0, minute=0):
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).isoformat()


def alert(alert_id, recipient, key, classification, feed, rule, sent, last):
    return AlertFacts(alert_id, recipient, key, classification, feed, rule, sent, last)


def state(alert_id, recipient, key, status, acknowledged, updated, remediated=None):
    return AlertStatus(alert_id, recipient, key, status, updated, acknowledged, remediated)


PREFIX, ASN, DOMAIN = "prefix 192.0.2.0/24", "asn 64500", "domain beta.example"
# scenario: now = Jan 31 00:00, windows of 7 days. now window: [Jan 24, Jan 31].
# alpha's baseline (from its first alert): [Jan 1, Jan 8]; beta's: [Jan 10, Jan 17].
ALERTS = [
    # a1 k1: baseline only (last seen Jan 2); acknowledged after 600 s, remediated after 7200 s
    alert("a1", "alpha", "k1", "phishing", "urlhaus", PREFIX, at(1), at(2)),
    # a2 k2: no feedback, seen in both windows
    alert("a2", "alpha", "k2", "phishing", "urlhaus", PREFIX, at(2), at(30)),
    # a3 k3: not_ours after 21600 s, on Jan 3: in baseline (closed after it began), not now
    alert("a3", "alpha", "k3", "c2-server", "feodo", ASN, at(3), at(28)),
    # a4 k4: acknowledged after exactly 300 s, false_positive on Jan 25: inside the now window
    alert("a4", "alpha", "k4", "c2-server", "feodo", ASN, at(5), at(26)),
    # a5 k1 again (a recurrence: new alert id): in_progress, acknowledged after exactly 1 day
    alert("a5", "alpha", "k1", "phishing", "urlhaus", PREFIX, at(25), at(29)),
    # a6 k5: no feedback, no feed name, last seen Jan 22: in neither window
    alert("a6", "alpha", "k5", "infected-system", None, "subscription", at(20), at(22)),
    # b1 k1 (alpha owns it, beta subscribes): not_ours after 3600 s: baseline only
    alert("b1", "beta", "k1", "phishing", "urlhaus", "subscription", at(10), at(30)),
    # b2 k6: false_positive after 43200 s: baseline only
    alert("b2", "beta", "k6", "scanner", "shadowserver", DOMAIN, at(12), at(30)),
    # b3 k7: wont_fix after 3600 s: now only
    alert("b3", "beta", "k7", "scanner", "shadowserver", DOMAIN, at(24, 12), at(30)),
    # b4 k7: an older alert for the same indicator, open: baseline only
    alert("b4", "beta", "k7", "scanner", "shadowserver", DOMAIN, at(11), at(11)),
]
STATES = {s.alert_id: s for s in [
    state("a1", "alpha", "k1", "remediated", at(1, 0, 10), at(1, 2), remediated=at(1, 2)),
    state("a3", "alpha", "k3", "not_ours", at(3, 6), at(3, 6)),
    state("a4", "alpha", "k4", "false_positive", at(5, 0, 5), at(25)),
    state("a5", "alpha", "k1", "in_progress", at(26), at(27)),
    state("b1", "beta", "k1", "not_ours", at(10, 1), at(10, 1)),
    state("b2", "beta", "k6", "false_positive", at(12, 12), at(12, 12)),
    state("b3", "beta", "k7", "wont_fix", at(24, 13), at(24, 13)),
    state("zz", "gamma", "k9", "remediated", at(1), at(1), at(1)),  # not in the ledger: ignored
]}
SCENARIO_NOW = datetime(2026, 1, 31, tzinfo=UTC)


def test_summarise_counts():
    snap = summarise(ALERTS, STATES, SCENARIO_NOW)
    assert snap.sent == {("alpha", "phishing"): 3, ("alpha", "c2-server"): 2,
                         ("alpha", "infected-system"): 1, ("beta", "phishing"): 1,
                         ("beta", "scanner"): 3}
    assert snap.open == {("alpha", "phishing"): 1, ("alpha", "c2-server"): 0,
                         ("alpha", "infected-system"): 1, ("beta", "phishing"): 0,
                         ("beta", "scanner"): 1}
    assert snap.by_status == {
        ("alpha", "phishing", "remediated"): 1, ("alpha", "phishing", "in_progress"): 1,
        ("alpha", "c2-server", "not_ours"): 1, ("alpha", "c2-server", "false_positive"): 1,
        ("beta", "phishing", "not_ours"): 1, ("beta", "scanner", "false_positive"): 1,
        ("beta", "scanner", "wont_fix"): 1}
    assert snap.remediation_ratio == {"alpha": 1 / 6, "beta": 0.0}
    assert snap.not_ours == {("alpha", ASN): 1, ("beta", "subscription"): 1}


def test_summarise_feeds():
    snap = summarise(ALERTS, STATES, SCENARIO_NOW)
    assert snap.feed_alerts == {"urlhaus": 4, "feodo": 2, "shadowserver": 3, "unknown": 1}
    # urlhaus: 3 with feedback, none false; feodo 1 of 2; shadowserver 1 of 2 (b4 is open);
    # unknown: no feedback yet, so 0.0
    assert snap.feed_false_positive_ratio == {"urlhaus": 0.0, "feodo": 0.5, "shadowserver": 0.5,
                                              "unknown": 0.0}


def test_summarise_durations_land_in_their_buckets():
    snap = summarise(ALERTS, STATES, SCENARIO_NOW)
    assert DURATION_BUCKETS == (300, 900, 3600, 14400, 43200, 86400, 172800, 604800, 2592000)
    # alpha acknowledged after 600 (a1), 21600 (a3), 300 (a4, on the bound), 86400 (a5, on it)
    assert snap.time_to_acknowledge["alpha"] == Histogram(
        DURATION_BUCKETS, (1, 2, 2, 2, 3, 4, 4, 4, 4), 4, 108900.0)
    # beta: 3600 (b1, on the bound), 43200 (b2, on it), 3600 (b3)
    assert snap.time_to_acknowledge["beta"] == Histogram(
        DURATION_BUCKETS, (0, 0, 2, 2, 3, 3, 3, 3, 3), 3, 50400.0)
    assert snap.time_to_remediate == {"alpha": Histogram(
        DURATION_BUCKETS, (0, 0, 0, 1, 1, 1, 1, 1, 1), 1, 7200.0)}  # beta remediated nothing


def test_summarise_active_indicators_against_each_recipients_first_week():
    snap = summarise(ALERTS, STATES, SCENARIO_NOW)
    # alpha baseline [Jan 1, Jan 8]: k1 (a1), k2, k3, k4; now [Jan 24, Jan 31]: k2, k4, k1 (a5)
    # beta baseline [Jan 10, Jan 17]: k1, k6, k7 (b4); now: k7 (b3)
    assert snap.active_baseline == {"alpha": 4, "beta": 3}
    assert snap.active_now == {"alpha": 3, "beta": 1}
    assert snap.reduction_ratio == {"alpha": 0.25, "beta": pytest.approx(2 / 3)}


def test_summarise_active_indicators_against_a_fixed_baseline():
    window = BaselineWindow(active_days=7, baseline_start=datetime(2026, 1, 4, tzinfo=UTC))
    snap = summarise(ALERTS, STATES, SCENARIO_NOW, window)
    # [Jan 4, Jan 11]. alpha: a1 last seen Jan 2, a3 closed Jan 3 (before the window), a5/a6
    # later: k2, k4. beta: b1 (closed Jan 10, inside), b4 (sent Jan 11: the bound is inclusive)
    assert snap.active_baseline == {"alpha": 2, "beta": 2}
    assert snap.active_now == {"alpha": 3, "beta": 1}
    assert snap.reduction_ratio == {"alpha": -0.5, "beta": 0.5}


def test_summarise_omits_the_ratio_without_a_baseline():
    window = BaselineWindow(baseline_start=datetime(2025, 6, 1, tzinfo=UTC))
    snap = summarise(ALERTS, STATES, SCENARIO_NOW, window)
    assert snap.active_baseline == {"alpha": 0, "beta": 0}
    assert snap.reduction_ratio == {}


def test_summarise_takes_an_iterator_in_any_order():
    assert summarise(iter(ALERTS[::-1]), STATES, SCENARIO_NOW) == \
        summarise(ALERTS, STATES, SCENARIO_NOW)


def test_summarise_of_nothing():
    snap = summarise([], {}, SCENARIO_NOW)
    assert snap.sent == snap.active_now == snap.reduction_ratio == snap.feed_alerts == {}


def test_feedback_applied_in_sequence_feeds_summarise():
    facts = AlertFacts(ALERT_ID, "alpha", KEY, "phishing", "urlhaus", PREFIX, SENT, SENT)
    now = datetime(2026, 1, 3, tzinfo=UTC)
    current: AlertStatus | None = None
    for status, time in [("acknowledged", "2026-01-01T00:04:00+00:00"),
                         ("wont_fix", "2026-01-01T01:00:00+00:00"),
                         ("remediated", "2026-01-02T00:00:00+00:00")]:
        current = apply_feedback(feedback(status, time), facts, current, now)
    assert current is not None
    snap = summarise([facts], {ALERT_ID: current}, now)
    assert snap.time_to_acknowledge["alpha"].counts[0] == 1  # 240 s <= 300
    assert snap.time_to_remediate["alpha"].sum == 86400.0
    assert snap.remediation_ratio == {"alpha": 1.0}
    assert snap.active_now == {"alpha": 1}  # remediated inside the window still counts


# --- who sent a report: the topic it arrived on (issue 9) ----------------------------------

def test_a_report_on_the_owners_topic_is_accepted_and_attributed_to_it():
    status = judge_report("alpha", feedback(), FACTS, None, NOW)
    assert (status.alert_id, status.recipient, status.status) == (ALERT_ID, "alpha",
                                                                  "acknowledged")


def test_the_record_need_not_say_who_it_is():
    record = feedback()
    del record["recipient"]
    assert judge_report("alpha", record, FACTS, None, NOW).recipient == "alpha"


def test_a_report_naming_another_recipient_is_refused():
    with pytest.raises(InvalidRecord) as refused:
        judge_report("beta", feedback(), FACTS, None, NOW)  # names alpha, came from beta
    assert refused.value.field == "recipient"


def test_an_alert_id_sent_to_someone_else_is_no_capability():
    record = feedback()
    record["recipient"] = "beta"  # beta learned alpha's alert id and claims it honestly
    with pytest.raises(InvalidRecord) as refused:
        judge_report("beta", record, FACTS, None, NOW)
    assert refused.value.field == "recipient"
    assert "alpha" not in refused.value.reason, "never says whom the alert went to"


def test_an_unknown_alert_is_refused():
    with pytest.raises(InvalidRecord):
        judge_report("alpha", feedback(), None, None, NOW)
