"""A class related to itself (an org chart): ``Employee.manager: Employee`` and
``reports: DataFrame[Employee]``, joined through ``Employee.manager_id``.

An employee's update is its own and, through ``manager_id``, a row of its manager's
reports: it need not repeat ``manager_id``, a null one places it under nobody, and a new
one moves it. Each key's last call must equal what a plain reading of the final state says,
in any arrival order.
"""
import random
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks import DataFrame, FeatureTime, features, sink
from sinks.registry import Registry
from transforms.assemble import Assemble

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
EMPLOYEES = ["e1", "e2", "e3", "e4"]


def declare():
    @features
    class Employee:
        id: str
        name: str
        title: Optional[str]
        manager_id: "Optional[Employee.id]"
        ts: FeatureTime
        manager: "Employee"
        reports: "DataFrame[Employee]"

    @sink
    def boss(eid: Employee.id, name: Employee.manager.name):
        pass

    @sink
    def team(eid: Employee.id, reports: Employee.reports):
        pass

    return Employee, [boss, team]


def test_has_one_follows_the_owners_key_and_has_many_the_childrens():
    with Registry().activate():
        employee, _ = declare()
    manager, reports = employee.manager.leaf.join.pairs, employee.reports.leaf.join.pairs
    assert [(p.name, c.name) for p, c in manager] == [("manager_id", "id")]
    assert [(p.name, c.name) for p, c in reports] == [("id", "manager_id")]


_CALLS: list = []


def _collect(element, name):
    _CALLS.append((name, element))


def last_calls(sinks, updates) -> Dict[str, Dict[str, Any]]:
    _CALLS.clear()
    pipeline = beam.Pipeline(runner=FnApiRunner())
    outputs = pipeline | beam.Create(updates, reshuffle=False) | Assemble(sinks)
    for sink_fn in sinks:
        outputs[sink_fn.spec.name] | f"Collect[{sink_fn.spec.name}]" >> beam.Map(_collect, sink_fn.spec.name)
    assert outputs["dead_letters"] is not None
    pipeline.run().wait_until_finish()
    found: Dict[str, Dict[str, Any]] = {"boss": {}, "team": {}}
    by_name = {sink_fn.spec.name: sink_fn for sink_fn in sinks}
    for name, (key, update) in _CALLS:
        short = by_name[name].__name__
        if short == "boss":
            found["boss"][key] = update["name"]
        else:
            ref = by_name[name].spec.inputs[1].ref
            found["team"][key] = sorted((row["employee.id"], row["employee.title"])
                                        for row in update["reports"].frame(ref))
    return found


def model(updates: List[dict]) -> Dict[str, Dict[str, Any]]:
    """The final state read plainly: each attribute's value at its latest time."""
    held: Dict[str, Dict[str, tuple]] = {}
    for update in updates:
        time = update["employee.ts"]
        row = held.setdefault(update["employee.id"], {})
        for name, value in update.items():
            attr = name.split(".", 1)[1]
            if attr not in row or row[attr][1] <= time:
                row[attr] = (value, time)
    state = {eid: {attr: value for attr, (value, _) in row.items()} for eid, row in held.items()}
    boss = {eid: state[row["manager_id"]]["name"] for eid, row in state.items()
            if row.get("manager_id") in state and state[row["manager_id"]].get("name") is not None}
    team: Dict[str, list] = {}
    for row in state.values():
        if row.get("manager_id") is not None:
            team.setdefault(row["manager_id"], []).append((row["id"], row.get("title")))
    return {"boss": boss, "team": {eid: sorted(reports) for eid, reports in team.items()}}


ORG_CHART = [
    {"employee.id": "e1", "employee.name": "Ann", "employee.title": "CEO", "employee.manager_id": None,
     "employee.ts": "2026-03-01T00:00:00+00:00"},
    {"employee.id": "e2", "employee.name": "Bo", "employee.title": "CTO", "employee.manager_id": "e1",
     "employee.ts": "2026-03-01T00:00:00+00:00"},
    {"employee.id": "e3", "employee.name": "Cy", "employee.title": "Dev", "employee.manager_id": "e2",
     "employee.ts": "2026-03-01T00:00:00+00:00"},
    # A title change that does not repeat manager_id reaches the manager's reports.
    {"employee.id": "e2", "employee.title": "VP", "employee.ts": "2026-03-02T00:00:00+00:00"},
    # A rename reaches the reports' view of their manager.
    {"employee.id": "e2", "employee.name": "Bob", "employee.ts": "2026-03-03T00:00:00+00:00"},
]


@pytest.mark.parametrize("order", ["forward", "reversed"])
def test_org_chart_top_of_tree_partial_updates_and_renames(order):
    with Registry().activate():
        _, sinks = declare()
    updates = ORG_CHART if order == "forward" else ORG_CHART[::-1]
    found = last_calls(sinks, updates)
    assert found["boss"] == {"e2": "Ann", "e3": "Bob"}
    assert found["team"]["e1"] == [("e2", "VP")]
    assert found["team"]["e2"] == [("e3", "Dev")]


def test_a_report_moved_to_another_manager_leaves_the_old_one():
    with Registry().activate():
        _, sinks = declare()
    found = last_calls(sinks, ORG_CHART + [
        {"employee.id": "e3", "employee.manager_id": "e1", "employee.ts": "2026-03-04T00:00:00+00:00"}])
    assert found["team"]["e2"] == []
    assert found["team"]["e1"] == [("e2", "VP"), ("e3", "Dev")]
    assert found["boss"]["e3"] == "Ann"


@st.composite
def org_streams(draw) -> List[dict]:
    hours = iter(draw(st.permutations(range(200))))      # distinct times: no ties to break
    updates = []
    for _ in range(draw(st.integers(min_value=1, max_value=14))):
        update: Dict[str, Any] = {"employee.id": draw(st.sampled_from(EMPLOYEES)),
                                  "employee.ts": (T0 + timedelta(hours=next(hours))).isoformat()}
        if draw(st.booleans()):
            update["employee.name"] = draw(st.sampled_from(["Ann", "Bo", "Cy"]))
        if draw(st.booleans()):
            update["employee.title"] = draw(st.sampled_from(["CEO", "Dev", None]))
        if draw(st.booleans()):
            update["employee.manager_id"] = draw(st.sampled_from(EMPLOYEES + [None]))
        updates.append(update)
    return updates


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates=org_streams(), seed=st.integers(0, 2 ** 16))
def test_last_calls_equal_the_final_state_in_every_order(updates, seed):
    with Registry().activate():
        _, sinks = declare()
    shuffled = list(updates)
    random.Random(seed).shuffle(shuffled)
    expected = model(updates)
    for order in (updates, shuffled):
        found = last_calls(sinks, order)
        # A sink with a required input that became unknown (a manager removed) is not called
        # again: only employees whose manager is known are compared.
        assert {eid: found["boss"].get(eid) for eid in expected["boss"]} == expected["boss"]
        # Every employee is called with its reports, an empty frame when it has none.
        for eid in set(found["team"]) | set(expected["team"]):
            assert found["team"].get(eid, []) == expected["team"].get(eid, []), eid
