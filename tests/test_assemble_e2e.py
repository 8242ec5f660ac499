"""The seed's ``aggregate_user_transactions`` end to end: updates → Assemble → call → upsert into
PostgreSQL, checked against an independent SQL query over the same input, in any arrival order,
on the FnApiRunner with one and with two worker processes."""
import random
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pytest
import sqlalchemy
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from examples.bank import UserTxnAggregate, aggregate_user_transactions
from sinks import PostgreSQLSource
from transforms import DeliverSink
from transforms.assemble import Assemble
from transforms.dead_letters import DEAD_LETTERS

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def bank_stream(users: int, transfers: int, seed: int) -> list:
    """Users (some updated twice) and transfers over 200 days, with every status."""
    rng = random.Random(seed)
    updates = []
    for u in range(users):
        for _ in range(rng.choice([1, 1, 2])):
            updates.append({"user.uuid": f"u{u}", "user.full_name": f"User {u}",
                            "user.ts": (START + timedelta(days=rng.uniform(0, 200))).isoformat()})
    for t in range(transfers):
        updates.append({
            "transfer.id": f"t{t}", "transfer.user_id": f"u{rng.randrange(users)}",
            "transfer.status": rng.choice(["successful", "successful", "failed", "pending"]),
            "transfer.amount": round(rng.uniform(1, 500), 2),
            "transfer.created_at": (START + timedelta(days=rng.uniform(0, 200))).isoformat()})
    return updates


def expected_aggregates(engine, updates) -> dict:
    """Each user's successful transfers in the 60 days up to the input's final clock: the latest
    event time among all updates (windows are evaluated on the stream's clock, not the user's)."""
    users = [(u["user.uuid"], u["user.ts"]) for u in updates if "user.uuid" in u]
    transfers = [(u["transfer.id"], u["transfer.user_id"], u["transfer.status"], u["transfer.amount"],
                  u["transfer.created_at"]) for u in updates if "transfer.id" in u]
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TEMPORARY TABLE in_users (uuid text, ts timestamptz)")
        connection.exec_driver_sql("CREATE TEMPORARY TABLE in_transfers (id text, user_id text, "
                                   "status text, amount float8, created_at timestamptz)")
        connection.exec_driver_sql("INSERT INTO in_users VALUES (%s, %s)", users)
        connection.exec_driver_sql("INSERT INTO in_transfers VALUES (%s, %s, %s, %s, %s)", transfers)
        rows = connection.exec_driver_sql("""
            WITH clock AS (
              SELECT u.uuid, g.now FROM (SELECT DISTINCT uuid FROM in_users) AS u
              CROSS JOIN (SELECT max(ts) AS now FROM (
                SELECT ts FROM in_users UNION ALL SELECT created_at FROM in_transfers) AS times) AS g)
            SELECT c.uuid, count(t.id), coalesce(sum(t.amount), 0)
            FROM clock c LEFT JOIN in_transfers t
              ON t.user_id = c.uuid AND t.status = 'successful'
             AND t.created_at BETWEEN c.now - interval '60 days' AND c.now
            GROUP BY c.uuid""").all()
    return {uuid: (count, total) for uuid, count, total in rows}


def run_aggregate(updates, url, workers: int) -> None:
    options = PipelineOptions(direct_num_workers=workers, direct_running_mode="multi_processing")
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        assembled = (pipeline
                     | beam.Create(updates, reshuffle=False)
                     | Assemble([aggregate_user_transactions]))
        delivered = assembled["aggregate_user_transactions"] | DeliverSink(
            aggregate_user_transactions, integration=PostgreSQLSource(url=url), create_tables=True)
        (assembled[DEAD_LETTERS], delivered[DEAD_LETTERS]) | beam.Flatten() | beam.Map(_no_dead_letter)


def _no_dead_letter(letter):
    raise AssertionError(f"unexpected dead letter: {letter}")


@pytest.mark.parametrize("order, workers", [("as generated", 1), ("shuffled", 1), ("reversed", 2)])
def test_upserted_aggregates_match_an_independent_query(postgres_url, order, workers):
    updates = bank_stream(users=150, transfers=3000, seed=7)
    if order == "shuffled":
        random.Random(1).shuffle(updates)
    elif order == "reversed":
        updates.reverse()
    engine = sqlalchemy.create_engine(postgres_url)
    UserTxnAggregate.__table__.drop(engine, checkfirst=True)
    try:
        run_aggregate(updates, postgres_url, workers)
        with engine.connect() as connection:
            stored = {row.user_id: (row.count, row.total) for row in connection.execute(
                sqlalchemy.select(UserTxnAggregate.__table__))}
        expected = expected_aggregates(engine, updates)
        assert len(expected) == 150 and set(stored) == set(expected)
        wrong = {uuid: (stored[uuid], want) for uuid, want in expected.items()
                 if stored[uuid][0] != want[0] or abs(stored[uuid][1] - want[1]) > 1e-6}
        assert not wrong
        assert sum(count for count, _ in stored.values()) > 300   # the windows are not trivially empty
    finally:
        UserTxnAggregate.__table__.drop(engine, checkfirst=True)
        engine.dispose()
