"""Test helpers: a clock that follows ``TestStream.advance_processing_time``.

A DoFn cannot read the runner's processing time, and the DirectRunner's test
clock starts at 0, so a DoFn that reads ``time.time()`` arms timers that never
fire under ``TestStream``. Pass :func:`direct_runner_test_clock` as the ``clock`` of
:class:`transforms.buffer.Buffer` (or of a sink pipeline) instead: it reads
the clock that the DirectRunner advances for ``TestStream`` events.
"""
from __future__ import annotations

from apache_beam.runners.direct import clock as direct_clock
from apache_beam.runners.direct import direct_runner

_latest: list = []


class _TrackedTestClock(direct_clock.TestClock):
    def __init__(self, current_time=None) -> None:
        super().__init__(current_time)
        _latest[:] = [self]


# The DirectRunner makes one TestClock per run of a pipeline that uses TestStream.
direct_runner.TestClock = _TrackedTestClock  # type: ignore[misc]


def direct_runner_test_clock() -> float:
    """Processing time, in seconds, of the DirectRunner pipeline with a TestStream running now."""
    if not _latest:
        raise RuntimeError("direct_runner_test_clock() read outside a DirectRunner run with a TestStream")
    return _latest[0].time()
