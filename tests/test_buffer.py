"""Pacing semantics of ``Buffer`` under TestStream, with exact expected batches.

The processing-time clock is the DirectRunner's TestStream clock (``direct_runner_test_clock``), so
``wait(s)`` below is ``advance_processing_time(s)``; nothing sleeps.
"""
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from transforms.buffer import Buffer
from tests.direct_runner_clock import direct_runner_test_clock

MS = timedelta(milliseconds=1)


def stream(*steps):
    """``("k", [values])`` adds elements for key k; a number advances processing time (seconds)."""
    events = TestStream().advance_watermark_to(0)
    for step in steps:
        if isinstance(step, (int, float)):
            events = events.advance_processing_time(step)
        else:
            key, values = step
            events = events.add_elements([(key, v) for v in values])
    return events.advance_watermark_to_infinity()


def batches(events, **options):
    """Run ``Buffer(**options)`` over the events and return the pipeline's expected-output checker."""
    def check(expected):
        with beam.Pipeline(runner="DirectRunner", options=PipelineOptions()) as p:
            out = p | events | Buffer(clock=direct_runner_test_clock, **options)
            assert_that(out, equal_to(expected))
    return check


def test_size_alone_flushes_exactly_buffer_size():
    events = stream(("k", range(7)))
    batches(events, buffer_size=3)([("k", [0, 1, 2]), ("k", [3, 4, 5]), ("k", [6])])


def test_size_alone_never_flushes_on_time():
    events = stream(("k", [1, 2]), 3600, ("k", [3]), 3600, ("k", [4, 5]))
    batches(events, buffer_size=3)([("k", [1, 2, 3]), ("k", [4, 5])])


def test_debounce_alone_waits_for_a_quiet_period():
    # A burst, a pause shorter than D, more updates, a pause longer than D, then more.
    events = stream(("k", [1, 2, 3]), 0.05, ("k", [4]), 0.05, ("k", [5]), 0.2,
                    ("k", [6]), 0.05, ("k", [7]), 0.5, ("k", [8]))
    batches(events, debounce=100 * MS)([("k", [1, 2, 3, 4, 5]), ("k", [6, 7]), ("k", [8])])


def test_max_delay_alone_bounds_waiting_under_a_steady_stream():
    steps = []
    for value in range(10):
        steps += [("k", [value]), 0.3]
    # Arrivals at 0.0, 0.3, ... 2.7 s; the stream never pauses, so only max_delay flushes.
    batches(stream(*steps), max_delay=timedelta(seconds=1))(
        [("k", [0, 1, 2, 3]), ("k", [4, 5, 6, 7]), ("k", [8, 9])])


def test_seed_combination_size_debounce_and_max_delay():
    burst = list(range(250))
    steady_steps = []
    for value in range(1000, 1030):
        steady_steps += [("k", [value]), 0.05]
    events = stream(("k", burst), 0.2, *steady_steps)
    batches(events, buffer_size=100, debounce=100 * MS, max_delay=timedelta(seconds=1))([
        ("k", burst[:100]), ("k", burst[100:200]),   # buffer_size
        ("k", burst[200:]),                           # debounce: 200 ms of quiet
        ("k", list(range(1000, 1020))),               # max_delay: 1 s after the first, never quiet
        ("k", list(range(1020, 1030))),               # end of input
    ])


def test_keys_have_independent_buffers():
    events = stream(("a", [1]), ("b", [10, 11]), 0.05, ("a", [2]), 0.2, ("b", [12]), ("a", [3, 4, 5]))
    batches(events, buffer_size=3, debounce=100 * MS)([
        ("a", [1, 2]), ("b", [10, 11]), ("a", [3, 4, 5]), ("b", [12])])


def test_end_of_input_flushes_everything_exactly_once():
    events = stream(("k", range(25)), ("j", [100]))
    batches(events, buffer_size=10, debounce=timedelta(hours=1), max_delay=timedelta(hours=2))([
        ("k", list(range(10))), ("k", list(range(10, 20))), ("k", list(range(20, 25))), ("j", [100])])


def test_buffer_needs_an_option():
    with pytest.raises(ValueError, match="needs buffer_size, debounce or max_delay"):
        Buffer()
    with pytest.raises(ValueError, match="positive"):
        Buffer(buffer_size=0)


@pytest.mark.parametrize("runner", ["FnApiRunner", "BundleBasedDirectRunner"])
def test_a_bounded_input_is_paced_by_size_and_its_end_and_finishes(runner):
    # A processing-time timer still due when a bounded input ends made the FnApiRunner fail the
    # run ("time-pending bundles did not execute"): on a bounded input only buffer_size and
    # the end flush.
    values = [("a", i) for i in range(7)] + [("b", i) for i in range(3)]
    with beam.Pipeline(runner) as pipeline:
        batches = (pipeline | beam.Create(values)
                   | Buffer(buffer_size=3, debounce=timedelta(minutes=10), max_delay=timedelta(minutes=10)))
        assert_that(batches | beam.MapTuple(lambda key, batch: (key, sorted(batch))),
                    equal_to([("a", [0, 1, 2]), ("a", [3, 4, 5]), ("a", [6]), ("b", [0, 1, 2])]))


def test_two_buffers_of_one_pipeline_each_flush_what_is_left_at_the_end_on_the_fnapi_runner():
    # The FnApiRunner keeps timers by their name across the pipeline: before the step's own names
    # (transforms/timer_names.py) one of the two lost its end-of-input flush, which one varying.
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    for _ in range(3):
        with beam.Pipeline(runner=FnApiRunner()) as p:
            values = p | beam.Create([("k", v) for v in range(15)])
            first = values | "First" >> Buffer(buffer_size=10, name="first")
            second = values | "Second" >> Buffer(buffer_size=10, name="second")
            for label, out in (("CheckFirst", first), ("CheckSecond", second)):
                assert_that(out | f"{label}Sizes" >> beam.Map(lambda batch: len(batch[1])), equal_to([10, 5]),
                            label=label)


def test_a_steps_timers_are_named_after_it_and_still_fire():
    from transforms.buffer import _BufferFn
    from transforms.timer_names import with_timers_named
    named = with_timers_named(_BufferFn(10, None, None, lambda: 0.0), "orders")
    assert (named.END.name, named.DUE.name) == ("ts-end-orders", "ts-due-orders")
    assert (_BufferFn.END.name, _BufferFn.DUE.name) == ("ts-end", "ts-due")
    assert isinstance(named, _BufferFn) and named.buffer_size == 10
