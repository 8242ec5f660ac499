"""The seed's four sinks in examples/bank.py, called as plain functions with hand-built inputs."""
from datetime import datetime, timedelta, timezone

import pytest

import sinks
from examples import bank
from examples.bank import Transfer, User, UserRecord, UserTxnAggregate
from sinks import DataFrame

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def clear_notifications():
    bank.notifications.clear()


def test_all_four_sinks_load():
    registry = sinks.load("examples/bank.py")
    assert sorted(registry.sinks) == [
        "aggregate_user_transactions", "batch_user_updates", "send_user_update", "user_data_export"]
    assert sorted(registry.feature_classes) == ["account", "transfer", "user"]


def test_per_row_custom_sink():
    bank.send_user_update("u1", "Gold", "Ann Lee")
    assert list(bank.notifications) == [("u1", "Gold", "Ann Lee")]


def test_batch_sink_receives_a_dataframe():
    spec = bank.batch_user_updates.spec
    assert (spec.buffer_size, spec.debounce, spec.max_delay) == (
        100, timedelta(milliseconds=100), timedelta(seconds=1))
    users = DataFrame([{User.uuid: f"u{i}", User.account.title: "Gold"} for i in range(3)])
    bank.batch_user_updates(users)
    assert list(bank.notifications) == [("batch", 3)]


def test_export_returns_a_mapped_row():
    row = bank.user_data_export("u1", "Ann Lee", "Gold")
    assert isinstance(row, UserRecord)
    assert (row.uuid, row.full_name, row.title) == ("u1", "Ann Lee", "Gold")
    assert bank.user_data_export.spec.output_model is UserRecord
    assert not bank.user_data_export.spec.upsert


def test_upsert_aggregates_successful_transfers_in_60_days():
    spec = bank.aggregate_user_transactions.spec
    assert spec.upsert and spec.output_model is UserTxnAggregate
    rows = [
        (10.0, "successful", 1), (20.0, "successful", 59), (99.0, "failed", 3),
        (500.0, "successful", 61), (7.5, "successful", 0),
    ]
    history = DataFrame(
        [{Transfer.id: f"t{i}", Transfer.user_id: "u1", Transfer.status: status,
          Transfer.amount: amount, Transfer.created_at: NOW - timedelta(days=days)}
         for i, (amount, status, days) in enumerate(rows)],
        time_column=Transfer.created_at, now=NOW)
    # The assembler hands the sink the has-many input with its filters applied; do that by hand.
    txns = history[bank.aggregate_user_transactions.spec.inputs[1].ref.filters]
    result = bank.aggregate_user_transactions("u1", txns)
    assert (result.user_id, result.count, result.total) == ("u1", 3, 37.5)


def test_upsert_with_no_transfers():
    empty = DataFrame([], columns=[Transfer.id, Transfer.amount, Transfer.created_at])
    result = bank.aggregate_user_transactions("u2", empty)
    assert (result.count, result.total) == (0, 0)
