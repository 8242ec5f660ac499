"""The database goes away mid-run and comes back: a TCP proxy cuts every connection and
refuses new ones, or a throwaway PostgreSQL cluster restarts. Every appended row must be
there afterwards, and every upserted key must hold its final value."""
import contextlib
import json
import socket
import threading
import time
from collections import Counter

import apache_beam as beam
import pytest
import sqlalchemy as sa
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that

from sinks.integrations import MySQLSource, PostgreSQLSource
from tests.servers import TcpProxy, ThrowawayPostgres, free_port
from tests.sql_models import Event, Total
from tests.test_sql_write import reset
from transforms.dead_letters import DEAD_LETTERS
from transforms.sql import SQLWriter, TableSpec, WriteRetry, WriteToSQL

CHUNKS, CHUNK_ROWS, KEYS = 60, 50, 37
PATIENT = WriteRetry(base_delay=0.05, max_delay=0.5, deadline=60)


def slow_chunk(chunk):
    """One chunk of rows every 0.1 s, so that the run lasts about six seconds."""
    time.sleep(0.1)
    return [chunk * CHUNK_ROWS + i for i in range(CHUNK_ROWS)]


def event(n):
    return {"user_id": f"u{n % KEYS}", "name": f"event {n}"}


def total(n):
    return {"user_id": f"u{n % KEYS}", "count": n}


def run_through_fault(integration, fault):
    """Append events and upsert totals while ``fault`` strikes 1.5 s into the run."""
    engine = integration.create_engine()
    with engine.begin() as connection:
        for model in (Event, Total):
            model.__table__.drop(connection, checkfirst=True)
            model.__table__.create(connection)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    numbers = pipeline | beam.Create(list(range(CHUNKS))) | beam.FlatMap(slow_chunk)
    numbers | "Events" >> beam.Map(event) | "Append" >> WriteToSQL(
        integration, Event, batch_size=CHUNK_ROWS, retry=PATIENT, name="events")
    numbers | "Totals" >> beam.Map(total) | "Upsert" >> WriteToSQL(
        integration, Total, upsert=True, batch_size=CHUNK_ROWS, num_shards=3, retry=PATIENT, name="totals")
    striker = threading.Timer(1.5, fault)
    striker.start()
    result = pipeline.run()
    result.wait_until_finish()
    striker.join()
    retries = sum(c.committed for c in result.metrics().query(
        MetricsFilter().with_name("write_retries"))["counters"])
    with engine.connect() as connection:
        names = Counter(connection.execute(sa.select(Event.name)).scalars())
        totals = dict(connection.execute(sa.select(Total.user_id, Total.count)).all())
    engine.dispose()
    return retries, names, totals


def check(retries, names, totals):
    numbers = range(CHUNKS * CHUNK_ROWS)
    assert retries > 0, "the fault struck after the run: nothing was tested"
    assert set(names) == {event(n)["name"] for n in numbers}, "appended rows are missing"
    duplicates = sum(names.values()) - len(names)
    assert duplicates <= CHUNK_ROWS, f"{duplicates} duplicates: more than one ambiguous commit's worth"
    assert totals == {f"u{k}": max(n for n in numbers if n % KEYS == k) for k in range(KEYS)}


def cut_off_by_a_proxy(server_url, source, default_port):
    url = sa.make_url(server_url)
    proxy = TcpProxy(url.host, url.port or default_port)
    try:
        integration = source(url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        check(*run_through_fault(integration, lambda: proxy.cut(3)))
    finally:
        proxy.close()


def test_postgresql_cut_off_by_a_proxy_for_three_seconds(postgres_url):
    cut_off_by_a_proxy(postgres_url, PostgreSQLSource, 5432)


def test_mariadb_cut_off_by_a_proxy_for_three_seconds(mysql_url):
    cut_off_by_a_proxy(mysql_url, MySQLSource, 3306)


@pytest.fixture
def throwaway_postgres():
    server = ThrowawayPostgres()
    yield server
    server.close()


def test_postgresql_server_restarted_mid_run(throwaway_postgres):
    integration = PostgreSQLSource(url=throwaway_postgres.url)
    check(*run_through_fault(integration, throwaway_postgres.restart))


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


@contextlib.contextmanager
def writer_through_a_cut(postgres_url, seconds, retry):
    """An upsert writer of totals, through a proxy that is cut off for ``seconds`` as it is handed
    over, and the thread that brings the proxy back."""
    url = sa.make_url(postgres_url)
    reset(PostgreSQLSource(url=postgres_url), Total)
    proxy = TcpProxy(url.host, url.port or 5432)
    integration = PostgreSQLSource(url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    writer = SQLWriter(integration, TableSpec(Total), upsert=True, retry=retry)
    writer.open()
    assert writer.write([total(0)]).written == 1
    cut = threading.Thread(target=proxy.cut, args=(seconds,))
    cut.start()
    while not refused(proxy.port):
        time.sleep(0.01)
    try:
        yield writer, cut
    finally:
        cut.join()
        writer.close()
        proxy.close()


def test_after_one_batch_gives_up_later_batches_fail_fast_until_the_database_is_back(postgres_url):
    retry = WriteRetry(base_delay=0.05, max_delay=0.1, deadline=0.5)
    with writer_through_a_cut(postgres_url, 4, retry) as (writer, cut):
        started = time.monotonic()
        gave_up = writer.write([total(1), total(2)])
        assert gave_up.written == 0 and gave_up.retries > 0 and time.monotonic() - started >= 0.4
        assert all(str(error).startswith("gave up after") for _, error in gave_up.failed)
        started = time.monotonic()
        fast = writer.write([total(3)])
        assert time.monotonic() - started < 0.3, "a batch after the deadline passed waited for it again"
        assert (fast.written, fast.retries) == (0, 0)
        [(_, error)] = fast.failed
        assert str(error).startswith("not retried: the database has been unreachable for")
        cut.join()
        assert writer.write([total(4)]).written == 1  # back: the next outage is retried again
        assert not writer.write([total(5)]).failed


def test_deadline_zero_retries_for_as_long_as_the_database_is_away(postgres_url):
    with writer_through_a_cut(postgres_url, 2, WriteRetry(base_delay=0.05, max_delay=0.2, deadline=0)) as (writer, _):
        result = writer.write([total(1)])
        assert (result.written, result.failed) == (1, []) and result.retries > 3


def test_an_outage_dead_letters_rows_with_one_short_reason_and_one_traceback_per_batch():
    integration = PostgreSQLSource(url=f"postgresql+psycopg2://root@127.0.0.1:{free_port()}/test")
    pipeline = beam.Pipeline(runner=FnApiRunner())
    written = (pipeline
               | beam.Create([total(n) for n in range(300)], reshuffle=False)
               | WriteToSQL(integration, Total, batch_size=100, validate=False, name="totals",
                            retry=WriteRetry(base_delay=0.01, max_delay=0.05, deadline=0.3)))

    def check(letters):
        assert len(letters) == 300
        assert 1 <= sum(letter["traceback"] is not None for letter in letters) <= 3
        assert all(len(letter["error"]) < 300 and "Connection refused" in letter["error"] for letter in letters)
        assert sum(len(json.dumps(letter)) for letter in letters) < 300 * 600 + 3 * 20_000

    assert_that(written[DEAD_LETTERS], check)
    pipeline.run().wait_until_finish()
