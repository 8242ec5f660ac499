"""An upsert sink called per row gets each entity's last update of a bundle; other sinks get every update."""
import apache_beam as beam
import sqlalchemy as sa
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from tests import sinks_under_test as s
from tests.sql_models import Total
from transforms.call import RESULTS
from transforms.deliver import DeliverSink, LatestPerEntity


def counter(result, namespace, name):
    found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))["counters"]
    return sum(c.committed for c in found)


def test_latest_by_timestamp_then_arrival():
    updates = [("u1", "a", 5), ("u2", "b", 1), ("u1", "c", 3), ("u1", "d", 5), ("u2", "e", 2)]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = (pipeline | beam.Create(updates) | beam.Map(lambda u: TimestampedValue((u[0], u[1]), u[2]))
           | beam.ParDo(LatestPerEntity("test")))
    assert_that(out, equal_to([("u1", "d"), ("u2", "e")]))
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "sinks.test", "coalesced") == 3


def test_upsert_sink_called_once_per_entity_per_bundle_same_table(database):
    engine = database.create_engine()
    Total.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    updates = [(f"u{n % 3}", {"uid": f"u{n % 3}", "n": n}) for n in range(15)]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    pipeline | beam.Create(updates) | DeliverSink(s.record_totals, integration=database, create_tables=True)
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "sinks.record_totals", "calls") == 3
    engine = database.create_engine()
    with engine.connect() as connection:
        stored = connection.execute(sa.select(Total.user_id, Total.count).order_by(Total.user_id)).all()
    engine.dispose()
    assert [tuple(r) for r in stored] == [("u0", 12), ("u1", 13), ("u2", 14)]


def test_other_sinks_get_every_update():
    updates = [("u1", {"uid": "u1", "n": n}) for n in range(5)]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create(updates) | DeliverSink(s.echo)
    assert_that(out[RESULTS], equal_to(updates))
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "sinks.echo", "calls") == 5


def test_holds_at_most_max_held_entities():
    updates = [("u1", "a"), ("u2", "b"), ("u1", "c"), ("u3", "d"), ("u1", "e"), ("u3", "f")]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create(updates) | beam.ParDo(LatestPerEntity("test", max_held=2))
    # u3 arriving passes on u1's "c" (held longest); u1 is then held anew, and so on.
    assert_that(out, equal_to([("u1", "c"), ("u2", "b"), ("u1", "e"), ("u3", "f")]))
    pipeline.run().wait_until_finish()
