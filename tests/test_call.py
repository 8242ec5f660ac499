"""``CallSink``: users' functions called from Beam, with pacing, retries, dead letters and metrics."""
import json
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to

from pipelines.options import SinkOptions
from tests import sinks_under_test as s
from transforms.call import DEAD_LETTERS, RESULTS, CallSink, RetryPolicy, pacing_of, shard_of
from tests.direct_runner_clock import direct_runner_test_clock

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.001)


def updates(n, keys=5):
    return [(f"u{i % keys}", {"uid": f"u{i % keys}", "n": i}) for i in range(n)]


def rows(n, keys=5):
    """Updates of a batch sink: keyed by column name."""
    return [(f"u{i % keys}", {"account.uid": f"u{i % keys}", "account.n": i}) for i in range(n)]


def counter(result, sink_name, name):
    found = result.metrics().query(MetricsFilter().with_namespace(f"sinks.{sink_name}").with_name(name))
    return sum(c.committed for c in found["counters"])


def run(sink, elements, runner=None, options=None, **kwargs):
    pipeline = beam.Pipeline(runner=runner or FnApiRunner(), options=options or PipelineOptions())
    outputs = pipeline | beam.Create(elements) | CallSink(sink, retry=FAST_RETRY, **kwargs)
    return pipeline, outputs


def test_per_row_sink_called_once_per_update():
    pipeline, out = run(s.echo, updates(20))
    assert_that(out[RESULTS], equal_to([(k, u) for k, u in updates(20)]), label="results")
    assert_that(out[DEAD_LETTERS], equal_to([]), label="dead")
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "echo", "calls") == 20
    assert counter(result, "echo", "rows") == 20
    assert counter(result, "echo", "batches") == 0


def test_paced_per_row_sink_calls_once_per_buffered_update_in_order():
    s.calls.clear()
    events = TestStream().add_elements(updates(7, keys=1)).advance_watermark_to_infinity()
    pipeline = beam.Pipeline(runner="DirectRunner")
    out = pipeline | events | CallSink(s.echo_in_threes, clock=direct_runner_test_clock)
    assert_that(out[RESULTS], equal_to(updates(7, keys=1)))
    pipeline.run().wait_until_finish()
    assert s.calls == [("u0", n) for n in range(7)]


def test_batch_metrics():
    # On the FnApiRunner: the BundleBasedDirectRunner does not report the metrics of bundles
    # that run when the watermark reaches +inf (the end-of-input flush).
    pipeline, out = run(s.echo_in_threes, updates(7, keys=1))
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "echo_in_threes", "batches") == 3
    assert counter(result, "echo_in_threes", "rows") == 7
    sizes = result.metrics().query(MetricsFilter().with_name("batch_size"))["distributions"]
    dist = sizes[0].committed
    assert (dist.count, dist.sum, dist.min, dist.max) == (3, 7, 1, 3)


def test_batch_sink_gets_a_dataframe_per_flush():
    events = (TestStream().add_elements(rows(6, keys=3)).advance_processing_time(2)
              .add_elements(rows(1, keys=1)).advance_watermark_to_infinity())
    pipeline = beam.Pipeline(runner="DirectRunner")
    out = pipeline | events | CallSink(s.batch_echo, clock=direct_runner_test_clock)
    sizes = out[RESULTS] | beam.Map(lambda kv: (kv[1]["n"], kv[1]["batch"]))
    # buffer_size=4 flushes 4; max_delay=1s flushes the other 2; the last update comes alone.
    assert_that(sizes, equal_to([(0, 4), (1, 4), (2, 4), (3, 4), (4, 2), (5, 2), (0, 1)]))
    pipeline.run().wait_until_finish()


def test_batch_sinks_default_to_1000_updates_or_1s():
    from sinks import DataFrame, sink

    @sink
    def unpaced(rows: DataFrame[s.Account.uid]):
        pass

    pacing = pacing_of(unpaced.spec)
    assert (pacing.buffer_size, pacing.debounce, pacing.max_delay) == (1000, None, timedelta(seconds=1))
    assert pacing_of(s.echo.spec) is None


def test_failing_function_is_retried_then_dead_lettered_and_the_rest_delivered():
    elements = updates(10) + [("bad", {"uid": "bad", "n": 99})]
    pipeline, out = run(s.fails_on_bad, elements)
    assert_that(out[RESULTS], equal_to([(k, u["n"]) for k, u in updates(10)]), label="delivered")
    letters = out[DEAD_LETTERS] | beam.Map(
        lambda d: (d["stage"], d["sink"], d["error_type"], d["error"], json.loads(d["input"]),
                   "Traceback" in d["traceback"]))
    assert_that(letters, equal_to([("call", "fails_on_bad", "ValueError", "cannot deliver bad",
                                    {"uid": "bad", "n": 99}, True)]), label="dead")
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "fails_on_bad", "retries") == 2
    assert counter(result, "fails_on_bad", "dead_letters") == 1
    assert counter(result, "fails_on_bad", "calls") == 10


def test_transient_failure_is_retried_and_delivered():
    s.attempts.clear()
    pipeline, out = run(s.fails_once, updates(4, keys=4))
    assert_that(out[RESULTS], equal_to([(k, u["n"]) for k, u in updates(4, keys=4)]))
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "fails_once", "retries") == 4
    assert counter(result, "fails_once", "dead_letters") == 0


def test_async_functions_are_awaited():
    pipeline, out = run(s.echo_async, updates(3))
    assert_that(out[RESULTS], equal_to([(k, u["n"] * 10) for k, u in updates(3)]))
    pipeline.run().wait_until_finish()


def test_shards_are_stable_and_spread():
    keys = [f"user-{i}" for i in range(1000)]
    shards = [shard_of(k, 4) for k in keys]
    assert shards == [shard_of(k, 4) for k in keys]
    assert shard_of("user-1", 4) == 1 and shard_of(42, 4) == 0  # crc32 pinned: same on every worker
    assert all(150 < shards.count(i) < 350 for i in range(4))
    assert {shard_of(k, 1) for k in keys} == {0}


def test_several_shards_keep_each_entity_in_order():
    s.calls.clear()
    elements = updates(60, keys=6)
    events = TestStream().add_elements(elements).advance_watermark_to_infinity()
    pipeline = beam.Pipeline(runner="DirectRunner")
    out = pipeline | events | CallSink(s.echo_in_threes, num_shards=3, clock=direct_runner_test_clock)
    assert_that(out[RESULTS], equal_to(elements))
    pipeline.run().wait_until_finish()
    for k in range(6):
        assert [n for uid, n in s.calls if uid == f"u{k}"] == list(range(k, 60, 6))
    assert len(s.calls) == 60


@pytest.mark.parametrize("sink", [s.echo, s.echo_in_threes, s.batch_echo])
def test_exactly_once_on_two_worker_processes(sink):
    options = PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
    elements = (rows if sink.spec.is_batch else updates)(500, keys=50)
    pipeline, out = run(sink, elements, options=options, num_shards=4)
    delivered = out[RESULTS] | beam.Map(lambda kv: (kv[1]["uid"], kv[1]["n"]))
    assert_that(delivered, equal_to([(f"u{i % 50}", i) for i in range(500)]))
    pipeline.run().wait_until_finish()


def test_retry_policy_from_pipeline_options():
    options = PipelineOptions(["--sink_retry_attempts", "5", "--sink_retry_base_delay", "0.5"]).view_as(SinkOptions)
    assert options.retry_policy() == RetryPolicy(attempts=5, base_delay=0.5)
    assert 0.8 <= RetryPolicy(base_delay=0.5).delay(2) <= 1.2


@pytest.mark.parametrize("hanging", [s.hangs_on_slow, s.hangs_async_on_slow])
def test_a_call_past_its_timeout_is_retried_then_dead_lettered_and_the_run_goes_on(hanging):
    elements = [("a", {"uid": "a", "n": 1}), ("slow", {"uid": "slow", "n": 2}), ("b", {"uid": "b", "n": 3})]
    pipeline = beam.Pipeline(runner=FnApiRunner())
    out = pipeline | beam.Create(elements) | CallSink(
        hanging, retry=RetryPolicy(attempts=2, base_delay=0.001, timeout=0.3))
    assert_that(out[RESULTS], equal_to([("a", 1), ("b", 3)]), label="results")
    letters = out[DEAD_LETTERS] | beam.Map(lambda d: (d["error_type"], json.loads(d["input"])["uid"]))
    assert_that(letters, equal_to([("TimeoutError", "slow")]), label="letters")
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, hanging.spec.name, "retries") == 1


def test_an_integration_sink_returning_the_wrong_type_is_retried_then_dead_lettered():
    elements = [("a", {"uid": "a", "n": 1}), ("bad", {"uid": "bad", "n": 2})]
    pipeline, out = run(s.returns_wrong_type, elements)
    assert_that(out[RESULTS] | beam.Map(lambda kv: (kv[0], type(kv[1]).__name__)), equal_to([("a", "Total")]),
                label="results")
    letters = out[DEAD_LETTERS] | beam.Map(lambda d: (d["error_type"], d["error"]))
    assert_that(letters, equal_to([("TypeError", "sink 'returns_wrong_type' returned str, not Total "
                                                 "(or a list of them, or None)")]), label="letters")
    result = pipeline.run()
    result.wait_until_finish()
    assert counter(result, "returns_wrong_type", "retries") == 2
