"""Pacing throughput and flush lateness.

1. Throughput on the FnApiRunner: updates/s through ``Buffer`` (the seed's
   ``buffer_size=100, debounce="100ms", max_delay="1s"``) against a floor of
   the same shape — same generated source and keys into a stateful DoFn that
   only counts — measured in the same run. Target ratio >= 0.6.
2. Lateness on a real clock: how long after its due time each ``max_delay``
   and ``debounce`` flush comes out, p50 and p99, on the BundleBasedDirectRunner
   (the only local runner that honours processing-time timers). That runner
   takes no real-time source (``PeriodicImpulse`` fails there), so updates come
   from a ``TestStream`` whose clock is the wall clock: advancing it sleeps. The
   due time counts from when an update left the source.

    python bench/pacing.py [--updates 200000] [--keys 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import apache_beam as beam  # noqa: E402
from apache_beam import coders  # noqa: E402
from apache_beam.runners.direct import direct_runner  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402
from apache_beam.testing.test_stream import TestStream  # noqa: E402
from apache_beam.transforms.combiners import CountCombineFn  # noqa: E402
from apache_beam.transforms.userstate import CombiningValueStateSpec  # noqa: E402

from transforms.buffer import Buffer  # noqa: E402

SEED_PACING = dict(buffer_size=100, debounce=timedelta(milliseconds=100), max_delay=timedelta(seconds=1))


class CountOnly(beam.DoFn):
    """The floor: a stateful DoFn that only counts per key."""

    COUNT = CombiningValueStateSpec("count", coders.VarIntCoder(), CountCombineFn())

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        count.add(1)


def generate(updates: int, keys: int):
    def expand(chunk: int):
        start = chunk * 10_000
        for i in range(start, min(start + 10_000, updates)):
            yield i % keys, {"uid": f"user-{i}", "amount": i * 0.5}
    return beam.Create(range((updates + 9_999) // 10_000)) | beam.FlatMap(expand)


def timed_run(build) -> float:
    pipeline = beam.Pipeline(runner=FnApiRunner())
    build(pipeline)
    start = time.perf_counter()
    pipeline.run().wait_until_finish()
    return time.perf_counter() - start


def throughput(updates: int, keys: int, rounds: int = 3) -> tuple[float, float]:
    """Best of ``rounds`` alternating runs of each pipeline, in updates/s: (paced, floor)."""
    floor, paced = [], []
    for _ in range(rounds):
        floor.append(timed_run(lambda p: p | "Source" >> generate(updates, keys) | beam.ParDo(CountOnly())))
        paced.append(timed_run(lambda p: p | "Source" >> generate(updates, keys) | Buffer(**SEED_PACING)))
    return updates / min(paced), updates / min(floor)


class _WallClock:
    """Stands in for the DirectRunner's TestStream clock: real time, and advancing really waits."""

    def __init__(self, current_time=None) -> None:
        pass

    def time(self) -> float:
        return time.time()

    def advance_time(self, advance_by) -> None:
        time.sleep(float(advance_by))


class _Stamp(beam.DoFn):
    def process(self, element):
        yield 0, time.time()


class _Record(beam.DoFn):
    """Appends "flush time, first arrival, last arrival" per batch to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, batch):
        with open(self.path, "a") as out:
            out.write(f"{time.time()} {min(batch[1])} {max(batch[1])}\n")


def lateness(option: str, updates: int, interval: float, burst: int, pause: float, path: str) -> list:
    """Flush lateness (s) of ``Buffer(**{option: 0.3 s})`` over a stream arriving in real time.

    One update every ``interval`` seconds, and after every ``burst`` updates a
    ``pause``. Time advances in 10 ms steps, so a due timer can fire between them.
    """
    delay, step = 0.3, 0.01
    events = TestStream()
    for i in range(updates):
        events = events.add_elements([i])
        wait = interval + (pause if (i + 1) % burst == 0 else 0.0)
        for _ in range(round(wait / step)):
            events = events.advance_processing_time(step)
    events = events.advance_watermark_to_infinity()
    direct_runner.TestClock = _WallClock
    with beam.Pipeline(runner="DirectRunner") as p:
        (p | events
           | beam.ParDo(_Stamp())
           | Buffer(**{option: timedelta(seconds=delay)})
           | beam.ParDo(_Record(path)))
    late = []
    with open(path) as lines:
        rows = sorted(tuple(map(float, line.split())) for line in lines)
    for flushed, first, last in rows[:-1]:  # the last flush is the end-of-input flush
        late.append(flushed - ((first if option == "max_delay" else last) + delay))
    return late


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=4)
    args = parser.parse_args()

    paced, floor = throughput(args.updates, args.keys)
    print(f"pacing transform: {paced:,.0f} updates/s; floor (count-only stateful DoFn): {floor:,.0f} updates/s")

    with tempfile.TemporaryDirectory() as tmp:
        # max_delay: an update every 20 ms, never a pause; debounce: 10 updates, then 0.5 s quiet.
        max_delay_late = lateness("max_delay", 300, 0.02, 10**9, 0.0, os.path.join(tmp, "m.txt"))
        debounce_late = lateness("debounce", 300, 0.02, 10, 0.5, os.path.join(tmp, "d.txt"))
    for name, values in (("max_delay", max_delay_late), ("debounce", debounce_late)):
        print(f"{name} flushes: {len(values)}, lateness p50 {1000 * statistics.median(values):.1f} ms, "
              f"p99 {1000 * percentile(values, 0.99):.1f} ms")

    print(f"pacing_updates_per_s: {paced:.0f}")
    print(f"floor_updates_per_s: {floor:.0f}")
    print(f"pacing_vs_floor: {paced / floor:.2f}")
    print(f"max_delay_lateness_p50_ms: {1000 * statistics.median(max_delay_late):.1f}")
    print(f"max_delay_lateness_p99_ms: {1000 * percentile(max_delay_late, 0.99):.1f}")
    print(f"debounce_lateness_p50_ms: {1000 * statistics.median(debounce_late):.1f}")
    print(f"debounce_lateness_p99_ms: {1000 * percentile(debounce_late, 0.99):.1f}")


if __name__ == "__main__":
    main()
