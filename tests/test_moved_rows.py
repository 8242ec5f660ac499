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


class _State:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value


def test_the_routing_step_prunes_rows_past_the_window_horizon_on_its_bucket_clock():
    from transforms.assemble.messages import ROWS, Rel
    from transforms.assemble.plan import plan_roots
    from transforms.assemble.route import RouteRowsFn

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

        @sink
        def recent(uid: User.id, txns: User.transfers[after(days_ago=10)]):
            pass

    (plan,) = plan_roots([recent.spec], timedelta(days=2))
    route = RouteRowsFn(plan.root.children.values())
    route.start_bundle()
    state = _State()
    day = 86_400_000_000

    def send(tid, days):
        values = {"id": tid, "user_id": "u1", "created_at": days * day}
        return list(route.process(((ROWS, "7"), [Rel("transfers", "u1", tid, days * day, values)]), state))

    def held():
        return sorted(key for _, key in pickle.loads(state.value)[1])

    send("t1", 0)
    send("t2", 5)
    assert held() == ["t1", "t2"]
    send("t3", 13)                # the horizon is 12 days: t1 (day 0) is past it, t2 is not
    assert held() == ["t2", "t3"]
    groups = [group for group in route.finish_bundle()]
    assert [len(wv.value[1]) for wv in groups] == [3]      # every row still reached its user
