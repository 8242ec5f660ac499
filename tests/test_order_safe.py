"""Issue 19 §5: an upsert sink's stored row is the one computed from the entity's newest state,
whatever order the writer receives the firings in. Each firing carries a ``Version`` (the
entity's clock, then its sequence) from the assemble stage to the writer, which keeps each
key's newest version written and drops older rows. Fed the same firings in order, reversed and
shuffled, on PostgreSQL, MariaDB and SQLite; the whole bank job on Prism is in test_engines."""
import random

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from tests.sql_models import Total
from tests.test_sql_write import reset, select
from transforms.firing import Firing, Version, version_of
from transforms.sql import VersionedRow, WriteToSQL

KEYS, FIRINGS = 5, 8


def firings():
    """Each key's firings, oldest first: pairs of them share a clock (a late related row does
    not move it), so only the sequence tells them apart."""
    return [VersionedRow({"user_id": f"u{k}", "count": n}, Version(clock=1_000 * (n // 2), sequence=n))
            for k in range(KEYS) for n in range(FIRINGS)]


def write(database, rows):
    """Writes ``rows`` in the order given (one bundle, batches of 3: the writer gets them in
    that order); returns how many rows it dropped as stale."""
    pipeline = beam.Pipeline(runner=FnApiRunner())
    (pipeline
     | beam.Create(rows, reshuffle=False)
     | WriteToSQL(database, Total, upsert=True, batch_size=3, num_shards=2, name="totals", versioned=True))
    result = pipeline.run()
    result.wait_until_finish()
    stale = result.metrics().query(MetricsFilter().with_name("stale_rows_dropped"))["counters"]
    return sum(c.committed for c in stale)


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_the_newest_firing_stays_whatever_order_the_writer_gets_them_in(database, order):
    rows = firings()
    if order == "reversed":
        rows.reverse()
    elif order == "shuffled":
        random.Random(19).shuffle(rows)
    reset(database, Total)
    stale = write(database, rows)
    assert [(r["user_id"], r["count"]) for r in select(database, Total, "user_id")] == [
        (f"u{k}", FIRINGS - 1) for k in range(KEYS)]
    if order == "in order":
        assert stale == 0
    if order == "reversed":
        assert stale == KEYS * (FIRINGS - 1)   # every firing after a key's newest


def test_an_equal_version_rewrites_and_a_row_without_one_always_writes(database):
    reset(database, Total)
    write(database, [VersionedRow({"user_id": "u1", "count": 1}, Version(5, 0)),
                     VersionedRow({"user_id": "u1", "count": 2}, Version(5, 0))])
    assert [r["count"] for r in select(database, Total, "user_id")] == [2]
    write(database, [VersionedRow({"user_id": "u1", "count": 3}, None)])
    assert [r["count"] for r in select(database, Total, "user_id")] == [3]
    # Any version ordered by ``<`` will do, a plain number too.
    write(database, [VersionedRow({"user_id": "u2", "count": 9}, 9), VersionedRow({"user_id": "u2", "count": 4}, 4)])
    assert [r["count"] for r in select(database, Total, "user_id")] == [3, 9]


def test_a_firing_is_a_pair_that_keeps_its_version_through_pickling_and_coders():
    import pickle

    from apache_beam.coders import FastPrimitivesCoder

    firing = Firing("u1", {"a": 1}, Version(7, 2))
    key, inputs = firing
    assert (key, inputs) == firing == ("u1", {"a": 1})
    coder = FastPrimitivesCoder()
    for copy in (pickle.loads(pickle.dumps(firing)), coder.decode(coder.encode(firing))):
        assert copy == firing and version_of(copy) == Version(7, 2)
    assert version_of(("u1", {"a": 1})) is None
    assert Version(7, 2) < Version(7, 3) < Version(8, 0)


def test_a_sink_fed_its_firings_newest_first_stores_the_newest(database):
    """Versions go from the firing through the sink's call (and its per-bundle coalescing) to the writer."""
    from tests import sinks_under_test as s
    from transforms.deliver import DeliverSink

    engine = database.create_engine()
    Total.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    newest_first = [Firing(f"u{k}", {"uid": f"u{k}", "n": n}, Version(1_000 * (n // 2), n))
                    for n in reversed(range(FIRINGS)) for k in range(KEYS)]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    pipeline | beam.Create(newest_first, reshuffle=False) | DeliverSink(
        s.record_totals, integration=database, create_tables=True)
    pipeline.run().wait_until_finish()
    assert [(r["user_id"], r["count"]) for r in select(database, Total, "user_id")] == [
        (f"u{k}", FIRINGS - 1) for k in range(KEYS)]


def test_the_assemble_stage_versions_each_entitys_firings_in_the_order_it_made_them(bank):
    """The clock, then the sequence: a late transfer leaves the clock where it is, and its firing
    still comes after the one before it."""
    from sinks import after, sink
    from tests.test_assemble import at, run

    User, Account, Transfer = bank

    @sink
    def totals(uid: User.uuid, txns: User.transfers[after(days_ago=60)]):
        pass

    def transfer(tid, day):
        return {"transfer.id": tid, "transfer.user_id": "u1", "transfer.status": "successful",
                "transfer.amount": 1.0, "transfer.created_at": at(day)}

    found, _ = run([totals], [{"user.uuid": "u1", "user.full_name": "Ann", "user.ts": at(1)},
                              transfer("t1", 10), transfer("t2", 5), transfer("t3", 20)])
    versions = [version_of(firing) for firing in found["totals"]]
    assert None not in versions and versions == sorted(versions) and len(set(versions)) == len(versions)
    assert [v.clock for v in versions][1:3] == [versions[1].clock] * 2   # the late t2 did not move it


class _Cell:
    """A state cell as a runner keeps it: read, write, add, clear."""

    def __init__(self, bag: bool) -> None:
        self.bag, self.value = bag, [] if bag else None

    def read(self):
        return list(self.value) if self.bag else self.value

    def write(self, value) -> None:
        self.value = value

    def add(self, value) -> None:
        self.value.append(value)

    def clear(self) -> None:
        self.value = []


class _Shard:
    """One shard's state, shared by the workers that write it in turn."""

    def __init__(self) -> None:
        self.last_batch, self.newest = _Cell(bag=False), _Cell(bag=True)


def _worker():
    """The keyed write step's version check alone, as one worker runs it (no database)."""
    from transforms.sql.table import TableSpec
    from transforms.sql.write import _ShardWriteBatchFn
    step = _ShardWriteBatchFn.__new__(_ShardWriteBatchFn)
    step.spec, step.stale = TableSpec(Total), type("Counter", (), {"inc": lambda self, n=1: None})()
    step._newest = {}
    return step


def _kept(step, shard: _Shard, rows):
    token = random.getrandbits(62)
    kept = step._newer(0, [(row, version) for row, version in rows], shard.last_batch.read(), shard.newest, token)
    shard.last_batch.write(token)
    return [(row["user_id"], row["count"]) for row in kept]


def test_a_worker_reads_the_versions_again_when_another_wrote_the_shard_since():
    shard, first, second = _Shard(), _worker(), _worker()
    assert _kept(first, shard, [({"user_id": "u1", "count": 5}, (5, 0))]) == [("u1", 5)]
    assert _kept(second, shard, [({"user_id": "u1", "count": 4}, (4, 0)),     # older than the first's
                                 ({"user_id": "u1", "count": 7}, (7, 0))]) == [("u1", 7)]
    # The first worker still holds u1 at version 5 in memory, but the shard's token moved on.
    assert _kept(first, shard, [({"user_id": "u1", "count": 6}, (6, 0))]) == []
    assert _kept(first, shard, [({"user_id": "u1", "count": 8}, (8, 0))]) == [("u1", 8)]


def test_a_shards_versions_are_compacted_as_keys_are_rewritten(monkeypatch):
    from transforms.sql import write as write_module
    monkeypatch.setattr(write_module, "COMPACT_AFTER", 10)
    shard, step = _Shard(), _worker()
    for n in range(1, 40):
        _kept(step, shard, [({"user_id": f"u{k}", "count": n}, (n, 0)) for k in range(3)])
    assert len(shard.newest.value) <= 8                      # not one entry per batch: 39 batches
    fresh = _worker()                                        # reads the compacted bag
    assert _kept(fresh, shard, [({"user_id": "u2", "count": 0}, (38, 0)),
                                ({"user_id": "u0", "count": 39}, (39, 0))]) == [("u0", 39)]
