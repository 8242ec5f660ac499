"""``DeliverSink``: an integration sink's results written to its table, dead letters from every stage."""
import apache_beam as beam
import sqlalchemy as sa
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from sinks.integrations import PostgreSQLSource
from tests import sinks_under_test as s
from tests.sql_models import Total
from transforms.call import RESULTS, RetryPolicy
from transforms.dead_letters import DEAD_LETTERS
from transforms.deliver import DeliverSink
from transforms.sql import WRITTEN


def test_integration_sink_upserts_what_it_returns(database):
    engine = database.create_engine()
    Total.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    updates = [(f"u{n % 3}", {"uid": f"u{n % 3}", "n": n}) for n in range(15)] + [("u9", {"uid": "u9", "n": -1})]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create(updates) | DeliverSink(s.record_totals, integration=database, create_tables=True)
    assert_that(out[WRITTEN] | beam.CombineGlobally(sum), equal_to([3]), label="written")
    assert_that(out[DEAD_LETTERS], equal_to([]), label="dead")
    pipeline.run().wait_until_finish()
    engine = database.create_engine()
    with engine.connect() as connection:
        stored = connection.execute(sa.select(Total.user_id, Total.count, Total.note).order_by(Total.user_id)).all()
    engine.dispose()
    assert [tuple(r) for r in stored] == [("u0", 12, "x" * 12), ("u1", 13, "x" * 13), ("u2", 14, "x" * 14)]


def test_dead_letters_of_the_call_and_of_the_write_come_out_together(postgres_url):
    database = PostgreSQLSource(url=postgres_url)
    engine = database.create_engine()
    Total.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    updates = [("u1", {"uid": "u1", "n": 1}),
               ("u2", {"uid": "u2", "n": None}),  # the function raises
               ("u3", {"uid": "u3", "n": 25})]  # a note of 25 characters does not fit in VARCHAR(20)
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create(updates) | DeliverSink(
        s.record_totals, integration=database, create_tables=True, retry=RetryPolicy(attempts=1))
    assert_that(out[DEAD_LETTERS] | beam.Map(lambda d: (d["stage"], d["sink"], d["error_type"])),
                equal_to([("call", "record_totals", "TypeError"),
                          ("write", "record_totals", "StringDataRightTruncation")]), label="dead")
    assert_that(out[WRITTEN] | beam.CombineGlobally(sum), equal_to([1]), label="written")
    pipeline.run().wait_until_finish()


def test_sink_without_integration_gives_its_results():
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create([("u1", {"uid": "u1", "n": 1})]) | DeliverSink(s.echo)
    assert_that(out[RESULTS], equal_to([("u1", {"uid": "u1", "n": 1})]))
    pipeline.run().wait_until_finish()
