"""``Buffer``: a sink's pacing — ``buffer_size``, ``debounce`` and ``max_delay`` — as state and timers.

Per key, updates enter a buffer that is flushed, as one ``(key, [values])``
batch in arrival order, at the earliest of:

1. ``buffer_size``: the buffer holds that many updates (exactly that many are flushed);
2. ``debounce`` D: D has passed since the last update entered, with no newer one;
3. ``max_delay`` M: M has passed since the first update entered the non-empty buffer;
4. the end of a bounded input, or a drain: everything left is flushed.

Rules 2 and 3 share one processing-time timer. It is armed when the buffer
becomes non-empty and is not reset per update (that halves throughput, see
``shared/notes/beam-facts.md``): when it fires before the current due time it
re-arms itself for that time. Rule 4 is an event-time timer at the end of the
window, because the DirectRunner drops pending processing-time timers at the
end of a bounded input.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Callable, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec, CombiningValueStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer,
)

from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

Clock = Callable[[], float]


def _seconds(value: Optional[timedelta]) -> Optional[float]:
    return None if value is None else value.total_seconds()


class _BufferFn(beam.DoFn):
    """The stateful DoFn behind :class:`Buffer`."""

    BUFFER = BagStateSpec("buffer", coders.TupleCoder([coders.VarIntCoder(), coders.FastPrimitivesCoder()]))
    COUNT = CombiningValueStateSpec("count", coders.VarIntCoder(), CountCombineFn())
    FIRST_AT = ReadModifyWriteStateSpec("first_at", coders.FloatCoder())
    LAST_AT = ReadModifyWriteStateSpec("last_at", coders.FloatCoder())
    KEY = ReadModifyWriteStateSpec("key", coders.FastPrimitivesCoder())
    LATEST = ReadModifyWriteStateSpec("latest", coders.VarIntCoder())
    DUE = TimerSpec("due", TimeDomain.REAL_TIME)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(self, buffer_size: Optional[int], debounce: Optional[float],
                 max_delay: Optional[float], clock: Clock) -> None:
        self.buffer_size = buffer_size
        self.debounce = debounce
        self.max_delay = max_delay
        self.clock = clock

    def process(self, element: Tuple[Any, Any],
                window=beam.DoFn.WindowParam,
                buffer=beam.DoFn.StateParam(BUFFER),
                count=beam.DoFn.StateParam(COUNT),
                first_at=beam.DoFn.StateParam(FIRST_AT),
                last_at=beam.DoFn.StateParam(LAST_AT),
                key_state=beam.DoFn.StateParam(KEY),
                latest=beam.DoFn.StateParam(LATEST),
                due=beam.DoFn.TimerParam(DUE),
                end=beam.DoFn.TimerParam(END),
                timestamp=beam.DoFn.TimestampParam) -> Iterable[Tuple[Any, List[Any]]]:
        key, value = element
        newest = latest.read()
        if newest is None or timestamp.micros > newest:
            latest.write(timestamp.micros)
        seen = count.read()
        buffer.add((seen, value))
        count.add(1)
        if self.buffer_size is not None and seen + 1 >= self.buffer_size:
            yield from self._flush(key, buffer, count, latest, due)
            return
        if self.debounce is not None or self.max_delay is not None:
            now = self.clock()
            last_at.write(now)
            if seen == 0:
                first_at.write(now)
                due.set(self._due(now, now))
        if seen == 0:
            key_state.write(key)
            end.set(window.end)

    @on_timer(DUE)
    def on_due(self,
               buffer=beam.DoFn.StateParam(BUFFER),
               count=beam.DoFn.StateParam(COUNT),
               first_at=beam.DoFn.StateParam(FIRST_AT),
               last_at=beam.DoFn.StateParam(LAST_AT),
               key_state=beam.DoFn.StateParam(KEY),
               latest=beam.DoFn.StateParam(LATEST),
               due=beam.DoFn.TimerParam(DUE)) -> Iterable[Tuple[Any, List[Any]]]:
        if not count.read():
            return
        deadline = self._due(first_at.read(), last_at.read())
        if self.clock() < deadline:
            # Updates arrived since the timer was armed: wait for the quiet period to end.
            due.set(deadline)
            return
        yield from self._flush(key_state.read(), buffer, count, latest, due)

    @on_timer(END)
    def on_end(self,
               buffer=beam.DoFn.StateParam(BUFFER),
               count=beam.DoFn.StateParam(COUNT),
               key_state=beam.DoFn.StateParam(KEY),
               latest=beam.DoFn.StateParam(LATEST),
               due=beam.DoFn.TimerParam(DUE)) -> Iterable[Tuple[Any, List[Any]]]:
        if count.read():
            yield from self._flush(key_state.read(), buffer, count, latest, due)

    def _due(self, first: float, last: float) -> float:
        candidates = []
        if self.debounce is not None:
            candidates.append(last + self.debounce)
        if self.max_delay is not None:
            candidates.append(first + self.max_delay)
        return min(candidates)

    def _flush(self, key: Any, buffer: Any, count: Any, latest: Any,
               due: Any) -> Iterable[TimestampedValue]:
        values = [value for _, value in sorted(buffer.read(), key=lambda item: item[0])]
        # A batch is stamped with its newest update's event time, not with the time a timer fired.
        stamp = Timestamp(micros=latest.read())
        buffer.clear()
        count.clear()
        latest.clear()
        due.clear()
        yield TimestampedValue((key, values), stamp)


class Buffer(beam.PTransform):
    """Batch a keyed ``PCollection`` of ``(key, value)`` into ``(key, [values])``, paced per key.

    Args:
      buffer_size: flush as soon as this many values are buffered.
      debounce: flush once no value has arrived for this long.
      max_delay: flush at the latest this long after the first buffered value arrived.
      clock: seconds since the epoch on the runner's processing-time clock; ``time.time`` by
        default. Tests under ``TestStream`` pass :func:`transforms.testing.direct_runner_test_clock`.

    At least one option must be set. Whatever is buffered at the end of a bounded input (or on
    drain) is flushed then; nothing is dropped. Values keep their arrival order within a batch.
    """

    def __init__(self, buffer_size: Optional[int] = None, debounce: Optional[timedelta] = None,
                 max_delay: Optional[timedelta] = None, clock: Optional[Clock] = None) -> None:
        super().__init__()
        if buffer_size is None and debounce is None and max_delay is None:
            raise ValueError("Buffer needs buffer_size, debounce or max_delay")
        if buffer_size is not None and buffer_size < 1:
            raise ValueError(f"buffer_size must be positive, not {buffer_size}")
        self._fn = _BufferFn(buffer_size, _seconds(debounce), _seconds(max_delay), clock or time.time)

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "Buffer" >> beam.ParDo(self._fn)
