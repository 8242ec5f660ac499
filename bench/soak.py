"""Soak: the whole bank example job (assemble → call → append/upsert) over millions of updates.

Runs the job that ``python -m pipelines run`` builds, on the FnApiRunner, over the generated
stream of ``bench/assemble.py`` (10,000 users; 10% user, 10% account, 80% transfer updates, the
time span growing with the count so transfers keep leaving the 60-day window), once per count in a
fresh process, writing to ``--database-url``; prints each run's rate and peak RSS, and the ratio of
the largest to the smallest. With a PostgreSQL URL it also runs the hand-written consumer of
``bench/peers.py`` over the same stream (in a fresh process, into a database of its own) and
prints the project's rate against it.

    python bench/soak.py --database-url sqlite:////tmp/soak.db [--counts 1000000 5000000]
"""
from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def one_run(count: int, url: str) -> None:
    import apache_beam as beam
    import sqlalchemy

    import sinks
    from bench.assemble import generate
    from examples.bank import UserRecord, UserTxnAggregate
    from pipelines.build import JobSettings, build_job

    engine = sqlalchemy.create_engine(url)
    for model in (UserRecord, UserTxnAggregate):
        model.__table__.drop(engine, checkfirst=True)
    registry = sinks.load("examples/bank.py")
    pipeline = beam.Pipeline(runner="FnApiRunner")
    updates = pipeline | "Source" >> generate(count, 10_000, count * 120 // 500_000)
    build_job(updates, registry, JobSettings(database_url=url, create_tables=True, dead_letters="/tmp/soak-dead"))
    started = time.perf_counter()
    pipeline.run().wait_until_finish()
    elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        rows = [connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(m.__table__)).scalar()
                for m in (UserRecord, UserTxnAggregate)]
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} {count / elapsed:.0f} {peak:.0f} {rows[0]} {rows[1]}")


def one_handwritten(count: int, url: str) -> None:
    from bench.assemble import stream
    from bench.peers import consume, dsn_of, reset
    reset(dsn_of(url))
    started = time.perf_counter()
    consume(stream(count, 10_000, count * 120 // 500_000), url)
    elapsed = time.perf_counter() - started
    reset(dsn_of(url))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} {count / elapsed:.0f} {peak:.0f}")


def handwritten_rate(count: int, server: str) -> float:
    """Updates/s of the hand-written consumer over the same stream, in a database of its own."""
    import psycopg2
    from psycopg2 import sql

    from bench.peers import dsn_of
    database = f"bench_{secrets.token_hex(4)}"
    admin = psycopg2.connect(dsn_of(server))
    admin.autocommit = True
    admin.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        url = server.rsplit("/", 1)[0] + "/" + database
        output = subprocess.run([sys.executable, __file__, "--database-url", url, "--handwritten", str(count)],
                                check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    finally:
        admin.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        admin.close()
    return float(output.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--handwritten", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.one, args.database_url)
        return
    if args.handwritten:
        one_handwritten(args.handwritten, args.database_url)
        return
    results = []
    for count in args.counts:
        output = subprocess.run([sys.executable, __file__, "--database-url", args.database_url, "--one", str(count)],
                                check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        n, rate, peak, appended, upserted = output.split()
        results.append((int(n), float(rate), float(peak)))
        print(f"{int(n):,} updates: {float(rate):,.0f} updates/s, peak RSS {float(peak):,.0f} MB, "
              f"{int(appended):,} rows appended, {int(upserted):,} aggregates", file=sys.stderr)
    backend = args.database_url.split(":", 1)[0].split("+", 1)[0]
    for n, rate, peak in results:
        print(f"soak_{backend}_{n}_updates_per_s: {rate:.0f}")
        print(f"soak_{backend}_{n}_peak_rss_mb: {peak:.0f}")
    print(f"soak_{backend}_memory_largest_vs_smallest: {results[-1][2] / results[0][2]:.2f}")
    if backend == "postgresql":
        for n, rate, _ in results:
            print(f"soak_{backend}_{n}_vs_handwritten: {rate / handwritten_rate(n, args.database_url):.2f}")


if __name__ == "__main__":
    main()
