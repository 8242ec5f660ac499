"""Sinks used by the Beam tests; module-level so that worker processes can import them."""
import asyncio
import time
from collections import Counter

from sinks import DataFrame, Primary, SQLiteSource, features, sink
from sinks.registry import Registry
from tests.sql_models import Total

registry = Registry()
attempts: Counter = Counter()
calls: list = []  # (uid, n) in call order, for single-process runners

with registry.activate():
    @features
    class Account:
        uid: Primary[str]
        n: int

    @sink
    def echo(uid: Account.uid, n: Account.n):
        return {"uid": uid, "n": n}

    @sink(buffer_size=3)
    def echo_in_threes(uid: Account.uid, n: Account.n):
        calls.append((uid, n))
        return {"uid": uid, "n": n}

    @sink(buffer_size=4, max_delay="1s")
    def batch_echo(rows: DataFrame[Account.uid, Account.n]):
        return [{"uid": r["account.uid"], "n": r["account.n"], "batch": len(rows)} for r in rows]

    @sink
    def fails_on_bad(uid: Account.uid, n: Account.n):
        if uid == "bad":
            raise ValueError(f"cannot deliver {uid}")
        return n

    @sink
    def fails_once(uid: Account.uid, n: Account.n):
        attempts[uid] += 1
        if attempts[uid] == 1:
            raise ConnectionError("first call fails")
        return n

    @sink
    async def echo_async(uid: Account.uid, n: Account.n):
        return n * 10

    @sink(integration=SQLiteSource(), upsert=True)
    def record_totals(uid: Account.uid, n: Account.n) -> Total:
        """An integration sink; tests point it at a real database with ``integration=``."""
        return None if n < 0 else Total(user_id=uid, count=n, note="x" * n)

    @sink
    def hangs_on_slow(uid: Account.uid, n: Account.n):
        if uid == "slow":
            time.sleep(30)
        return n

    @sink
    async def hangs_async_on_slow(uid: Account.uid, n: Account.n):
        if uid == "slow":
            await asyncio.sleep(30)
        return n

    @sink(integration=SQLiteSource())
    def returns_wrong_type(uid: Account.uid, n: Account.n) -> Total:
        return f"total of {uid}" if uid == "bad" else Total(user_id=uid, count=n)
