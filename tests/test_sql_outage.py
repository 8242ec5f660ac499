"""The database goes away mid-run and comes back: a TCP proxy cuts every connection and
refuses new ones, or a throwaway PostgreSQL cluster restarts. Every appended row must be
there afterwards, and every upserted key must hold its final value."""
import threading
import time
from collections import Counter

import apache_beam as beam
import pytest
import sqlalchemy as sa
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from sinks.integrations import MySQLSource, PostgreSQLSource
from tests.servers import TcpProxy, ThrowawayPostgres
from tests.sql_models import Event, Total
from transforms.sql import WriteRetry, WriteToSQL

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
