"""Order-safe upserts: with a version column, the stored row is the one with the highest version,
whatever order rows arrive in, on PostgreSQL, MariaDB and SQLite, in one batch or many, and a
later write of older rows (a backfill, a replay) never makes a row regress."""
import datetime
import random

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.sql_models import UTC, Balance, Total
from tests.test_sql_write import reset, select
from transforms.sql import SQLWriter, TableSpec, WriteToSQL

T0 = datetime.datetime(2026, 3, 1, tzinfo=UTC)
KEYS, VERSIONS = 9, 6


def firings():
    """Every version of every key; one key also has a row without a version, older than all."""
    rows = [{"user_id": f"u{k}", "amount": 100 * v + k, "note": f"v{v}", "updated_at": T0 + datetime.timedelta(hours=v)}
            for v in range(VERSIONS) for k in range(KEYS)]
    rows.append({"user_id": "u0", "amount": -1, "note": "no version", "updated_at": None})
    return rows


NEWEST = [(f"u{k}", 100 * (VERSIONS - 1) + k, f"v{VERSIONS - 1}") for k in range(KEYS)]


def stored(database):
    return [(r["user_id"], r["amount"], r["note"]) for r in select(database, Balance, "user_id")]


def write_in_batches(database, rows, size, version=None):
    writer = SQLWriter(database, TableSpec(Balance, version=version), upsert=True)
    writer.open()
    try:
        for start in range(0, len(rows), size):
            result = writer.write(rows[start:start + size])
            assert result.failed == []
    finally:
        writer.close()


@pytest.mark.parametrize("size", [7, 1000], ids=["many batches", "one batch"])
def test_the_highest_version_stays_in_any_order_of_arrival(database, size):
    ordered = firings()
    shuffled = list(ordered)
    random.Random(20).shuffle(shuffled)
    for order in (ordered, list(reversed(ordered)), shuffled):
        reset(database, Balance)
        write_in_batches(database, order, size)
        assert stored(database) == NEWEST


def test_a_replay_of_older_rows_never_regresses_and_an_equal_version_rewrites(database):
    reset(database, Balance)
    rows = firings()
    write_in_batches(database, rows[-KEYS - 1:], 1000)  # the newest version of every key first
    write_in_batches(database, rows, 5)  # then the whole history again
    assert stored(database) == NEWEST
    fixed = [dict(row, note="fixed") for row in rows[-KEYS - 1:-1]]
    write_in_batches(database, fixed, 1000)  # a rerun of the same versions replaces them
    assert {note for _, _, note in stored(database)} == {"fixed"}


def test_a_row_without_a_version_is_replaced_by_any_versioned_row(database):
    reset(database, Balance)
    write_in_batches(database, [{"user_id": "u1", "amount": 1, "updated_at": None}], 10)
    write_in_batches(database, [{"user_id": "u1", "amount": 2, "updated_at": T0}], 10)
    write_in_batches(database, [{"user_id": "u1", "amount": 3, "updated_at": None}], 10)
    assert [amount for _, amount, _ in stored(database)] == [2]


def test_the_version_column_is_flagged_in_the_model_or_named():
    assert TableSpec(Balance).version == "updated_at"
    assert TableSpec(Total).version is None
    assert TableSpec(Total, version="count").version == "count"
    with pytest.raises(ValueError, match="has no column 'nope' to take as the version"):
        TableSpec(Total, version="nope")
    with pytest.raises(ValueError, match="is part of the conflict key"):
        TableSpec(Total, version="user_id")


def test_write_to_sql_with_version_keeps_the_newest_on_a_runner_that_reorders(database):
    reset(database, Total)
    rows = [{"user_id": f"u{i % 4}", "count": i} for i in range(200)]
    random.Random(3).shuffle(rows)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    (pipeline
     | beam.Create(rows)
     | WriteToSQL(database, Total, upsert=True, batch_size=16, num_shards=3, version="count", name="totals"))
    pipeline.run().wait_until_finish()
    assert [(r["user_id"], r["count"]) for r in select(database, Total, "user_id")] == [
        (f"u{k}", 196 + k) for k in range(4)]
