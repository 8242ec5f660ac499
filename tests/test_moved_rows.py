"""Related rows that move: a row belongs to the parent its latest join key names.

The reference model (tests/test_semantics_model.py) moves transfers between users on
generated streams; these are the other joins a row can move through.
"""
from datetime import datetime, timedelta, timezone
from typing import Optional

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from sinks import FeatureTime, features, has_one, sink
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
