"""Peers: the bank job (``examples/bank.py``, four sinks) by this project, by a hand-written
single-process Python consumer, and by Bytewax, side by side.

Each implementation reads the same generated file (``python -m pipelines generate --definitions
examples/bank.py --entities N``) and writes the same two tables into the same PostgreSQL database
(one of the bench's own, ``bench_<random>`` on ``--server``'s server, dropped at the end); after
every run the final tables are checked equal to the project's (rows appended to ``user_records``
as a multiset; ``user_txn_aggregates`` row by row, totals to 6 decimals). Every run is a fresh
process; rounds alternate the implementations' order, since this machine's speed drifts; each
implementation's best of ``--rounds`` counts.

- ``project``: ``python -m pipelines run --definitions examples/bank.py --database-url ...``
  (the FnApiRunner), called in-process after its imports.
- ``handwritten``: what one would write by hand without a framework: a dict of per-user state,
  the same firing rules (README, "When a sink fires" and "Time windows"), rows flushed every
  5,000 updates, appends with COPY, upserts with COPY into a temporary table and one
  ``INSERT ... ON CONFLICT DO UPDATE`` (an entity's latest aggregate per flush). As the project's
  bounded run does, it ends by evaluating every user's aggregate as of the input's clock (the
  greatest event time in the whole input) and upserting those.
- ``bytewax``: the same per-user logic in a Bytewax 0.21 dataflow (one worker, ``stateful`` keyed
  by user, sinks writing each batch as the hand-written consumer does; at the end of the input
  every user's state goes to one step, which takes the input's clock from them and emits the
  final aggregates). Installed with pip into this interpreter by the bench if missing; not a
  dependency of the project.

    python bench/peers.py [--entities 1000 10000] [--rounds 3] [--only project handwritten bytewax]

Prints one ``name: value`` per line at the end: updates/s and peak RSS per implementation and
size, ``peers_vs_bytewax_N``, ``peers_vs_handwritten_N`` and ``peers_rss_vs_bytewax_N``.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = "postgresql+psycopg2://root@127.0.0.1:5432/test"
IMPLEMENTATIONS = ("project", "handwritten", "bytewax")
BYTEWAX = "bytewax==0.21.1"
WINDOW_US = 60 * 86_400 * 1_000_000      # after(days_ago=60)
FLUSH_EVERY = 5_000
BATCH_SINK_SIZE = 100

DDL = (
    "CREATE TABLE IF NOT EXISTS user_records (id SERIAL PRIMARY KEY, uuid VARCHAR(64) NOT NULL, "
    "full_name VARCHAR(256) NOT NULL, title VARCHAR(256) NOT NULL)",
    "CREATE TABLE IF NOT EXISTS user_txn_aggregates (user_id VARCHAR(64) PRIMARY KEY, "
    "count INTEGER NOT NULL, total DOUBLE PRECISION NOT NULL)",
)
DROP = "DROP TABLE IF EXISTS user_records, user_txn_aggregates"


def dsn_of(url: str) -> str:
    """A psycopg2 DSN from a SQLAlchemy URL."""
    rest = url.split("://", 1)[1]
    credentials, _, location = rest.rpartition("@")
    host_port, _, database = location.partition("/")
    host, _, port = host_port.partition(":")
    user, _, password = credentials.partition(":")
    parts = [f"host={host}", f"port={port or 5432}", f"dbname={database}"]
    if user:
        parts.append(f"user={user}")
    if password:
        parts.append(f"password={password}")
    return " ".join(parts)


# ---------------------------------------------------------------- the bank job, by hand

def micros(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


class UserState:
    """One user's state, as the project keeps it: own features, account, transfers, clock."""

    __slots__ = ("seen", "full_name", "name_time", "title", "title_time", "transfers", "clock")

    def __init__(self) -> None:
        self.seen = False
        self.full_name: Optional[str] = None
        self.name_time = -(2 ** 63)
        self.title: Optional[str] = None
        self.title_time = -(2 ** 63)
        self.transfers: Dict[str, Tuple[int, bool, float]] = {}   # id -> (created_at, successful, amount)
        self.clock = -(2 ** 63)


def user_of(update: Dict[str, Any]) -> str:
    return update.get("user.uuid") or update.get("account.user_id") or update["transfer.user_id"]


def apply(state: UserState, uid: str, update: Dict[str, Any]) -> List[Tuple[str, tuple]]:
    """Applies one update; returns the firings: ("record", row), ("aggregate", row), ("notify", row)."""
    before = state.clock
    first = False
    if "user.uuid" in update:
        time_ = micros(update["user.ts"])
        first = not state.seen
        state.seen = True
        if "user.full_name" in update and time_ >= state.name_time:
            state.full_name, state.name_time = update["user.full_name"], time_
        carried_names = "user.full_name" in update
        carried_transfers = False
    elif "account.id" in update:
        time_ = micros(update["account.ts"])
        if time_ >= state.title_time:
            state.title, state.title_time = update["account.title"], time_
        carried_names, carried_transfers = True, False
    else:
        time_ = micros(update["transfer.created_at"])
        held = state.transfers.get(update["transfer.id"])
        if held is None or time_ >= held[0]:
            state.transfers[update["transfer.id"]] = (
                time_, update["transfer.status"] == "successful", float(update["transfer.amount"]))
        carried_names, carried_transfers = False, True
    if time_ > state.clock:
        state.clock = time_
    if not state.seen:
        return []
    fired: List[Tuple[str, tuple]] = []
    if (first or carried_names) and state.full_name is not None and state.title is not None:
        fired.append(("record", (uid, state.full_name, state.title)))
    moved = state.clock != before and any(
        before - WINDOW_US <= t < state.clock - WINDOW_US for t, _, _ in state.transfers.values())
    if first or carried_transfers or moved:
        fired.append(("aggregate", aggregate(state, uid, state.clock)))
    bound = state.clock - WINDOW_US
    old = [k for k, held in state.transfers.items() if held[0] < bound]
    for k in old:
        del state.transfers[k]
    return fired


def aggregate(state: UserState, uid: str, now: int) -> tuple:
    """``aggregate_user_transactions`` as of ``now``: count and total of successful transfers in 60 days."""
    low = now - WINDOW_US
    amounts = [a for t, ok, a in state.transfers.values() if ok and low <= t <= now]
    return (uid, len(amounts), sum(amounts))


def final_aggregates(states: Iterable[Tuple[str, UserState]]) -> Dict[str, tuple]:
    """The end of a bounded run: every user's aggregate as of the input's clock (README, "Time windows").

    The input's clock is the greatest event time of any update, which is the greatest of the
    users' clocks since every update belongs to one user; the rows pruned so far are older than
    60 days before it.
    """
    held = list(states)
    if not held:
        return {}
    now = max(state.clock for _, state in held)
    return {uid: aggregate(state, uid, now) for uid, state in held if state.seen}


class Writer:
    """Appends with COPY; upserts with COPY into a temporary table and one merge."""

    def __init__(self, dsn: str) -> None:
        import psycopg2
        self.connection = psycopg2.connect(dsn)
        with self.connection.cursor() as cursor:
            for statement in DDL:
                cursor.execute(statement)
        self.connection.commit()
        self.notifications: collections.deque = collections.deque(maxlen=1000)
        self.batch: List[tuple] = []

    def notify(self, row: tuple) -> None:
        # The two custom sinks of the example: one per record, one per 100 records.
        self.notifications.append(row)
        self.batch.append(row[:2])
        if len(self.batch) >= BATCH_SINK_SIZE:
            self.notifications.append(("batch", len(self.batch)))
            self.batch = []

    def write(self, records: List[tuple], aggregates: Dict[str, tuple]) -> None:
        with self.connection.cursor() as cursor:
            if records:
                cursor.copy_expert("COPY user_records (uuid, full_name, title) FROM STDIN",
                                   io.StringIO("".join(f"{u}\t{n}\t{t}\n" for u, n, t in records)))
            if aggregates:
                cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS incoming (user_id VARCHAR(64), "
                               "count INTEGER, total DOUBLE PRECISION) ON COMMIT DELETE ROWS")
                cursor.copy_expert("COPY incoming FROM STDIN", io.StringIO(
                    "".join(f"{u}\t{c}\t{t!r}\n" for u, c, t in aggregates.values())))
                cursor.execute("INSERT INTO user_txn_aggregates SELECT * FROM incoming ON CONFLICT (user_id) "
                               "DO UPDATE SET count = EXCLUDED.count, total = EXCLUDED.total")
        self.connection.commit()

    def close(self) -> None:
        if self.batch:
            self.notifications.append(("batch", len(self.batch)))
        self.connection.close()


def consume(updates: Iterable[Dict[str, Any]], url: str) -> None:
    """The hand-written consumer over ``updates``, writing to ``url`` (PostgreSQL)."""
    writer = Writer(dsn_of(url))
    states: Dict[str, UserState] = {}
    records: List[tuple] = []
    aggregates: Dict[str, tuple] = {}
    pending = 0
    for update in updates:
        uid = user_of(update)
        state = states.get(uid)
        if state is None:
            state = states[uid] = UserState()
        for kind, row in apply(state, uid, update):
            if kind == "record":
                records.append(row)
                writer.notify(row)
            else:
                aggregates[uid] = row
        pending += 1
        if pending >= FLUSH_EVERY:
            writer.write(records, aggregates)
            records, aggregates, pending = [], {}, 0
    writer.write(records, aggregates)
    writer.write([], final_aggregates(states.items()))
    writer.close()


def run_handwritten(path: str, url: str) -> None:
    with open(path) as lines:
        consume(map(json.loads, lines), url)


# ---------------------------------------------------------------- the bank job on Bytewax

def ensure_bytewax() -> None:
    try:
        import bytewax  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", BYTEWAX], check=True)


def run_bytewax(path: str, url: str) -> None:
    import bytewax.operators as op
    from bytewax.connectors.files import FileSource
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulLogic
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    dsn = dsn_of(url)

    class Partition(StatelessSinkPartition):
        def __init__(self) -> None:
            self.writer = Writer(dsn)

        def write_batch(self, items: List[Tuple[str, tuple]]) -> None:
            records = [row for kind, row in items if kind == "record"]
            for row in records:
                self.writer.notify(row)
            aggregates = {row[0]: row for kind, row in items if kind == "aggregate"}
            # A batch may hold a user's last firing and its final aggregate: the final one wins.
            aggregates.update((row[0], row) for kind, row in items if kind == "final")
            self.writer.write(records, aggregates)

        def close(self) -> None:
            self.writer.close()

    class PostgresSink(DynamicSink):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Partition:
            return Partition()

    class UserLogic(StatefulLogic):
        """One user's state; at the end of the input, hands it on for the final aggregate."""

        def __init__(self) -> None:
            self.state = UserState()
            self.uid: Optional[str] = None

        def on_item(self, update: Dict[str, Any]) -> Tuple[List[Tuple[str, Any]], bool]:
            self.uid = user_of(update)
            return apply(self.state, self.uid, update), StatefulLogic.RETAIN

        def on_eof(self) -> Tuple[List[Tuple[str, Any]], bool]:
            return [("state", (self.uid, self.state))], StatefulLogic.DISCARD

        def snapshot(self) -> UserState:
            return self.state

    def collect(held: List[Tuple[str, UserState]], final: Tuple[str, UserState]) -> List[Tuple[str, UserState]]:
        held.append(final)
        return held

    flow = Dataflow("bank")
    lines = op.input("read", flow, FileSource(path, batch_size=FLUSH_EVERY))
    keyed = op.key_on("by_user", op.map("parse", lines, json.loads), user_of)
    fired = op.stateful("state", keyed, lambda resumed: UserLogic())
    split = op.branch("states", op.map("unkey", fired, lambda pair: pair[1]), lambda item: item[0] == "state")
    # The input's clock needs every user's: their final states meet under one key at the end.
    ended = op.fold_final("end", op.key_on("at_end", op.map("state_of", split.trues, lambda item: item[1]),
                                                      lambda _: "end"), list, collect)
    finals = op.flat_map("final_aggregates", ended,
                         lambda pair: [("final", row) for row in final_aggregates(pair[1]).values()])
    firings = op.merge("firings", split.falses, finals)
    op.output("write", firings, PostgresSink())
    run_main(flow)


# ---------------------------------------------------------------- the project

def run_project(path: str, url: str) -> None:
    from contextlib import redirect_stdout

    from pipelines.__main__ import main
    with tempfile.TemporaryDirectory() as dead, redirect_stdout(io.StringIO()):
        code = main(["run", "--definitions", os.path.join(ROOT, "examples", "bank.py"), "--input", path,
                     "--database-url", url, "--create-tables", "--dead-letters", dead])
    if code:
        raise SystemExit(f"project run failed ({code})")


RUNNERS = {"project": run_project, "handwritten": run_handwritten, "bytewax": run_bytewax}


def one(name: str, path: str, url: str) -> None:
    """Runs one implementation in this (fresh) process; prints its seconds and peak RSS (MB)."""
    if name == "project":
        import apache_beam  # noqa: F401  (imports are not timed, for any implementation)
        import pipelines.run  # noqa: F401
    elif name == "bytewax":
        import bytewax.operators  # noqa: F401
    import psycopg2  # noqa: F401
    started = time.perf_counter()
    RUNNERS[name](path, url)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# ---------------------------------------------------------------- driver

def tables(dsn: str) -> Tuple[collections.Counter, Dict[str, Tuple[int, float]]]:
    import psycopg2
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT uuid, full_name, title FROM user_records")
        records = collections.Counter(cursor.fetchall())
        cursor.execute("SELECT user_id, count, total FROM user_txn_aggregates")
        aggregates = {u: (c, round(t, 6)) for u, c, t in cursor.fetchall()}
    connection.close()
    return records, aggregates


def reset(dsn: str) -> None:
    import psycopg2
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor:
        cursor.execute(DROP)
    connection.commit()
    connection.close()


def differences(expected: Any, found: Any) -> str:
    records, aggregates = expected
    their_records, their_aggregates = found
    lines = []
    if records != their_records:
        lines.append(f"user_records: {sum(records.values())} vs {sum(their_records.values())} rows; "
                     f"missing {list((records - their_records).items())[:3]}, "
                     f"extra {list((their_records - records).items())[:3]}")
    if aggregates != their_aggregates:
        keys = [k for k in set(aggregates) | set(their_aggregates) if aggregates.get(k) != their_aggregates.get(k)]
        lines.append(f"user_txn_aggregates: {len(keys)} rows differ, e.g. "
                     + ", ".join(f"{k}: {aggregates.get(k)} vs {their_aggregates.get(k)}" for k in keys[:3]))
    return "; ".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--server", default=SERVER, help="a PostgreSQL URL; the bench makes its own database there")
    parser.add_argument("--one", nargs=3, metavar=("IMPLEMENTATION", "INPUT", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(*args.one)
        return
    if "bytewax" in args.only:
        ensure_bytewax()
    import psycopg2
    from psycopg2 import sql
    database = f"bench_{secrets.token_hex(4)}"
    admin = psycopg2.connect(dsn_of(args.server))
    admin.autocommit = True
    admin.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    url = args.server.rsplit("/", 1)[0] + "/" + database
    dsn = dsn_of(url)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    best: Dict[Tuple[str, int], Tuple[float, float]] = {}
    counts: Dict[int, int] = {}
    try:
        with tempfile.TemporaryDirectory() as work:
            for entities in args.entities:
                path = os.path.join(work, f"bank-{entities}.jsonl")
                subprocess.run([sys.executable, "-m", "pipelines", "generate", "--definitions",
                                os.path.join(ROOT, "examples", "bank.py"), "--entities", str(entities),
                                "--out", path], check=True, capture_output=True, env=env, cwd=ROOT)
                with open(path) as f:
                    counts[entities] = sum(1 for _ in f)
                reference = None
                for round_ in range(args.rounds):
                    shift = round_ % len(args.only)
                    for name in args.only[shift:] + args.only[:shift]:
                        reset(dsn)
                        output = subprocess.run([sys.executable, __file__, "--one", name, path, url], check=True,
                                                capture_output=True, text=True, env=env, cwd=ROOT)
                        measured = json.loads(output.stdout.strip().splitlines()[-1])
                        found = tables(dsn)
                        if reference is None:
                            reference = found
                        elif found != reference:
                            raise SystemExit(f"{name}, {entities} entities: tables differ from the first run's: "
                                             f"{differences(reference, found)}")
                        seconds, rss = measured["seconds"], measured["rss_mb"]
                        held = best.get((name, entities))
                        best[(name, entities)] = (min(seconds, held[0]) if held else seconds,
                                                  max(rss, held[1]) if held else rss)
                        print(f"{entities} entities, round {round_ + 1}, {name}: {counts[entities] / seconds:,.0f} "
                              f"updates/s, peak RSS {rss:,.0f} MB (tables equal)", file=sys.stderr, flush=True)
    finally:
        reset(dsn)
        admin.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(database)))
        admin.close()
    for (name, entities), (seconds, rss) in best.items():
        print(f"{name}_updates_per_s_{entities}: {counts[entities] / seconds:.0f}")
        print(f"{name}_peak_rss_mb_{entities}: {rss:.0f}")
    for entities in args.entities:
        if ("project", entities) not in best:
            continue
        project_s, project_rss = best[("project", entities)]
        for peer in ("bytewax", "handwritten"):
            if (peer, entities) in best:
                print(f"peers_vs_{peer}_{entities}: {best[(peer, entities)][0] / project_s:.2f}")
                print(f"peers_rss_vs_{peer}_{entities}: {project_rss / best[(peer, entities)][1]:.2f}")


if __name__ == "__main__":
    main()
