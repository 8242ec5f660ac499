"""The window clock: "now" for ``after()``/``before()`` is the stream's event-time clock.

TestStream runs with watermark advances at real instants: an entity whose rows leave
(or enter) a window fires again when the watermark passes that instant, with no new
update; the end of the input (watermark +infinity) leaves windows as of the data.
"""
from datetime import datetime, timedelta, timezone
from typing import Optional

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from sinks import DataFrame, FeatureTime, Primary, after, before, features, sink
from transforms.assemble import Assemble

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
MS = timedelta(milliseconds=1)


def day(days: float) -> datetime:
    return T0 + timedelta(days=days)


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def transfer(tid: str, user: str, when: datetime, status: str = "ok", amount: float = 1.0,
             settled: Optional[datetime] = None) -> dict:
    update = {"transfer.id": tid, "transfer.user_id": user, "transfer.status": status,
              "transfer.amount": amount, "transfer.created_at": when.isoformat()}
    if settled is not None:
        update["transfer.settled_at"] = settled.isoformat()
    return update


def user(uid: str, when: datetime) -> dict:
    return {"user.uuid": uid, "user.full_name": uid.upper(), "user.ts": when.isoformat()}


def stamped(update: dict) -> TimestampedValue:
    times = [v for k, v in update.items() if k.endswith((".ts", ".created_at"))]
    return TimestampedValue(update, Timestamp(micros=micros(datetime.fromisoformat(times[0]))))


_SEEN: list = []


def _collect(element, name):
    _SEEN.append((name, element))


def run_stream(sinks, steps, **options):
    """``steps``: lists of updates (added together) and datetimes (watermark advances);
    returns ``(step index, sink name, key, update)`` for every firing, in order."""
    stream = TestStream()
    for step in steps:
        if isinstance(step, datetime):
            stream.advance_watermark_to(Timestamp(micros=micros(step)))
        else:
            stream.add_elements([stamped(update) for update in step])
    stream.advance_watermark_to_infinity()
    _SEEN.clear()
    pipeline = beam.Pipeline("BundleBasedDirectRunner")
    outputs = pipeline | stream | Assemble(sinks, **options)
    for sink_fn in sinks:
        outputs[sink_fn.spec.name] | f"Collect[{sink_fn.spec.name}]" >> beam.Map(_collect, sink_fn.spec.name)
    pipeline.run().wait_until_finish()
    return list(_SEEN)


def run_batch(sinks, updates, runner=None, **options):
    _SEEN.clear()
    pipeline = beam.Pipeline(runner=runner or FnApiRunner())
    outputs = pipeline | beam.Create(updates, reshuffle=False) | Assemble(sinks, **options)
    for sink_fn in sinks:
        outputs[sink_fn.spec.name] | f"Collect[{sink_fn.spec.name}]" >> beam.Map(_collect, sink_fn.spec.name)
    pipeline.run().wait_until_finish()
    return list(_SEEN)


def ids(update: dict, sink_fn, parameter: str) -> list:
    ref = next(i.ref for i in sink_fn.spec.inputs if i.parameter == parameter)
    return sorted(row["transfer.id"] for row in update[parameter].frame(ref))


def last_per_key(seen, sink_fn, parameter):
    last = {}
    for name, (key, update) in seen:
        if name == sink_fn.spec.name:
            last[key] = ids(update, sink_fn, parameter)
    return last


def declare():
    @features
    class User:
        uuid: Primary[str]
        full_name: str
        ts: FeatureTime
        transfers: "DataFrame[Transfer]"

    @features
    class Transfer:
        id: str
        user_id: User.uuid
        status: str
        amount: float
        created_at: FeatureTime
        settled_at: Optional[datetime]

    return User, Transfer


def test_a_quiet_users_count_decays_when_the_watermark_passes_in_the_same_advance(registry):
    User, Transfer = declare()

    @sink
    def recent(uid: User.uuid, txns: User.transfers[after(days_ago=60)]):
        pass

    seen = run_stream([recent], [
        [user("u1", day(0)), transfer("t1", "u1", day(0))],
        [user("u2", day(10)), transfer("t2", "u2", day(10))],
        day(10),
        [transfer("t3", "u2", day(61))],
        day(60),                   # t1 is exactly 60 days old: still counted
        [transfer("t4", "u2", day(61))],
        day(60) + MS,              # now it has left u1's window
        [transfer("t5", "u2", day(62))],
    ])
    u1 = [(ids(update, recent, "txns"), update["txns"].now) for name, (key, update) in seen if key == "u1"]
    assert u1 == [([], micros(day(0))), (["t1"], micros(day(0))), ([], micros(day(60)) + 1)]
    # The decay fired in the advance past day 60 (after t4, added before it), before t5 (added
    # after it) reached u2, and not in the advance to day 60.
    order = [(key, ids(update, recent, "txns"), update["txns"].now) for _, (key, update) in seen]
    decay = order.index(("u1", [], micros(day(60)) + 1))
    assert order[decay - 1][:2] == ("u2", ["t2", "t3", "t4"])
    assert order[decay + 1][:2] == ("u2", ["t2", "t3", "t4", "t5"])


def test_a_drain_leaves_windows_as_of_the_last_data(registry):
    User, Transfer = declare()

    @sink
    def recent(uid: User.uuid, txns: User.transfers[after(days_ago=60)]):
        pass

    seen = run_stream([recent], [
        [user("u1", day(0)), transfer("t1", "u1", day(0)), transfer("t2", "u1", day(30))],
        [user("u2", day(70)), transfer("t3", "u2", day(70))],
        day(5),
    ])
    # At the end the watermark jumps to +infinity; the clock stops at the data (day 70): t1 has
    # left u1's window (at day 60 + 1 µs), t2 has not, and t3 is still u2's.
    assert last_per_key(seen, recent, "txns") == {"u1": ["t2"], "u2": ["t3"]}
    last_u1 = [update for _, (key, update) in seen if key == "u1"][-1]
    assert last_u1["txns"].now == micros(day(60)) + 1


def test_as_of_sets_the_instant_a_bounded_run_ends_at(registry):
    User, Transfer = declare()

    @sink
    def recent(uid: User.uuid, txns: User.transfers[after(days_ago=60)]):
        pass

    updates = [user("u1", day(0)), transfer("t1", "u1", day(0)), transfer("t2", "u1", day(30))]
    assert last_per_key(run_batch([recent], updates), recent, "txns") == {"u1": ["t1", "t2"]}
    assert last_per_key(run_batch([recent], updates, as_of=day(75)), recent, "txns") == {"u1": ["t2"]}
    assert last_per_key(run_batch([recent], updates, as_of=day(100)), recent, "txns") == {"u1": []}


def test_before_after_on_an_index_and_windows_inside_or_follow_the_clock(registry):
    # Defect 2: only a required after() on FeatureTime was recomputed as "now" moved.
    User, Transfer = declare()

    @sink
    def old(uid: User.uuid, txns: User.transfers[before(days_ago=30)]):
        pass

    @sink
    def settled(uid: User.uuid, txns: User.transfers[after(days_ago=3, index=Transfer.settled_at)]):
        pass

    @sink
    def either(uid: User.uuid, txns: User.transfers[(Transfer.status == "big") | after(days_ago=10)]):
        pass

    updates = [
        user("u1", day(0)),
        transfer("t1", "u1", day(0), settled=day(2)),
        transfer("t2", "u1", day(5), status="big", settled=day(32)),
        user("u2", day(0)), transfer("t3", "u2", day(33)),          # moves the data clock to day 33
    ]
    for order in (updates, updates[::-1]):
        seen = run_batch([old, settled, either], order)
        assert last_per_key(seen, old, "txns")["u1"] == ["t1"]          # at least 30 days old at day 33
        assert last_per_key(seen, settled, "txns")["u1"] == ["t2"]      # settled in the 3 days up to day 33
        assert last_per_key(seen, either, "txns")["u1"] == ["t2"]       # big; t1 left the window at day 10


def test_an_after_window_on_an_index_has_an_upper_bound(registry):
    # Defect 3: rows whose settled_at is later than now were counted.
    User, Transfer = declare()

    @sink
    def settled(uid: User.uuid, txns: User.transfers[after(days_ago=3, index=Transfer.settled_at)]):
        pass

    seen = run_stream([settled], [
        [user("u1", day(0)), transfer("t1", "u1", day(0), settled=day(20))],
        [user("u2", day(10)), transfer("t2", "u2", day(10))],
    ])
    u1 = [(ids(update, settled, "txns"), update["txns"].now) for _, (key, update) in seen if key == "u1"]
    # Not settled as of day 0 nor as of the data's end (day 10): never counted.
    assert all(found == [] for found, _ in u1)


def test_a_bounded_run_evaluates_windows_once_at_the_end_as_of_the_data(registry):
    User, Transfer = declare()

    @sink
    def recent(uid: User.uuid, txns: User.transfers[after(days_ago=10)]):
        pass

    updates = [user("u1", day(0))] + [transfer(f"t{i}", "u1", day(i)) for i in range(20)]
    updates += [user("u2", day(40))]
    for runner in (FnApiRunner(), beam.runners.direct.direct_runner.BundleBasedDirectRunner()):
        seen = run_batch([recent], updates, runner=runner)
        u1 = [(ids(update, recent, "txns"), update["txns"].now) for _, (key, update) in seen if key == "u1"]
        # 21 firings from updates, then one at the end of the input, as of its final clock (day 40),
        # not one per row leaving, and not at +infinity.
        assert len(u1) == 21 + 1
        assert u1[-2] == (sorted(f"t{i}" for i in range(9, 20)), micros(day(19)))
        assert u1[-1] == ([], micros(day(40)))


def test_a_stream_fires_once_per_change_the_watermark_passes(registry):
    User, Transfer = declare()

    @sink
    def recent(uid: User.uuid, txns: User.transfers[after(days_ago=10)]):
        pass

    seen = run_stream([recent], [
        [user("u1", day(0))] + [transfer(f"t{i}", "u1", day(i)) for i in range(5)],
        [user("u2", day(30))],
        day(30),
    ])
    u1 = [(ids(update, recent, "txns"), update["txns"].now) for _, (key, update) in seen if key == "u1"]
    assert u1[6:] == [([f"t{j}" for j in range(i + 1, 5)], micros(day(i + 10)) + 1) for i in range(5)]
