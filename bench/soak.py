"""Soak: the whole bank example job (assemble → call → append/upsert) over millions of updates.

Runs the job that ``python -m pipelines run`` builds, on the FnApiRunner, over the generated
stream of ``bench/assemble.py`` (10,000 users; 10% user, 10% account, 80% transfer updates, the
time span growing with the count so transfers keep leaving the 60-day window), once per count in a
fresh process, writing to ``--database-url``; prints each run's rate and peak RSS, and the ratio of
the largest to the smallest. With a PostgreSQL URL it also runs the hand-written consumer of
``bench/peers.py`` over the same stream (in a fresh process, into a database of its own) and
prints the project's rate against it.

High cardinality (``--distinct N``): N distinct users with two ``user.*`` updates each (uuid,
full_name, email, ts; the second round of updates after all the first, so every user's state is
held to the end), written to a JSONL file and read as ``run`` reads a file (on the in-process
FnApiRunner, in bundles of ``pipelines.sources.RECORDS_PER_BUNDLE`` records), through the same job,
on each runner of ``--runners`` (``fnapi``; ``prism`` with ``--prism`` pointing at its binary), each
in a fresh process; with it, the 10,000-user soak at 2 N updates (at most 1,000,000) on the
FnApiRunner, from a file too, for the ratio. Peak RSS is the largest sum of the resident sets of
the run's process and all its descendants (Prism's Go process, worker processes), sampled every
0.2 s, and the run process's own ``ru_maxrss``. Both kinds of run use ``pipelines.in_process.settings``, as ``run`` does.

    python bench/soak.py --database-url sqlite:////tmp/soak.db [--counts 1000000 5000000]
    python bench/soak.py --database-url sqlite:////tmp/soak.db --distinct 1000000 --runners fnapi prism
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from typing import Dict, Iterator, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import apache_beam as beam  # noqa: E402
import sqlalchemy  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from pipelines import in_process  # noqa: E402

from bench.assemble import START, stream  # noqa: E402


def one_run(count: int, url: str) -> None:
    import sinks
    from bench.assemble import generate
    from examples.bank import UserRecord, UserTxnAggregate
    from pipelines.build import JobSettings, build_job

    engine = sqlalchemy.create_engine(url)
    for model in (UserRecord, UserTxnAggregate):
        model.__table__.drop(engine, checkfirst=True)
    registry = sinks.load("examples/bank.py")
    options = PipelineOptions(["--runner", "FnApiRunner"])
    pipeline = beam.Pipeline(options=options)
    updates = pipeline | "Source" >> generate(count, 10_000, count * 120 // 500_000)
    # The stream's clock is synthetic (bench.assemble.START onwards): past ~1.4M updates it runs
    # beyond today, and the clock-skew check would dead-letter the rest of the stream.
    settings = JobSettings(database_url=url, create_tables=True, dead_letters="/tmp/soak-dead", max_clock_skew=None)
    build_job(updates, registry, settings)
    started = time.perf_counter()
    with in_process.settings(options):    # as ``run`` runs it
        pipeline.run().wait_until_finish()
    elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        rows = [connection.execute(sqlalchemy.select(sqlalchemy.func.count()).select_from(m.__table__)).scalar()
                for m in (UserRecord, UserTxnAggregate)]
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} {count / elapsed:.0f} {peak:.0f} {rows[0]} {rows[1]}")


def distinct_updates(users: int, first: int, last: int) -> Iterator[dict]:
    """Updates ``first`` to ``last`` of ``2 * users``: update i is user ``i % users``'s update number
    ``i // users``, one second after update i - 1."""
    for i in range(first, last):
        user = i % users
        at = (START + timedelta(seconds=i)).isoformat()
        yield {"user.uuid": f"u{user}", "user.full_name": f"Name {user} {i // users}",
               "user.email": f"u{user}@example.com", "user.ts": at}


def write_jsonl(path: str, updates: Iterator[dict]) -> None:
    with open(path, "w") as out:
        for update in updates:
            out.write(json.dumps(update))
            out.write("\n")


def one_file(path: str, updates: int, url: str, runner: str, prism: str) -> None:
    """The bank job over the JSONL file ``path``, read as ``run`` reads it (in bundles of
    ``RECORDS_PER_BUNDLE`` records on the in-process FnApiRunner). Prints: updates, updates/s,
    this process's peak RSS (MB), aggregates stored."""
    import sinks
    from examples.bank import UserRecord, UserTxnAggregate
    from pipelines.build import JobSettings, build_job
    from pipelines.run import bundled_input
    from pipelines.sources import RECORDS_PER_BUNDLE, ReadUpdates

    engine = sqlalchemy.create_engine(url)
    for model in (UserRecord, UserTxnAggregate):
        model.__table__.drop(engine, checkfirst=True)
    registry = sinks.load("examples/bank.py")
    arguments = ["--runner", "FnApiRunner"] if runner == "fnapi" else [
        "--runner", "PrismRunner", "--prism_location", prism]
    options = PipelineOptions(arguments)
    pipeline = beam.Pipeline(options=options)
    input_id = bundled_input(options, list(registry.sinks.values()))
    read = pipeline | "ReadUpdates" >> ReadUpdates(
        path, records_per_bundle=RECORDS_PER_BUNDLE if input_id else None, input_id=input_id)
    # The stream's clock is synthetic (bench.assemble.START onwards), past today for long streams.
    build_job(read.updates, registry, JobSettings(database_url=url, create_tables=True, dead_letters="/tmp/soak-dead",
                                                  max_clock_skew=None, input_id=input_id))
    started = time.perf_counter()
    with in_process.settings(options):
        pipeline.run().wait_until_finish()
    elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        stored = connection.execute(
            sqlalchemy.select(sqlalchemy.func.count()).select_from(UserTxnAggregate.__table__)).scalar()
    engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{updates} {updates / elapsed:.0f} {peak:.0f} {stored}")


def _tree_rss_mb(root: int) -> float:
    """Resident MB of ``root`` and every process below it, from /proc."""
    parents: Dict[int, int] = {}
    resident: Dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        resident[int(entry)] = int(fields[21]) * page
    tree, grown = {root}, True
    while grown:
        below = {pid for pid, parent in parents.items() if parent in tree and pid not in tree}
        tree |= below
        grown = bool(below)
    return sum(resident.get(pid, 0) for pid in tree) / 2**20


def file_run(path: str, updates: int, url: str, runner: str, prism: str) -> Tuple[float, float, float, int]:
    """(updates/s, peak RSS of the process tree, peak RSS of the run's process, aggregates) of one
    run over ``path`` in a fresh process."""
    process = subprocess.Popen([sys.executable, __file__, "--database-url", url, "--one-file", path,
                                "--updates", str(updates), "--runner", runner, "--prism", prism],
                               stdout=subprocess.PIPE, text=True)
    peak_tree = 0.0
    while process.poll() is None:
        peak_tree = max(peak_tree, _tree_rss_mb(process.pid))
        time.sleep(0.2)
    output = process.stdout.read() if process.stdout else ""
    if process.returncode:
        raise RuntimeError(f"the {runner} run over {path} exited with {process.returncode}")
    _, rate, peak_self, stored = output.strip().splitlines()[-1].split()
    return float(rate), max(peak_tree, float(peak_self)), float(peak_self), int(stored)


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


# The baseline's updates, at most: enough for its rate to settle, in about a minute.
BASELINE_MAX = 1_000_000


def high_cardinality(users: int, url: str, runners: List[str], prism: str) -> None:
    """The ``--distinct`` runs, and the 10,000-user soak of as many updates (at most
    ``BASELINE_MAX``), for the ratio: each written to a JSONL file first and read as ``run`` reads it."""
    count = min(2 * users, BASELINE_MAX)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        baseline_file, distinct_file = os.path.join(directory, "soak.jsonl"), os.path.join(directory, "distinct.jsonl")
        write_jsonl(baseline_file, stream(count, 10_000, count * 120 // 500_000))
        write_jsonl(distinct_file, distinct_updates(users, 0, 2 * users))
        baseline, _, _, _ = file_run(baseline_file, count, url, "fnapi", prism)
        print(f"10,000 users, {count:,} updates (fnapi): {baseline:,.0f} updates/s", file=sys.stderr)
        lines = [f"soak_10000_users_updates_per_s: {baseline:.0f}"]
        for runner in runners:
            rate, peak_tree, peak_self, stored = file_run(distinct_file, 2 * users, url, runner, prism)
            print(f"{users:,} users, {2 * users:,} updates ({runner}): {rate:,.0f} updates/s, peak RSS "
                  f"{peak_tree:,.0f} MB (all processes; the run's own {peak_self:,.0f} MB), "
                  f"{stored:,} aggregates", file=sys.stderr)
            if stored != users:
                raise RuntimeError(f"{runner}: {stored} aggregates stored for {users} users")
            lines += [f"distinct_{users}_{runner}_updates_per_s: {rate:.0f}",
                      f"distinct_{users}_{runner}_peak_rss_mb: {peak_tree:.0f}",
                      f"distinct_{users}_{runner}_vs_10000_users: {rate / baseline:.2f}"]
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--handwritten", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--distinct", type=int, help="users for the high-cardinality run (2 updates each)")
    parser.add_argument("--runners", nargs="+", choices=["fnapi", "prism"], default=["fnapi"])
    parser.add_argument("--runner", choices=["fnapi", "prism"], help=argparse.SUPPRESS)
    parser.add_argument("--prism", default=os.path.expanduser("~/go/bin/prism"), help="Prism's binary")
    parser.add_argument("--one-file", help=argparse.SUPPRESS)
    parser.add_argument("--updates", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.one, args.database_url)
        return
    if args.one_file:
        one_file(args.one_file, args.updates, args.database_url, args.runner, args.prism)
        return
    if args.distinct:
        high_cardinality(args.distinct, args.database_url, args.runners, args.prism)
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
