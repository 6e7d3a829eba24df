from datetime import UTC, datetime, timedelta

from threatroute.matchers.dedup import Action, AlertState, DedupPolicy, decide, new_alert_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = DedupPolicy(window=timedelta(days=7), renotify=timedelta(days=1))


def sight(state, at, remediated_at=None):
    return decide(state, "hoster", "k" * 32, at, POLICY, remediated_at)


def test_first_sighting_is_a_new_alert_with_unguessable_id():
    action, state = sight(None, T0)
    other_action, other = sight(None, T0)
    assert action is Action.NEW and other_action is Action.NEW
    assert state.count == 1 and state.first_seen == state.last_seen == T0.isoformat()
    assert len(state.alert_id) >= 22 and state.alert_id != other.alert_id


def test_repeats_inside_window_aggregate_without_notifying():
    _, state = sight(None, T0)
    action, state2 = sight(state, T0 + timedelta(hours=2))
    assert action is Action.REPEAT and not action.notifies
    assert (state2.alert_id, state2.count) == (state.alert_id, 2)
    assert state2.last_seen == (T0 + timedelta(hours=2)).isoformat()
    assert state2.first_seen == state.first_seen and state2.last_notified == state.last_notified


def test_still_active_after_renotify_interval_is_sent_again_as_same_alert():
    _, state = sight(None, T0)
    action, later = sight(state, T0 + timedelta(days=1, minutes=1))
    assert action is Action.RENOTIFY and action.notifies
    assert later.alert_id == state.alert_id and later.count == 2
    assert later.last_notified == (T0 + timedelta(days=1, minutes=1)).isoformat()


def test_not_seen_for_longer_than_window_starts_a_new_alert():
    _, state = sight(None, T0)
    action, fresh = sight(state, T0 + timedelta(days=8))
    assert action is Action.NEW and fresh.alert_id != state.alert_id and fresh.count == 1


def test_reappearing_after_remediation_is_a_flagged_recurrence_and_then_dedups_again():
    _, state = sight(None, T0)
    remediated = (T0 + timedelta(hours=5)).isoformat()
    action, again = sight(state, T0 + timedelta(hours=6), remediated_at=remediated)
    assert action is Action.RECURRENCE and again.recurrence and again.alert_id != state.alert_id
    # the new alert has no remediation of its own: the next sighting is an ordinary repeat
    action, third = sight(again, T0 + timedelta(hours=7))
    assert action is Action.REPEAT and third.count == 2 and third.recurrence


def test_state_round_trips_through_json_and_tolerates_unknown_fields():
    _, state = sight(None, T0)
    assert AlertState.from_json({**state.to_json(), "future": 1}) == state


def test_alert_ids_never_begin_with_a_dash():
    ids = [new_alert_id() for _ in range(5000)]  # ~78 would begin with "-" otherwise
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and all(len(i) == 22 for i in ids)
