"""The processing-time clock of one live (``--follow``) run on the DirectRunner.

A DoFn cannot ask the runner for processing time. When a pipeline holds a
``TestStream`` (as a live directory source does) the DirectRunner keeps its own
``TestClock``, advanced by the stream's processing-time events, and fires
processing-time timers by that clock, so a pacing buffer must arm its timers by
it too (``time.time()`` would arm them decades ahead of a clock that starts at 0).

:class:`LiveClock` is that clock, for one run: :meth:`LiveClock.capturing` wraps
``pipeline.run()`` and, only for that call, has the DirectRunner build a
``TestClock`` that records itself under this run's id. Outside that call Beam is
left as it is, and two runs in one process read two clocks.
"""
from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator

from apache_beam.runners.direct import direct_runner

_clocks: Dict[str, Any] = {}    # run id -> that run's TestClock
_patching = threading.Lock()    # one capture at a time: the patched name is module-global


class LiveClock:
    """Seconds on the DirectRunner's processing-time clock of the run captured under this id.

    Picklable (it holds only the run id), so a pacing DoFn can hold it as its ``clock``.
    """

    def __init__(self) -> None:
        self.run_id = uuid.uuid4().hex

    def __call__(self) -> float:
        clock = _clocks.get(self.run_id)
        if clock is None:
            raise RuntimeError("LiveClock read outside the DirectRunner run it was captured for")
        return float(clock.time())

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """Within this block, the DirectRunner's next ``TestClock`` is this run's clock.

        The DirectRunner makes it in ``run()`` before its executor starts, so it is known
        before any DoFn can read it."""
        run_id = self.run_id
        original = direct_runner.TestClock

        class _RecordedTestClock(original):  # type: ignore[valid-type, misc]
            def __init__(self, current_time: Any = None) -> None:
                super().__init__(current_time)
                _clocks[run_id] = self

        with _patching:
            direct_runner.TestClock = _RecordedTestClock  # type: ignore[misc]
            try:
                yield
            finally:
                direct_runner.TestClock = original  # type: ignore[misc]

    def release(self) -> None:
        """Forget the run's clock (after the run)."""
        _clocks.pop(self.run_id, None)
