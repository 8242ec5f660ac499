"""Related rows that move: a row belongs to the parent its latest join key names.

The reference model (tests/test_semantics_model.py) moves transfers between users on
generated streams; these are the other joins a row can move through.
"""
import pickle
from datetime import datetime, timedelta, timezone
from typing import Optional

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from sinks import DataFrame, FeatureTime, after, features, has_one, sink
from sinks.registry import Registry
from transforms.assemble import Assemble

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)

_CALLS: list = []


def _collect(element, name):
    _CALLS.append((name, element))


def at(hours: int) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def last_calls(sink_fn, updates) -> dict:
    _CALLS.clear()
    pipeline = beam.Pipeline(runner=FnApiRunner())
    outputs = pipeline | beam.Create(updates, reshuffle=False) | Assemble([sink_fn])
    outputs[sink_fn.spec.name] | beam.Map(_collect, sink_fn.spec.name)
    pipeline.run().wait_until_finish()
    return {key: update for _, (key, update) in _CALLS}


@pytest.mark.parametrize("order", ["forward", "reversed"])
def test_a_row_joined_on_a_feature_other_than_its_key_leaves_its_old_join_value(order):
    with Registry().activate():
        @features
        class Team:
            id: str
            name: str
            floor: int
            ts: FeatureTime

        @features
        class User:
            id: str
            team_name: Optional[str]
            ts: FeatureTime
            team: Team = has_one(lambda: User.team_name == Team.name)

        @sink
        def seat(uid: User.id, floor: Optional[User.team.floor]):
            pass

    updates = [
        {"user.id": "u1", "user.team_name": "red", "user.ts": at(0)},
        {"user.id": "u2", "user.team_name": "blue", "user.ts": at(0)},
        {"team.id": "t1", "team.name": "red", "team.floor": 3, "team.ts": at(1)},
        # Renamed: t1 is the blue team now; u1's team "red" no longer exists.
        {"team.id": "t1", "team.name": "blue", "team.ts": at(2)},
    ]
    found = last_calls(seat, updates if order == "forward" else updates[::-1])
    assert found["u2"]["floor"] == 3
    assert found["u1"]["floor"] is None


def _transfers_plan(windowed: bool):
    """The assemble plan of users and their transfers, read by one sink: within
    ``after(days_ago=10)`` with 2 days of lateness, or all of them."""
    from transforms.assemble.plan import plan_roots

    with Registry().activate():
        @features
        class User:
            id: str
            ts: FeatureTime
            transfers: "DataFrame[Transfer]"

        @features
        class Transfer:
            id: str
            user_id: User.id
            created_at: FeatureTime

        if windowed:
            @sink
            def reads(uid: User.id, txns: User.transfers[after(days_ago=10)]):
                pass
        else:
            @sink
            def reads(uid: User.id, txns: User.transfers):
                pass

    (plan,) = plan_roots([reads.spec], timedelta(days=2) if windowed else timedelta(0))
    return plan


class _State:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value


def test_the_routing_step_prunes_rows_past_the_window_horizon_on_its_bucket_clock():
    from transforms.assemble.messages import ROWS, Rel
    from transforms.assemble.route import RouteRowsFn, routing_key

    plan = _transfers_plan(windowed=True)     # after(days_ago=10), 2 days late at most
    route = RouteRowsFn(plan.root.children.values(), "id")
    route.start_bundle()
    state = _State()
    day = 86_400_000_000

    def send(tid, days):
        values = {"id": tid, "user_id": "u1", "created_at": days * day}
        return list(route.process((routing_key(ROWS, "transfers", "t"), [Rel("transfers", "u1", tid, days * day, values)]),
                                  state))

    def held():
        return sorted(key for _, key in pickle.loads(state.value)[1])

    send("t1", 0)
    send("t2", 5)
    assert held() == ["t1", "t2"]
    send("t3", 13)                # the horizon is 12 days: t1 (day 0) is past it, t2 is not
    assert held() == ["t2", "t3"]
    groups = [group for group in route.finish_bundle()]
    assert [len(wv.value[1]) for wv in groups] == [3]      # every row still reached its user


def test_a_removal_delivered_before_the_version_it_removes_keeps_the_row_out():
    from transforms.assemble.state import merge_row
    rows: dict = {}
    merge_row(rows, "t1", 5, None)                                # left this parent at 5
    merge_row(rows, "t1", 3, {"id": "t1", "amount": 1.0})         # its version of 3, delivered late
    assert rows["t1"][1] is None
    merge_row(rows, "t1", 7, {"id": "t1", "amount": 2.0})         # back at 7
    assert rows["t1"][1] == {"id": "t1", "amount": 2.0}
    merge_row(rows, "t1", None, None)                             # an untimed removal: arrival order
    assert "t1" not in rows


def test_a_parent_receiving_a_removal_before_the_row_fires_without_it():
    from transforms.assemble.messages import Own, Rel
    from transforms.assemble.state import EntityState, entity_state_fn

    plan = _transfers_plan(windowed=False)
    step = entity_state_fn(plan.root, plan.sinks)
    state = EntityState()
    day = 86_400_000_000
    row = {"id": "t1", "user_id": "u1", "created_at": 3 * day}
    fired = []
    for group in ([Own(1 * day, {"id": "u1", "ts": 1 * day})],
                  [Rel("transfers", "u1", "t1", 5 * day, None)],     # the removal, overtaking ...
                  [Rel("transfers", "u1", "t1", 3 * day, row)]):     # ... the version it removes
        fired += step._receive(state, "u1", group)
    assert fired and all(len(output.value.value[1]["txns"].rows) == 0 for output in fired)


def test_an_attribute_a_row_first_gets_from_an_untimed_update_yields_to_any_timed_one():
    # Found by the reference model: a status set untimed, then an older timed status arriving,
    # kept the untimed one (it took the row's newest time), unlike an entity's own features.
    from transforms.assemble.state import merge_row
    rows: dict = {}
    merge_row(rows, "t1", 31, {"id": "t1", "amount": 1.0})
    merge_row(rows, "t1", None, {"id": "t1", "status": None})     # untimed: status has no time
    merge_row(rows, "t1", 30, {"id": "t1", "status": "ok"})       # older than the row, not than status
    assert rows["t1"][1] == {"id": "t1", "amount": 1.0, "status": "ok"}
    merge_row(rows, "t1", None, {"id": "t1", "status": "void"})   # untimed again: keeps status's time (30)
    merge_row(rows, "t1", 29, {"id": "t1", "status": "late"})     # older than that: refused
    assert rows["t1"][1]["status"] == "void"
