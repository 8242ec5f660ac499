"""Faults during ``python -m pipelines run`` on the bank example, PostgreSQL behind it.

(a) a TCP proxy between the pipeline and the server cuts every connection and refuses new ones
for 5 s, again and again while the run lasts; (b) the server (a throwaway cluster) restarts
while the run writes (behind a slow link, so the writes take seconds, not a 0.2 s burst).
Each fault must have cost the writers retries, or it struck nothing; afterwards every appended
row is there (duplicates are counted and reported), and every upserted aggregate equals an
independent computation over the input.
"""
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from pipelines.__main__ import main
from tests.servers import TcpProxy, ThrowawayPostgres
from tests.test_cli import BANK, read_jsonl, summary_column

ENTITIES = 3000


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "bank.jsonl"
    assert main(["generate", "--definitions", BANK, "--entities", str(ENTITIES), "--out", str(path)]) == 0
    return path


def expected_aggregates(updates) -> dict:
    """Per user: count and sum of successful transfers in the 60 days up to the input's final
    clock, its latest event time (windows are evaluated on the stream's clock)."""
    latest, transfers = {}, defaultdict(list)
    for u in updates:
        user = u.get("user.uuid") or u.get("account.user_id") or u.get("transfer.user_id")
        at = datetime.fromisoformat(u.get("user.ts") or u.get("account.ts") or u.get("transfer.created_at"))
        latest[user] = max(latest.get(user, at), at)
        if "transfer.id" in u:
            transfers[user].append((at, u["transfer.status"], u["transfer.amount"]))
    result = {}
    now = max(latest.values())
    for user in latest:
        amounts = [a for at, status, a in transfers[user]
                   if status == "successful" and now - timedelta(days=60) <= at <= now]
        result[user] = (len(amounts), sum(amounts))
    return result


def wait_for_writes(url, done, table) -> bool:
    """Waits until the run has written its first rows to ``table`` (so the fault strikes mid-write)."""
    return _wait_until(url, done, f"SELECT count(*) FROM {table}")


def _wait_until(url, done, query) -> bool:
    """Polls ``query`` until it answers something true; False if the run ends first."""
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        while not done.wait(0.05):
            try:
                with engine.connect() as connection:
                    if connection.execute(sa.text(query)).scalar():
                        return True
            except sa.exc.DBAPIError:
                continue   # not created yet, or the server is restarting
        return False
    finally:
        engine.dispose()


def run_through(url, stream, fault_loop, capsys, direct_url=None):
    """Runs the bank example writing to ``url`` while ``fault_loop`` strikes; reads the result
    straight from the server (``direct_url``), not through the fault."""
    engine = sa.create_engine(direct_url or url, pool_pre_ping=True)
    from examples.bank import UserRecord, UserTxnAggregate
    for model in (UserRecord, UserTxnAggregate):
        model.__table__.drop(engine, checkfirst=True)
    done = threading.Event()
    striker = threading.Thread(target=fault_loop, args=(done,))
    striker.start()
    try:
        code = main(["run", "--definitions", BANK, "--input", str(stream), "--database-url", url,
                     "--create-tables"])
    finally:
        done.set()
        striker.join()
    out = capsys.readouterr().out
    with engine.connect() as connection:
        names = Counter(connection.execute(sa.select(UserRecord.uuid)).scalars())
        stored = {r.user_id: (r.count, r.total) for r in connection.execute(sa.select(UserTxnAggregate.__table__))}
    for model in (UserRecord, UserTxnAggregate):
        model.__table__.drop(engine, checkfirst=True)
    engine.dispose()
    return code, out, names, stored


def check(code, out, names, stored, stream):
    assert code == 0
    retries = sum(summary_column(out, sink, "write retries")
                  for sink in ("user_data_export", "aggregate_user_transactions"))
    print(f"write retries: {retries}")
    assert retries > 0, "no fault struck while the run wrote: nothing was tested"
    users = {f"u{i}" for i in range(ENTITIES)}
    assert set(names) == users, "appended rows are missing"
    duplicates = sum(names.values()) - len(names)
    print(f"append duplicates after faults: {duplicates} of {sum(names.values())} rows")
    assert duplicates <= 5000, "more than one batch's worth of duplicates"
    expected = expected_aggregates(read_jsonl(stream))
    assert set(stored) == users
    wrong = {u: (stored[u], want) for u, want in expected.items()
             if stored[u][0] != want[0] or abs(stored[u][1] - want[1]) > 1e-6}
    assert not wrong


def test_connections_cut_for_five_seconds_again_and_again(postgres_url, stream, capsys):
    url = sa.make_url(postgres_url)
    proxy = TcpProxy(url.host, url.port or 5432)

    def cut_repeatedly(done):
        if wait_for_writes(postgres_url, done, "user_txn_aggregates"):
            for _ in range(3):
                proxy.cut(5)
                if done.wait(2.0):
                    return

    try:
        through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        check(*run_through(through_proxy, stream, cut_repeatedly, capsys, direct_url=postgres_url), stream)
        print(f"proxy cuts during the run: {proxy.cuts}")
        assert proxy.cuts >= 1
    finally:
        proxy.close()


def test_server_restarted_while_the_run_writes(stream, capsys):
    server = ThrowawayPostgres()
    url = sa.make_url(server.url)
    # 512 KB/s towards the server: the ~50,000 rows take seconds to write, so a restart that
    # waits for the first rows lands among the writes still to come.
    proxy = TcpProxy(url.host, url.port, bytes_per_second=512 * 1024)
    struck = []

    def restart_while_writing(done):
        if not wait_for_writes(server.url, done, "user_txn_aggregates"):
            return
        for _ in range(3):
            if done.is_set():
                return
            stored = _count(server.url, "user_txn_aggregates")
            server.restart()
            struck.append((stored, done.is_set()))
            if done.wait(1.0):
                return

    try:
        through_proxy = url.set(port=proxy.port).render_as_string(False)
        check(*run_through(through_proxy, stream, restart_while_writing, capsys, direct_url=server.url), stream)
        print(f"restarts (aggregates stored before each, run over by its end): {struck}")
        assert struck and not struck[0][1], "the first restart did not strike while the run went on"
        assert struck[0][0] < ENTITIES, "every aggregate was written before the restart"
    finally:
        proxy.close()
        server.close()


def _count(url, table) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    finally:
        engine.dispose()
