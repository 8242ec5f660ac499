"""``Buffer``: a sink's pacing — ``buffer_size``, ``debounce`` and ``max_delay`` — as state and timers.

Per key, updates enter a buffer that is flushed, as one ``(key, [values])``
batch in arrival order, at the earliest of:

1. ``buffer_size``: the buffer holds that many updates (exactly that many are flushed);
2. ``debounce`` D: D has passed since the last update entered, with no newer one;
3. ``max_delay`` M: M has passed since the first update entered the non-empty buffer;
4. the end of a bounded input, or a drain: everything left is flushed.

On a bounded input rules 2 and 3 do not apply: they pace a stream by the wall clock, and a
batch runner delivers processing-time timers only between bundles (the FnApiRunner runs a
stage's whole input as one bundle), so they flush nothing the end of the input would not. Worse,
the FnApiRunner fails a run that ends with one still due in the future ("A total of 1
time-pending bundles did not execute"), measured on the bank example at 2,000,000 updates.

Rules 2 and 3 share one processing-time timer (``_BufferFn.DUE``). It is
armed when the buffer becomes non-empty and is not reset per update (that
measured, it halves throughput): when it fires before
the current due time it re-arms itself for that time. Rule 4 is an event-time
timer at the end of the window (``_BufferFn.END``), because the DirectRunner
drops pending processing-time timers at the end of a bounded input.

Before the stateful step, values are grouped per key within a bundle
(``GroupWithinBundle``, like ``BatchElements``), so state and timers are
paid per group rather than per value; an update "enters the buffer" when its
group reaches the stateful step, which on a streaming runner is the end of a
bundle of milliseconds.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Callable, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders, typehints
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.group_within_bundle import MAX_GROUP, GroupWithinBundle
from transforms.timer_names import with_timers_named

Clock = Callable[[], float]


def _seconds(value: Optional[timedelta]) -> Optional[float]:
    return None if value is None else value.total_seconds()


class _BufferFn(beam.DoFn):
    """The stateful DoFn behind :class:`Buffer`, fed ``(key, [values])`` groups.

    A group costs one bag append and one count update: its arrival time and
    event time travel in the bag entry, and the timers read them back only when
    they fire.
    """

    # (arrival sequence, arrival time in seconds, event timestamp in micros, values)
    BUFFER = BagStateSpec("buffer", coders.TupleCoder([
        coders.VarIntCoder(), coders.FloatCoder(), coders.VarIntCoder(),
        coders.IterableCoder(coders.FastPrimitivesCoder())]))
    COUNT = ReadModifyWriteStateSpec("count", coders.VarIntCoder())
    DUE = TimerSpec("due", TimeDomain.REAL_TIME)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(self, buffer_size: Optional[int], debounce: Optional[float],
                 max_delay: Optional[float], clock: Clock) -> None:
        self.buffer_size = buffer_size
        self.debounce = debounce
        self.max_delay = max_delay
        self.timed = debounce is not None or max_delay is not None
        self.clock = clock

    def process(self, element: Tuple[Any, List[Any]],
                timestamp=beam.DoFn.TimestampParam,
                window=beam.DoFn.WindowParam,
                buffer=beam.DoFn.StateParam(BUFFER),
                count=beam.DoFn.StateParam(COUNT),
                due=beam.DoFn.TimerParam(DUE),
                end=beam.DoFn.TimerParam(END)) -> Iterable[TimestampedValue]:
        key, values = element
        held = count.read() or 0
        now = self.clock() if self.timed else 0.0
        buffer.add((held, now, timestamp.micros, values))
        count.write(held + len(values))
        if self.buffer_size is not None and held + len(values) >= self.buffer_size:
            yield from self._flush_full(key, now, buffer, count, due, end, window)
        elif held == 0:
            self._arm(now, due, end, window)

    @on_timer(DUE)
    def on_due(self,
               key=beam.DoFn.KeyParam,
               buffer=beam.DoFn.StateParam(BUFFER),
               count=beam.DoFn.StateParam(COUNT),
               due=beam.DoFn.TimerParam(DUE)) -> Iterable[TimestampedValue]:
        entries = _in_order(buffer)
        if not entries:
            return
        deadline = self._due(entries[0][1], entries[-1][1])
        if self.clock() < deadline:
            # Updates arrived since the timer was armed: wait until the new due time.
            due.set(deadline)
            return
        self._clear(buffer, count, due)
        yield _batch(key, entries)

    @on_timer(END)
    def on_end(self,
               key=beam.DoFn.KeyParam,
               buffer=beam.DoFn.StateParam(BUFFER),
               count=beam.DoFn.StateParam(COUNT),
               due=beam.DoFn.TimerParam(DUE)) -> Iterable[TimestampedValue]:
        entries = _in_order(buffer)
        if entries:
            self._clear(buffer, count, due)
            yield _batch(key, entries)

    def _arm(self, now: float, due: Any, end: Any, window: Any) -> None:
        end.set(window.end)
        if self.timed:
            due.set(self._due(now, now))

    def _due(self, first: float, last: float) -> float:
        candidates = []
        if self.debounce is not None:
            candidates.append(last + self.debounce)
        if self.max_delay is not None:
            candidates.append(first + self.max_delay)
        return min(candidates)

    def _clear(self, buffer: Any, count: Any, due: Any) -> None:
        buffer.clear()
        count.clear()
        if self.timed:
            due.clear()

    def _flush_full(self, key: Any, now: float, buffer: Any, count: Any, due: Any, end: Any,
                    window: Any) -> Iterable[TimestampedValue]:
        """Emit every full batch of exactly ``buffer_size``; keep the rest as a new buffer."""
        values, stamp = _contents(_in_order(buffer))
        self._clear(buffer, count, due)
        size = self.buffer_size
        assert size is not None
        full = len(values) - len(values) % size
        for start in range(0, full, size):
            yield TimestampedValue((key, values[start:start + size]), Timestamp(micros=stamp))
        rest = values[full:]
        if rest:
            # The rest came with the newest group, so it starts a new buffer now.
            buffer.add((0, now, stamp, rest))
            count.write(len(rest))
            self._arm(now, due, end, window)


def _in_order(buffer: Any) -> List[Tuple[int, float, int, List[Any]]]:
    return sorted(buffer.read(), key=lambda entry: entry[0])


def _contents(entries: List[Tuple[int, float, int, List[Any]]]) -> Tuple[List[Any], int]:
    """The entries' values in order, and the newest event time (micros) among them.

    A batch carries that event time, not the time a timer fired.
    """
    return [v for entry in entries for v in entry[3]], max(entry[2] for entry in entries)


def _batch(key: Any, entries: List[Tuple[int, float, int, List[Any]]]) -> TimestampedValue:
    values, stamp = _contents(entries)
    return TimestampedValue((key, values), Timestamp(micros=stamp))


class Buffer(beam.PTransform):
    """Batch a keyed ``PCollection`` of ``(key, value)`` into ``(key, [values])``, paced per key.

    Args:
      buffer_size: flush as soon as this many values are buffered.
      debounce: flush once no value has arrived for this long.
      max_delay: flush at the latest this long after the first buffered value arrived.
      clock: seconds since the epoch on the runner's processing-time clock; ``time.time`` by
        default. A live run on the DirectRunner passes :class:`pipelines.live_clock.LiveClock`.
      name: what the step's timers are named after (``transforms.timer_names``; default: the
        label it is applied under); each ``Buffer`` of a pipeline needs a name of its own.

    At least one option must be set. Whatever is buffered at the end of a bounded input (or on
    drain) is flushed then; nothing is dropped. On a bounded input only ``buffer_size`` and the
    end of the input flush. Values keep their arrival order within a batch.
    """

    def __init__(self, buffer_size: Optional[int] = None, debounce: Optional[timedelta] = None,
                 max_delay: Optional[timedelta] = None, clock: Optional[Clock] = None,
                 name: Optional[str] = None) -> None:
        super().__init__()
        if buffer_size is None and debounce is None and max_delay is None:
            raise ValueError("Buffer needs buffer_size, debounce or max_delay")
        if buffer_size is not None and buffer_size < 1:
            raise ValueError(f"buffer_size must be positive, not {buffer_size}")
        self.buffer_size, self.debounce, self.max_delay = buffer_size, debounce, max_delay
        self.clock = clock or time.time
        self.name = name
        self._max_group = min(buffer_size or MAX_GROUP, MAX_GROUP)

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        # The key's type travels through the grouping step, so state gets a deterministic key coder.
        element_type = pcoll.element_type
        key_type = element_type.tuple_types[0] if isinstance(element_type, typehints.typehints.TupleConstraint) else Any
        return (pcoll
                | "GroupWithinBundle" >> beam.ParDo(GroupWithinBundle(self._max_group)).with_output_types(
                    Tuple[key_type, Any])
                | "Buffer" >> beam.ParDo(with_timers_named(self._buffer_fn(pcoll.is_bounded), self.name or self.label)))

    def _buffer_fn(self, bounded: bool) -> _BufferFn:
        if bounded:      # paced by buffer_size and the end of the input (see the module's docstring)
            return _BufferFn(self.buffer_size, None, None, self.clock)
        return _BufferFn(self.buffer_size, _seconds(self.debounce), _seconds(self.max_delay), self.clock)
