"""``@sink``: Chalk's surface, the parsed spec, and every definition error."""
import asyncio
import inspect
import pickle
from datetime import timedelta
from typing import List, Optional

import pytest
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sinks import (
    DataFrame, DefinitionError, FeatureTime, PostgreSQLSource, Primary, SQLiteSource, after, features,
    sink,
)
from sinks.sink import Sink

LINE = r"test_sink\.py:\d+: "


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "rows"
    uuid: Mapped[str] = mapped_column(String(10), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class NotMapped:
    pass


def test_signature_matches_chalk():
    params = inspect.signature(sink).parameters
    assert list(params) == ["fn", "environment", "tags", "machine_type", "buffer_size", "debounce",
                            "max_delay", "upsert", "integration", "owner", "name"]
    assert params["fn"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in params.items() if n != "fn")


def test_bare_and_called_forms(bank):
    User, Account, Transfer = bank

    @sink
    def bare(uid: User.uuid, title: User.account.title, name: User.full_name):
        return (uid, title, name)

    @sink(owner="ops@example.com", tags=["team:risk"], environment="prod", machine_type="small")
    def called(uid: User.uuid, email: Optional[User.email]):
        return uid

    assert isinstance(bare, Sink) and isinstance(called, Sink)
    assert bare("u1", "Gold", "Ann") == ("u1", "Gold", "Ann")
    assert bare.__name__ == "bare" and bare.spec.name == "bare"
    spec = bare.spec
    assert [i.parameter for i in spec.inputs] == ["uid", "title", "name"]
    assert [i.ref.fqn for i in spec.inputs] == ["user.uuid", "user.account.title", "user.full_name"]
    assert spec.root is User and not spec.is_batch and not spec.upsert and spec.integration is None
    assert called.spec.owner == "ops@example.com" and called.spec.tags == ("team:risk",)
    assert called.spec.environment == ("prod",) and called.spec.machine_type == "small"
    assert called.spec.inputs[1].optional and not called.spec.inputs[0].optional


def test_optional_spelled_with_pipe(bank):
    User, _, _ = bank

    @sink
    def s(uid: User.uuid, email: User.email | None):
        pass

    assert s.spec.inputs[1].optional


def test_batch_sink_and_pacing_options(bank):
    User, _, _ = bank

    @sink(buffer_size=100, debounce="100ms", max_delay="1s")
    def batch(users: DataFrame[User.uuid, User.account.title]):
        return users.count()

    spec = batch.spec
    assert spec.is_batch
    assert [i.ref.fqn for i in spec.inputs] == ["user.uuid", "user.account.title"]
    assert spec.buffer_size == 100
    assert spec.debounce == timedelta(milliseconds=100) and spec.max_delay == timedelta(seconds=1)
    frame = DataFrame([{User.uuid: "u1", User.account.title: "Gold"}])
    assert batch(frame) == 1


def test_batch_of_a_whole_class(bank):
    User, _, Transfer = bank

    @sink
    def all_transfers(rows: DataFrame[Transfer]):
        pass

    assert [i.ref.fqn for i in all_transfers.spec.inputs] == [
        "transfer.id", "transfer.user_id", "transfer.status", "transfer.amount", "transfer.created_at"]
    assert all_transfers.spec.root is Transfer


def test_durations_accept_timedelta_and_seconds(bank):
    User, _, _ = bank

    @sink(debounce=timedelta(seconds=2), max_delay=5)
    def s(uid: User.uuid):
        pass

    assert s.spec.debounce == timedelta(seconds=2) and s.spec.max_delay == timedelta(seconds=5)


def test_has_many_input_with_filters(bank):
    User, _, Transfer = bank

    @sink(integration=PostgreSQLSource(), upsert=True)
    def agg(uid: User.uuid,
            txns: User.transfers[Transfer.status == "successful", after(days_ago=60)]) -> Row:
        return Row(uuid=uid, n=txns.count())

    txns = agg.spec.inputs[1]
    assert txns.is_has_many and len(txns.ref.filters) == 2
    assert agg.spec.upsert and agg.spec.output_model is Row


@pytest.mark.parametrize("returns", ["Row", "Optional[Row]", "List[Row]", "list[Row]"])
def test_integration_return_annotations(bank, returns):
    User, _, _ = bank
    namespace = {"sink": sink, "User": User, "Row": Row, "Optional": Optional, "List": List,
                 "SQLiteSource": SQLiteSource}
    exec(f"@sink(integration=SQLiteSource())\ndef s(uid: User.uuid) -> {returns}:\n    pass",
         namespace)
    assert namespace["s"].spec.output_model is Row


def test_async_function_is_recognised(bank):
    User, _, _ = bank

    @sink
    async def notify(uid: User.uuid):
        return uid

    assert notify.spec.is_async
    assert asyncio.run(notify("u1")) == "u1"


def test_future_annotations_are_evaluated(bank, tmp_path):
    import sinks
    path = tmp_path / "future_defs.py"
    path.write_text(
        "from __future__ import annotations\n"
        "from sinks import features, sink, Primary, DataFrame, after, FeatureTime\n"
        "@features\nclass User:\n    uuid: Primary[str]\n    ts: FeatureTime\n"
        "    transfers: DataFrame[Transfer]\n"
        "@features\nclass Transfer:\n    id: str\n    user_id: User.uuid\n    status: str\n"
        "    created_at: FeatureTime\n"
        "@sink\ndef s(uid: User.uuid, t: User.transfers[Transfer.status == 'ok', after(days_ago=1)]):\n"
        "    pass\n")
    registry = sinks.load(path)
    assert registry.sink("s").spec.inputs[1].ref.fqn == "user.transfers"


# --- every definition error names the file, line, sink and parameter -----------------------------

def _expect(message, parameter):
    pattern = LINE + r"sink '[\w.<>]+'" + (rf", parameter '{parameter}'" if parameter else "") + ".*" + message
    return pytest.raises(DefinitionError, match=pattern)


def test_missing_annotation(bank):
    User, _, _ = bank
    with _expect("has no annotation", "x"):
        @sink
        def s(uid: User.uuid, x):
            pass


def test_non_feature_annotation(bank):
    with _expect("is not a feature", "x"):
        @sink
        def s(x: str):
            pass


def test_no_parameters():
    with _expect("at least one parameter", None):
        @sink
        def s():
            pass


def test_varargs(bank):
    User, _, _ = bank
    with _expect(r"\*args", "rest"):
        @sink
        def s(uid: User.uuid, *rest: User.full_name):
            pass


def test_dataframe_mixed_with_other_parameters(bank):
    User, _, _ = bank
    with _expect("exactly one parameter", "uid"):
        @sink
        def s(users: DataFrame[User.uuid], uid: User.uuid):
            pass


def test_two_roots(bank):
    User, Account, _ = bank
    with _expect(r"'uid' reads User and 'title' reads Account", "title"):
        @sink
        def s(uid: User.uuid, title: Account.title):
            pass


def test_has_one_relation_itself_is_not_an_input(bank):
    User, _, _ = bank
    with _expect("has-one relation to Account", "acct"):
        @sink
        def s(acct: User.account):
            pass


def test_has_many_as_dataframe_column(bank):
    User, _, _ = bank
    with _expect("has-many relation", "users"):
        @sink
        def s(users: DataFrame[User.uuid, User.transfers]):
            pass


@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True])
def test_buffer_size_must_be_positive_int(bank, value):
    User, _, _ = bank
    with _expect("must be a positive int", "buffer_size"):
        @sink(buffer_size=value)
        def s(uid: User.uuid):
            pass


@pytest.mark.parametrize("option", ["debounce", "max_delay"])
@pytest.mark.parametrize("value", ["1.5h", "10", "1y", -1, "0ms"])
def test_bad_durations(bank, option, value):
    User, _, _ = bank
    with _expect(option, option):
        @sink(**{option: value})
        def s(uid: User.uuid):
            pass


def test_upsert_without_integration(bank):
    User, _, _ = bank
    with _expect("needs integration=", "upsert"):
        @sink(upsert=True)
        def s(uid: User.uuid):
            pass


def test_integration_that_is_not_sql(bank):
    User, _, _ = bank
    with _expect("is not a SQL source", "integration"):
        @sink(integration="postgres://x")
        def s(uid: User.uuid):
            pass


@pytest.mark.parametrize("returns", [None, NotMapped, int, List[NotMapped]])
def test_integration_must_return_a_mapped_class(bank, returns):
    User, _, _ = bank

    def s(uid: User.uuid):
        pass

    if returns is not None:
        s.__annotations__["return"] = returns
    with _expect("mapped class", "return"):
        sink(integration=SQLiteSource())(s)


def test_duplicate_sink_names_are_refused(bank):
    User, _, _ = bank

    @sink
    def same(uid: User.uuid):
        pass

    with pytest.raises(DefinitionError, match=r"sink 'same' is defined twice: first at .*test_sink\.py:\d+"):
        @sink(name="same")
        def other(uid: User.uuid):
            pass


def test_bad_string_annotation_names_parameter(bank):
    def s(uid: "User.nope"):
        pass

    s.__globals__["User"] = bank[0]
    try:
        with _expect("User has no feature 'nope'", "uid"):
            sink(s)
    finally:
        del s.__globals__["User"]


def test_sinks_pickle_and_still_call():
    from examples import bank
    restored = pickle.loads(pickle.dumps(bank.send_user_update))
    assert restored.spec.inputs[1].ref.leaf is bank.Account.title
    bank.notifications.clear()
    restored("u1", "Gold", "Ann")
    assert list(bank.notifications) == [("u1", "Gold", "Ann")]
