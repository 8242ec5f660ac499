"""SQL write throughput on PostgreSQL, as ratios against baselines measured in the same run.

(a) The project's batch writer (``SQLWriter``) fed ready batches of column
    dicts, against raw psycopg2 doing the same job by hand: ``COPY`` for
    append; ``COPY`` into a temporary table then one ``INSERT ... SELECT ...
    ON CONFLICT DO UPDATE`` for upsert. Target >= 0.8 for both. The writer fed
    mapped instances is printed beside it.
(b) End to end through Beam on the FnApiRunner: generated source →
    ``WriteToSQL`` (append, and upsert) → PostgreSQL, against a floor pipeline
    of the same source into ``BatchElements`` and a DoFn that does nothing.
    Target >= 0.6.

Each figure is the best of ``--rounds`` runs, taken alternately.

    python bench/write.py [--rows 200000] [--batch 5000] [--rounds 3] [--url postgresql+psycopg2://...]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import apache_beam as beam  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402
from sqlalchemy.orm import DeclarativeBase  # noqa: E402

from sinks.integrations import PostgreSQLSource  # noqa: E402
from transforms.sql import SQLWriter, TableSpec, WriteToSQL  # noqa: E402

metadata = sa.MetaData()
TABLE = sa.Table(
    "bench_writes", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("amount", sa.Float),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)
COLUMNS = [c.name for c in TABLE.columns]
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class BenchRow(Base):
    __table__ = TABLE


def row(i: int) -> Dict[str, Any]:
    return {"id": i, "user_id": f"user-{i % 10007}", "name": f"transfer {i} to account {i * 7 % 1000}",
            "amount": i * 0.25, "created_at": EPOCH + timedelta(seconds=i)}


def rows_of_chunk(chunk: int, size: int) -> List[Dict[str, Any]]:
    return [row(i) for i in range(chunk * size, (chunk + 1) * size)]


def batches(rows: List[Any], size: int) -> List[List[Any]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def reset(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        TABLE.drop(connection, checkfirst=True)
        TABLE.create(connection)


def raw_append(engine: sa.Engine, groups: List[List[Dict[str, Any]]]) -> None:
    connection = engine.raw_connection()
    cursor = connection.cursor()
    for group in groups:
        text = "".join(f"{r['id']}\t{r['user_id']}\t{r['name']}\t{r['amount']!r}\t{r['created_at'].isoformat()}\n"
                       for r in group)
        cursor.copy_expert(f"COPY bench_writes ({', '.join(COLUMNS)}) FROM STDIN", io.StringIO(text))
        connection.commit()
    connection.close()


def raw_upsert(engine: sa.Engine, groups: List[List[Dict[str, Any]]]) -> None:
    connection = engine.raw_connection()
    cursor = connection.cursor()
    cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS bench_stage ON COMMIT DELETE ROWS AS "
                   "SELECT * FROM bench_writes WITH NO DATA")
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    for group in groups:
        text = "".join(f"{r['id']}\t{r['user_id']}\t{r['name']}\t{r['amount']!r}\t{r['created_at'].isoformat()}\n"
                       for r in group)
        cursor.copy_expert(f"COPY bench_stage ({', '.join(COLUMNS)}) FROM STDIN", io.StringIO(text))
        cursor.execute(f"INSERT INTO bench_writes SELECT * FROM bench_stage ON CONFLICT (id) DO UPDATE SET {updates}")
        connection.commit()
    connection.close()


def writer_run(integration: PostgreSQLSource, model: Any, upsert: bool) -> Callable[[sa.Engine, List], None]:
    def run(_: sa.Engine, groups: List[List[Any]]) -> None:
        writer = SQLWriter(integration, TableSpec(model), upsert=upsert)
        writer.open()
        for group in groups:
            result = writer.write(group)
            assert not result.failed, result.failed[:1]
        writer.close()
    return run


class _Nothing(beam.DoFn):
    def process(self, batch: List[Any]) -> None:
        return None


def beam_run(integration: PostgreSQLSource, rows: int, batch: int, write: str) -> float:
    chunk = 1000
    pipeline = beam.Pipeline(runner=FnApiRunner())
    source = (pipeline | beam.Create(list(range(rows // chunk)))
              | beam.FlatMap(rows_of_chunk, chunk))
    if write == "floor":
        source | beam.BatchElements(min_batch_size=batch, max_batch_size=batch) | beam.ParDo(_Nothing())
    else:
        source | WriteToSQL(integration, TABLE, upsert=write == "upsert", batch_size=batch)
    started = time.perf_counter()
    pipeline.run().wait_until_finish()
    return rows / (time.perf_counter() - started)


def timed(engine: sa.Engine, run: Callable[[sa.Engine, List], None], groups: List, rows: int,
          prefill: List | None = None) -> float:
    reset(engine)
    if prefill:
        raw_append(engine, prefill)
    started = time.perf_counter()
    run(engine, groups)
    elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT count(*) FROM bench_writes")).scalar()
    assert stored == rows, f"{stored} rows stored, {rows} expected"
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get(
        "SINKS_TEST_POSTGRES_URL", "postgresql+psycopg2://root@127.0.0.1:5432/test"))
    args = parser.parse_args()
    integration = PostgreSQLSource(url=args.url)
    engine = integration.create_engine()
    dicts = [row(i) for i in range(args.rows)]
    instances = [BenchRow(**r) for r in dicts]
    groups, instance_groups = batches(dicts, args.batch), batches(instances, args.batch)
    half = batches(dicts[: args.rows // 2], args.batch)  # upserts: half the keys exist, half are new

    best: Dict[str, float] = {}

    def keep(name: str, rate: float) -> None:
        best[name] = max(best.get(name, 0.0), rate)

    for _ in range(args.rounds):
        keep("raw_copy", timed(engine, raw_append, groups, args.rows))
        keep("append", timed(engine, writer_run(integration, TABLE, False), groups, args.rows))
        keep("append_instances", timed(engine, writer_run(integration, BenchRow, False), instance_groups, args.rows))
        keep("raw_merge", timed(engine, raw_upsert, groups, args.rows, prefill=half))
        keep("upsert", timed(engine, writer_run(integration, TABLE, True), groups, args.rows, prefill=half))
        keep("upsert_instances", timed(engine, writer_run(integration, BenchRow, True), instance_groups, args.rows,
                                       prefill=half))
    for _ in range(args.rounds):
        keep("beam_floor", beam_run(integration, args.rows, args.batch, "floor"))
        reset(engine)
        keep("beam_append", beam_run(integration, args.rows, args.batch, "append"))
        reset(engine)
        keep("beam_upsert", beam_run(integration, args.rows, args.batch, "upsert"))
    engine.dispose()

    print(f"{args.rows:,} rows of {len(COLUMNS)} columns, batches of {args.batch:,}, best of {args.rounds}")
    for name, rate in best.items():
        print(f"  {name:18} {rate:>10,.0f} rows/s")
    for name, rate in best.items():
        print(f"{name}_rows_per_s: {rate:.0f}")
    print(f"append_vs_copy: {best['append'] / best['raw_copy']:.2f}")
    print(f"append_instances_vs_copy: {best['append_instances'] / best['raw_copy']:.2f}")
    print(f"upsert_vs_merge: {best['upsert'] / best['raw_merge']:.2f}")
    print(f"upsert_instances_vs_merge: {best['upsert_instances'] / best['raw_merge']:.2f}")
    print(f"beam_append_vs_floor: {best['beam_append'] / best['beam_floor']:.2f}")
    print(f"beam_upsert_vs_floor: {best['beam_upsert'] / best['beam_floor']:.2f}")


if __name__ == "__main__":
    main()
