"""Errors about the table or the connection, not a row, stop a sink's writes at once with one
clear error naming the table: no per-row isolation, no retries. Real PostgreSQL, MariaDB, SQLite."""
import time
import uuid

import apache_beam as beam
import pytest
import sqlalchemy as sa
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from sinks.integrations import MySQLSource, PostgreSQLSource
from tests.sql_models import Total
from tests.test_sql_write import reset
from transforms.sql import SQLWriter, TableSpec, TableWriteError, WriteRetry, WriteToSQL

ROWS = [{"user_id": f"u{i}", "count": i} for i in range(1000)]
PATIENT = WriteRetry(base_delay=0.5, deadline=60)  # would take a minute if it retried


def assert_stops_at_once(integration, upsert, match):
    writer = SQLWriter(integration, TableSpec(Total), upsert=upsert, retry=PATIENT, name="totals")
    writer.open()
    started = time.monotonic()
    try:
        with pytest.raises(TableWriteError, match=match) as raised:
            writer.write(ROWS)
    finally:
        writer.close()
    assert time.monotonic() - started < 5
    return raised.value


def reader(server_url, source, grant, revoke):
    """A login that may read the totals table and not write it; its URL, then it is dropped."""
    url = sa.make_url(server_url)
    name = f"sinks_reader_{uuid.uuid4().hex[:8]}"
    reset(source(url=server_url), Total)
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        for statement in grant:
            connection.execute(sa.text(statement.format(name=name, database=url.database)))
    yield url.set(username=name, password="reader")
    with admin.begin() as connection:
        for statement in revoke:
            connection.execute(sa.text(statement.format(name=name)))
    admin.dispose()


@pytest.fixture
def postgres_reader(postgres_url):
    yield from reader(postgres_url, PostgreSQLSource,
                      ["CREATE ROLE {name} LOGIN PASSWORD 'reader'", "GRANT SELECT ON sinks_test_totals TO {name}"],
                      ["DROP OWNED BY {name}", "DROP ROLE {name}"])


@pytest.fixture
def mariadb_reader(mysql_url):
    yield from reader(mysql_url, MySQLSource,
                      ["CREATE USER '{name}'@'%' IDENTIFIED BY 'reader'",
                       "GRANT SELECT ON {database}.* TO '{name}'@'%'"],
                      ["DROP USER '{name}'@'%'"])


@pytest.mark.parametrize("upsert", [False, True], ids=["append", "upsert"])
def test_postgresql_role_without_insert_privilege(postgres_reader, upsert):
    error = assert_stops_at_once(PostgreSQLSource(url=postgres_reader.render_as_string(False)), upsert,
                                 r"sink 'totals': cannot write to table 'sinks_test_totals': "
                                 r"InsufficientPrivilege: permission denied for table")
    assert len(str(error)) < 300


def test_postgresql_refused_login(postgres_reader):
    url = postgres_reader.set(password="wrong").render_as_string(False)
    assert_stops_at_once(PostgreSQLSource(url=url), False, r"password authentication failed")


@pytest.mark.parametrize("upsert", [False, True], ids=["append", "upsert"])
def test_mariadb_user_without_insert_privilege(mariadb_reader, upsert):
    assert_stops_at_once(MySQLSource(url=mariadb_reader.render_as_string(False)), upsert,
                         r"sink 'totals': cannot write to table 'sinks_test_totals': .*INSERT.* command denied")


def test_mariadb_refused_login(mariadb_reader):
    url = mariadb_reader.set(password="wrong").render_as_string(False)
    assert_stops_at_once(MySQLSource(url=url), False, r"Access denied for user")


def test_a_table_dropped_after_the_check_fails_the_pipeline_naming_it(database):
    reset(database, Total)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    pipeline | beam.Create(ROWS) | WriteToSQL(database, Total, upsert=True, retry=PATIENT, name="totals")
    engine = database.create_engine()
    Total.__table__.drop(engine)
    engine.dispose()
    started = time.monotonic()
    with pytest.raises(Exception, match=r"sink 'totals': cannot write to table 'sinks_test_totals'"):
        pipeline.run().wait_until_finish()
    assert time.monotonic() - started < 30
