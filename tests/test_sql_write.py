"""SQL writes on real PostgreSQL, MariaDB and SQLite: append, upsert, awkward values,
poison rows, schema checks, and ``WriteToSQL`` inside Beam pipelines."""
import datetime
import json
from decimal import Decimal

import apache_beam as beam
import pytest
import sqlalchemy as sa
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sinks.integrations import PostgreSQLSource
from tests.sql_models import UTC, Account, Event, Hostile, PgArrays, Total
from transforms.dead_letters import DEAD_LETTERS
from transforms.sql import SchemaMismatchError, SQLWriter, TableSpec, WriteRetry, WriteToSQL, WRITTEN

HOSTILE = "'); DROP TABLE users; --"


def reset(integration, *models):
    engine = integration.create_engine()
    with engine.begin() as connection:
        for model in models:
            model.__table__.drop(connection, checkfirst=True)
            model.__table__.create(connection)
    engine.dispose()


def select(integration, model, order_by):
    engine = integration.create_engine()
    with engine.connect() as connection:
        rows = connection.execute(sa.select(model.__table__).order_by(model.__table__.c[order_by])).all()
    engine.dispose()
    return [dict(r._mapping) for r in rows]


def write(integration, model, batches, upsert=False):
    writer = SQLWriter(integration, TableSpec(model), upsert=upsert)
    writer.open()
    try:
        return [writer.write(batch) for batch in batches]
    finally:
        writer.close()


def test_append_writes_every_row_and_lets_the_database_fill_the_key(database):
    reset(database, Event)
    rows = [{"user_id": f"u{i}", "name": f"event {i}"} for i in range(10)]
    [result] = write(database, Event, [rows])
    assert (result.written, result.failed) == (10, [])
    stored = select(database, Event, "id")
    assert [(r["user_id"], r["name"], r["source"]) for r in stored] == [
        (f"u{i}", f"event {i}", "stream") for i in range(10)]
    assert len({r["id"] for r in stored}) == 10


def test_append_takes_mapped_instances(database):
    reset(database, Event)
    [result] = write(database, Event, [[Event(user_id="u1", name="a"), Event(user_id="u2", name="b", source="x")]])
    assert result.written == 2
    assert [(r["user_id"], r["source"]) for r in select(database, Event, "id")] == [("u1", "stream"), ("u2", "x")]


def test_upsert_inserts_then_updates_every_non_key_column(database):
    reset(database, Total)
    write(database, Total, [[Total(user_id="u1", count=1, total=Decimal("5.00"), note="first"),
                             Total(user_id="u2", count=2, total=Decimal("7.50"), note="first")]], upsert=True)
    write(database, Total, [[{"user_id": "u1", "count": 3, "total": Decimal("9.25"), "note": None}]], upsert=True)
    assert select(database, Total, "user_id") == [
        {"user_id": "u1", "count": 3, "total": Decimal("9.25"), "note": None},
        {"user_id": "u2", "count": 2, "total": Decimal("7.50"), "note": "first"}]


def test_duplicate_keys_in_one_batch_collapse_to_the_last(database):
    reset(database, Total)
    batch = [{"user_id": f"u{i % 3}", "count": i, "total": Decimal(i)} for i in range(10)]
    [result] = write(database, Total, [batch], upsert=True)
    assert (result.written, result.failed) == (3, [])
    assert [(r["user_id"], r["count"]) for r in select(database, Total, "user_id")] == [
        ("u0", 9), ("u1", 7), ("u2", 8)]


AWKWARD_TEXT = ["", "tab\there", "new\nline", "cr\rreturn", "back\\slash", "\\N", "quote ' and \"",
                "unicode é ✓ 😀 中文", HOSTILE, "{curly,braces}", "comma, separated", " padded "]


def test_awkward_values_round_trip(database):
    reset(database, Event)
    at = datetime.datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    rows = [{"user_id": str(i), "name": text, "amount": Decimal("-12345.6789"), "score": 1.5e-7, "flag": i % 2 == 0,
             "payload": {"text": text, "list": [1, None, "x"], "nested": {"ok": True}},
             "blob": bytes(range(256)) + text.encode(), "at": at, "day": datetime.date(2026, 2, 28)}
            for i, text in enumerate(AWKWARD_TEXT)]
    rows.append({"user_id": "nulls", "name": "all None"})
    [result] = write(database, Event, [rows])
    assert (result.written, result.failed) == (len(rows), [])
    stored = select(database, Event, "id")
    for row, back in zip(rows, stored):
        for column in ("user_id", "name", "amount", "score", "flag", "blob", "day"):
            assert back[column] == row.get(column), column
        payload = back["payload"]
        assert (json.loads(payload) if isinstance(payload, str) else payload) == row.get("payload")
        if row.get("at") is None:
            assert back["at"] is None
        elif back["at"].tzinfo is None:  # MariaDB and SQLite keep no offset: the instant is stored in UTC
            utc = row["at"].astimezone(UTC).replace(tzinfo=None)
            if database.dialect == "mysql":  # a plain DATETIME keeps whole seconds
                utc = utc.replace(microsecond=0)
            assert back["at"] == utc
        else:
            assert back["at"] == row["at"]


def test_postgresql_arrays_jsonb_and_intervals_round_trip(postgres_url):
    database = PostgreSQLSource(url=postgres_url)
    reset(database, PgArrays)
    rows = [{"id": 1, "tags": AWKWARD_TEXT + [None, "NULL"], "grid": [[1, 2], [3, None]],
             "doc": {"s": HOSTILE, "n": [1.5, None]}, "span": datetime.timedelta(days=2, seconds=7, microseconds=9)},
            {"id": 2, "tags": [], "grid": None, "doc": [], "span": datetime.timedelta(seconds=-1)}]
    [result] = write(database, PgArrays, [rows])
    assert (result.written, result.failed) == (2, [])
    assert select(database, PgArrays, "id") == rows


def test_hostile_identifiers_and_values_are_quoted_not_executed(database):
    reset(database, Hostile)
    write(database, Hostile, [[{"select": HOSTILE, "from_": HOSTILE}]], upsert=True)
    write(database, Hostile, [[{"select": HOSTILE, "from_": HOSTILE + "!"}]], upsert=True)
    assert select(database, Hostile, "select") == [{"select": HOSTILE, "from'; --": HOSTILE + "!"}]


def test_a_poison_row_is_dead_lettered_and_the_other_999_written(database):
    reset(database, Event)
    rows = [{"user_id": f"u{i}", "name": f"n{i}"} for i in range(1000)]
    rows[637]["name"] = None  # NOT NULL
    [result] = write(database, Event, [rows])
    assert result.written == 999
    [(row, error)] = result.failed
    assert row["user_id"] == "u637"
    assert "name" in str(error).lower() and "null" in str(error).lower()
    assert len(select(database, Event, "id")) == 999


def test_rows_that_are_not_rows_of_the_table_are_refused_with_the_reason(database):
    reset(database, Total)
    [result] = write(database, Total, [[{"user_id": "u1", "count": 1}, {"user_id": "u2", "colour": "red"}, 42]],
                     upsert=True)
    assert result.written == 1
    assert [str(error) for _, error in result.failed] == [
        "table 'sinks_test_totals' has no column 'colour'", "expected a Total or a dict of its columns, not int"]


def create_totals_table(database, ddl):
    """Replace the totals table with one made by hand, unlike its mapped class."""
    engine = database.create_engine()
    with engine.begin() as connection:
        Total.__table__.drop(connection, checkfirst=True)
        connection.execute(sa.text(ddl))
    engine.dispose()


def test_missing_table_is_refused_before_the_pipeline_runs(database):
    engine = database.create_engine()
    Total.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    with pytest.raises(SchemaMismatchError, match=r"sink 'totals': table 'sinks_test_totals' does not exist"):
        beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(
            database, Total, upsert=True, name="totals", create_tables=False)


def test_create_tables_makes_the_missing_table(database):
    engine = database.create_engine()
    Total.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(database, Total, create_tables=True)
    assert select(database, Total, "user_id") == []


def test_missing_column_and_incompatible_type_are_refused_naming_sink_table_and_column(database):
    create_totals_table(database, "CREATE TABLE sinks_test_totals (user_id VARCHAR(40) PRIMARY KEY, "
                                  "count INTEGER NOT NULL, total NUMERIC(14, 2))")
    with pytest.raises(SchemaMismatchError, match=r"sink 'totals': table 'sinks_test_totals' has no column 'note'"):
        beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(database, Total, name="totals")
    create_totals_table(database, "CREATE TABLE sinks_test_totals (user_id VARCHAR(40) PRIMARY KEY, "
                                  "count DATE NOT NULL, total NUMERIC(14, 2), note VARCHAR(20))")
    with pytest.raises(SchemaMismatchError, match=r"column 'count': the table's type DATE cannot hold"):
        beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(database, Total, name="totals")


def test_upsert_needs_a_unique_key_in_the_table(database):
    create_totals_table(database, "CREATE TABLE sinks_test_totals (user_id VARCHAR(40), count INTEGER NOT NULL, "
                                  "total NUMERIC(14, 2), note VARCHAR(20))")
    with pytest.raises(SchemaMismatchError, match=r"no primary key or unique constraint on \(user_id\)"):
        beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(database, Total, upsert=True)


def counter(result, namespace, name):
    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
    return sum(c.committed for c in found["counters"])


def test_write_to_sql_in_a_pipeline_appends_upserts_and_dead_letters(database):
    reset(database, Event, Total)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    events = [{"user_id": f"u{i % 7}", "name": None if i == 50 else f"n{i}"} for i in range(300)]
    appended = pipeline | "Events" >> beam.Create(events) | "Append" >> WriteToSQL(
        database, Event, batch_size=64, name="events")
    totals = [Total(user_id=f"u{i % 7}", count=i) for i in range(300)]
    upserted = pipeline | "Totals" >> beam.Create(totals, reshuffle=False) | "Upsert" >> WriteToSQL(
        database, Total, upsert=True, batch_size=1000, num_shards=3, name="totals")
    assert_that(appended[WRITTEN] | "SumA" >> beam.CombineGlobally(sum), equal_to([299]), label="appended")
    assert_that(appended[DEAD_LETTERS] | beam.Map(lambda d: (d["stage"], d["sink"], json.loads(d["input"])["user_id"])),
                equal_to([("write", "events", "u1")]), label="dead")
    assert_that(upserted[DEAD_LETTERS], equal_to([]), label="no dead upserts")
    result = pipeline.run()
    result.wait_until_finish()
    assert len(select(database, Event, "id")) == 299
    assert [(r["user_id"], r["count"]) for r in select(database, Total, "user_id")] == [
        (f"u{k}", max(i for i in range(300) if i % 7 == k)) for k in range(7)]
    assert counter(result, "sinks.events", "rows_appended") == 299
    assert counter(result, "sinks.events", "write_dead_letters") == 1
    assert counter(result, "sinks.totals", "rows_upserted") == 7
    assert counter(result, "sinks.totals", "write_batches") >= 1


def test_upsert_on_two_worker_processes_keeps_the_last_value_per_key(postgres_url):
    database = PostgreSQLSource(url=postgres_url)
    reset(database, Total)
    options = PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    (pipeline
     | beam.Create(list(range(20)))
     | beam.FlatMap(lambda chunk: [{"user_id": f"u{i % 50}", "count": i}
                                  for i in range(chunk * 500, (chunk + 1) * 500)])
     | WriteToSQL(database, Total, upsert=True, batch_size=200, num_shards=4, retry=WriteRetry(deadline=30)))
    pipeline.run().wait_until_finish()
    assert [(r["user_id"], r["count"]) for r in select(database, Total, "user_id")] == sorted(
        (f"u{k}", 9950 + k) for k in range(50))


def test_unreachable_database_is_retried_until_the_deadline_then_dead_lettered():
    from tests.servers import free_port
    integration = PostgreSQLSource(url=f"postgresql+psycopg2://root@127.0.0.1:{free_port()}/test")
    writer = SQLWriter(integration, TableSpec(Total), upsert=True,
                       retry=WriteRetry(base_delay=0.01, max_delay=0.05, deadline=0.3))
    writer.open()
    result = writer.write([{"user_id": "u1", "count": 1}, {"user_id": "u2", "count": 2}])
    writer.close()
    assert result.written == 0 and result.retries >= 3
    assert [row["user_id"] for row, _ in result.failed] == ["u1", "u2"]
    assert all("gave up after" in str(error) and "Connection refused" in str(error) for _, error in result.failed)


def account_row(i, shape, name):
    """One of four shapes: both defaulted columns left out, status set, tier set, both set."""
    row = {"id": i, "name": name}
    if shape == 1:
        row["status"] = "closed"
    elif shape == 2:
        row["tier"] = 3
    elif shape == 3:
        row.update(status="frozen", tier=2)
    elif i % 8 == 0:
        row["status"] = None  # None for a server-default column: the database fills it in
    return row


def test_upsert_mixing_column_groups_keeps_server_defaults_and_not_null_columns(database):
    reset(database, Account)
    [first] = write(database, Account, [[account_row(i, i % 4, f"a{i}") for i in range(400)]], upsert=True)
    assert (first.written, first.failed) == (400, [])
    expected = {i: (f"a{i}", {1: "closed", 3: "frozen"}.get(i % 4, "open"), {2: 3, 3: 2}.get(i % 4, 1))
                for i in range(400)}
    stored = {r["id"]: (r["name"], r["status"], r["tier"]) for r in select(database, Account, "id")}
    assert stored == expected
    # Every existing key again in another shape, and new keys: a column a row leaves out keeps its value.
    [second] = write(database, Account, [[account_row(i, (i + 1) % 4, f"b{i}") for i in range(500)]], upsert=True)
    assert (second.written, second.failed) == (500, [])
    for i in range(500):
        name, status, tier = expected.get(i, (None, "open", 1))
        shape = (i + 1) % 4
        expected[i] = (f"b{i}", {1: "closed", 3: "frozen"}.get(shape, status), {2: 3, 3: 2}.get(shape, tier))
    stored = {r["id"]: (r["name"], r["status"], r["tier"]) for r in select(database, Account, "id")}
    assert stored == expected


def test_write_to_sql_takes_a_model_declared_in_the_pipeline_script(database):
    class LocalBase(DeclarativeBase):
        pass

    class Score(LocalBase):
        __tablename__ = "sinks_test_local_scores"
        user_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
        points: Mapped[int] = mapped_column(sa.Integer, nullable=False)
        at = mapped_column(sa.DateTime(timezone=True), default=lambda: datetime.datetime(2026, 1, 1, tzinfo=UTC))

    reset(database, Score)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    rows = pipeline | beam.Create([{"user_id": f"u{i % 5}", "points": i} for i in range(40)])
    upserted = rows | "Upsert" >> WriteToSQL(database, Score, upsert=True, num_shards=2, name="scores")
    assert_that(upserted[DEAD_LETTERS], equal_to([]), label="no dead letters")
    pipeline.run().wait_until_finish()
    stored = select(database, Score, "user_id")
    assert [(r["user_id"], r["points"]) for r in stored] == [(f"u{k}", 35 + k) for k in range(5)]
    assert {r["at"].replace(tzinfo=UTC) for r in stored} == {datetime.datetime(2026, 1, 1, tzinfo=UTC)}


def test_float_columns_are_checked_like_every_other_type(database):
    class LocalBase(DeclarativeBase):
        pass

    class Reading(LocalBase):
        __tablename__ = "sinks_test_readings"
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
        value = mapped_column(sa.Float)
        label = mapped_column(sa.String(20))

    def check(ddl):
        engine = database.create_engine()
        with engine.begin() as connection:
            Reading.__table__.drop(connection, checkfirst=True)
            connection.execute(sa.text(ddl))
        engine.dispose()
        beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(database, Reading, name="readings")

    check("CREATE TABLE sinks_test_readings (id INTEGER PRIMARY KEY, value DOUBLE PRECISION, label VARCHAR(20))")
    with pytest.raises(SchemaMismatchError, match=r"column 'value': the table's type INTEGER cannot hold"):
        check("CREATE TABLE sinks_test_readings (id INTEGER PRIMARY KEY, value INTEGER, label VARCHAR(20))")
    with pytest.raises(SchemaMismatchError, match=r"column 'label': the table's type (DOUBLE|REAL).* cannot hold"):
        check("CREATE TABLE sinks_test_readings (id INTEGER PRIMARY KEY, value REAL, label DOUBLE PRECISION)")


def test_skip_existing_makes_a_rerun_of_appends_add_no_duplicates(database):
    class LocalBase(DeclarativeBase):
        pass

    class Entry(LocalBase):
        """Appended rows with an identity of their own: the input file and line they come from."""
        __tablename__ = "sinks_test_entries"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        origin: Mapped[str] = mapped_column(sa.String(40), unique=True)
        amount: Mapped[int] = mapped_column(sa.Integer, nullable=False)

    reset(database, Entry)
    entries = [{"origin": f"a.json:{n}", "amount": n} for n in range(300)]

    def run(rows):
        pipeline = beam.Pipeline(runner=FnApiRunner())
        written = pipeline | beam.Create(rows) | WriteToSQL(
            database, Entry, conflict=["origin"], skip_existing=True, batch_size=64, name="entries")
        assert_that(written[DEAD_LETTERS], equal_to([]))
        pipeline.run().wait_until_finish()

    run(entries[:120])  # a run killed part-way
    run(entries)  # the same input again
    run(entries[5:6] + [{"origin": "a.json:5", "amount": -1}])  # one identity twice in a batch
    stored = select(database, Entry, "id")
    assert sorted((r["origin"], r["amount"]) for r in stored) == sorted((e["origin"], e["amount"]) for e in entries)
    with pytest.raises(SchemaMismatchError, match=r"no primary key or unique constraint on \(amount\)"):
        beam.Pipeline(runner=FnApiRunner()) | beam.Create([]) | WriteToSQL(
            database, Entry, conflict=["amount"], skip_existing=True)
