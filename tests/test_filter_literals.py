"""A filter literal of the wrong type is refused at decoration, naming file, sink and parameter
(issue 20, defect 3), instead of killing the job where pyarrow compares it."""
import dataclasses
import enum
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import List, Optional

import pytest

import sinks
from sinks import DataFrame, DefinitionError, after, features, sink
from sinks.values import coercer, literal_error

BANK = """\
from __future__ import annotations
from datetime import datetime
from sinks import DataFrame, FeatureTime, after, features, sink

@features
class Transfer:
    id: str
    user_id: User.id
    amount: float
    status: str
    created_at: FeatureTime

@features
class User:
    id: str
    transfers: DataFrame[Transfer]

@sink
def big(uid: User.id, txns: User.transfers[{condition}]):
    return len(txns)
"""


def _load(tmp_path, condition, name):
    path = tmp_path / f"{name}.py"
    path.write_text(BANK.format(condition=condition))
    sys.modules.pop(name, None)
    return sinks.load(path)


@pytest.mark.parametrize("condition, shown", [
    ('Transfer.amount > "10"', "'10' is a str, not float"),
    ('Transfer.status == 3', "3 is an int, not str"),
    ('Transfer.amount.is_in([1.5, "2"])', "'2' is a str, not float"),
    ('(Transfer.status == "ok") | (Transfer.amount >= "x")', "'x' is a str, not float"),
    ('Transfer.created_at > "2024-01-01"', "'2024-01-01' is a str, not datetime"),
    ('Transfer.amount < None', "is None, but the feature is not Optional"),
    ('after(days_ago=1, index=Transfer.amount)', "measures Transfer.amount, which is float; index= must be"),
])
def test_a_literal_of_the_wrong_type_is_refused_at_decoration(tmp_path, condition, shown):
    module = f"literal_defs_bad_{abs(hash(condition))}"   # one module name per case: each loads as itself
    with pytest.raises(DefinitionError) as raised:
        _load(tmp_path, condition, module)
    message = str(raised.value)
    assert f"{module}.py:18:" in message
    assert f"sink '{module}.big', parameter 'txns'" in message
    assert shown in message


@pytest.mark.parametrize("condition", [
    "Transfer.amount > 10", "Transfer.amount > 10.5", 'Transfer.status.is_in(["ok", "sent"])',
    "Transfer.created_at > datetime(2024, 1, 1)", "Transfer.status == None", "after(days_ago=3)",
])
def test_literals_of_the_declared_type_pass(tmp_path, condition):
    registry = _load(tmp_path, condition, "literal_defs_good")
    assert registry.sink("big").spec.inputs[1].ref.filters


def test_a_literal_in_an_eager_annotation_is_checked_too():
    @features
    class Payment:
        id: str
        payer_id: "Payer.id"
        cents: int
        ts: datetime

    @features
    class Payer:
        id: str
        payments: DataFrame[Payment]

    with pytest.raises(DefinitionError, match=r"parameter 'paid'.*1\.5 is a float, not int"):
        @sink
        def paid(pid: Payer.id, paid: Payer.payments[Payment.cents > 1.5, after(days_ago=1)]):
            pass


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Address:
    street: str
    number: int
    since: Optional[date] = None


@pytest.mark.parametrize("kind, value, ok", [
    (int, True, False), (float, 3, True), (Decimal, 1.5, True), (date, datetime.now(timezone.utc), False),
    (Colour, "red", True), (Colour, "blue", False), (List[int], [1, 2], True), (List[int], ["a"], False),
    (Address, {"street": "Main", "number": 3}, True), (Address, {"street": "Main"}, False),
])
def test_literal_error_by_type(kind, value, ok):
    assert (literal_error(kind, value) is None) is ok


def test_struct_list_and_set_coercion():
    assert coercer(int) is None and coercer(str) is None
    assert coercer(List[int])([1, "2", 3.0]) == [1, 2, 3]
    assert coercer(set[str])(["a", "b", "a"]) == {"a", "b"}
    assert coercer(Address)({"street": "Main", "number": "7", "since": "2020-01-02"}) == {
        "street": "Main", "number": 7, "since": date(2020, 1, 2)}
    assert coercer(list[Address])([{"street": "x", "number": 1}]) == [{"street": "x", "number": 1}]
    for kind, bad, reason in [
        (List[int], [1, "x"], "item 1"), (List[int], "12", "expected a list"),
        (Address, {"street": "Main", "number": 1, "zip": "x"}, "no field"),
        (Address, {"number": 1}, "needs field"), (Address, {"street": 5, "number": 1}, "field 'street'"),
        (list[Address], [{"street": "x", "number": None}], "item 0: field 'number'"),
        (set[int], [None], "null"),
    ]:
        with pytest.raises((TypeError, ValueError), match=reason):
            coercer(kind)(bad)


def test_coercers_pickle_with_the_standard_pickler():
    import pickle
    for kind, value, expected in [
        (List[int], ["1", 2], [1, 2]), (set[Colour], ["red"], {"red"}),
        (Address, {"street": "x", "number": "2"}, {"street": "x", "number": 2}),
        (tuple[int, str], [1, "a"], [1, "a"]),
    ]:
        assert pickle.loads(pickle.dumps(coercer(kind)))(value) == expected
