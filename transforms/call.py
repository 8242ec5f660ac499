"""``CallSink``: a sink's updates → shard → pace (``Buffer``) → calls of the user's function.

Input: ``(root_key, update)`` pairs. An update of a per-row sink maps parameter
names to values (the function is called as ``fn(**update)``); an update of a
batch sink maps column names (``user.account.title``) to values, and each
flush calls the function once with those updates as a ``DataFrame``.

Outputs: the main output holds ``(key, result)`` for every non-``None`` value
the function returns (a returned list is spread out), which is what an
integration sink writes; the key is the root key for a per-row sink and the
shard for a batch sink; the ``dead_letters`` output holds one record per
update that failed after every retry (stage ``call``), or whose has-many input
could not be built (stage ``inputs``: a filter or a conversion failing for its
values, found before any call). A batch's ``DataFrame`` is built inside the call,
so a failure there fails that call.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from sinks.dataframe import DataFrame
from sinks.sink import Sink, SinkSpec
from transforms.assemble.related import RelatedRows
from transforms.buffer import Buffer, Clock
from transforms.dead_letters import DEAD_LETTERS, FirstTracebacks, dead_letter
from transforms.firing import Firing, Version, version_of
from transforms.retry import RetryPolicy
from transforms.sharding import shard_of

RESULTS = "results"
# The stage of an update whose inputs could not be built (a filter or a frame failing for its values).
INPUTS_STAGE = "inputs"

# A batch sink with no pacing options flushes at 1000 updates or 1 s after the first.
DEFAULT_BATCH_SIZE = 1000
DEFAULT_BATCH_DELAY = timedelta(seconds=1)


@dataclass(frozen=True)
class Pacing:
    buffer_size: Optional[int]
    debounce: Optional[timedelta]
    max_delay: Optional[timedelta]


def pacing_of(spec: SinkSpec) -> Optional[Pacing]:
    """The buffer a sink's updates go through, or None when each update is called at once."""
    if spec.buffer_size is None and spec.debounce is None and spec.max_delay is None:
        return Pacing(DEFAULT_BATCH_SIZE, None, DEFAULT_BATCH_DELAY) if spec.is_batch else None
    return Pacing(spec.buffer_size, spec.debounce, spec.max_delay)


class _Unbuilt(Exception):
    """A has-many input that could not be built for an update, and why."""

    def __init__(self, parameter: str, error: Exception) -> None:
        super().__init__(parameter, error)
        self.parameter, self.error = parameter, error


class _CallFn(beam.DoFn):
    """Calls a sink's function for ``(key, update)`` or, when ``buffered``, ``(shard, [(key, update)])``."""

    def __init__(self, sink: Sink, buffered: bool, retry: RetryPolicy) -> None:
        self.sink = sink
        self.buffered = buffered
        self.retry = retry
        namespace = f"sinks.{sink.spec.name}"
        self.calls = Metrics.counter(namespace, "calls")
        self.rows = Metrics.counter(namespace, "rows")
        self.batches = Metrics.counter(namespace, "batches")
        self.retries = Metrics.counter(namespace, "retries")
        self.dead_letters = Metrics.counter(namespace, "dead_letters")
        self.batch_sizes = Metrics.distribution(namespace, "batch_size")
        # Has-many parameters arrive from the assemble stage as rows; the sink gets DataFrames.
        self.frames = {i.parameter: i.ref for i in sink.spec.inputs if i.is_has_many}

    def start_bundle(self) -> None:
        self._tracebacks = FirstTracebacks()

    def setup(self) -> None:
        self._loop = asyncio.new_event_loop() if self.sink.spec.is_async else None
        self._runner: Optional[ThreadPoolExecutor] = None

    def teardown(self) -> None:
        if self._loop is not None:
            self._loop.close()
        if self._runner is not None:
            self._runner.shutdown(wait=False)

    def _invoke(self, call: Callable[[], Any]) -> Any:
        """The function's result, awaited if it is a coroutine, within the retry policy's timeout."""
        timeout = self.retry.timeout
        if self._loop is not None:
            return self._loop.run_until_complete(asyncio.wait_for(call(), timeout))
        if timeout is None:
            return call()
        if self._runner is None:
            self._runner = ThreadPoolExecutor(1, thread_name_prefix=f"sink-{self.sink.spec.name}")
        future = self._runner.submit(call)
        try:
            return future.result(timeout)
        except FutureTimeout:
            # The hung call keeps its thread; later calls get a fresh one.
            self._runner.shutdown(wait=False)
            self._runner = None
            raise TimeoutError(f"sink '{self.sink.spec.name}' did not return within {timeout} s") from None

    def _checked(self, result: Any) -> List[Any]:
        """What the function returned, as a list; an integration sink must return rows of its model."""
        values = [v for v in (result if isinstance(result, list) else [result]) if v is not None]
        model = self.sink.spec.output_model
        if model is not None:
            wrong = [v for v in values if not isinstance(v, (model, dict))]
            if wrong:
                raise TypeError(f"sink '{self.sink.spec.name}' returned {type(wrong[0]).__name__}, "
                                f"not {model.__name__} (or a list of them, or None)")
        return values

    def process(self, element: Tuple[Any, Any]) -> Iterable[Any]:
        if self.buffered:
            shard, pairs = element
            self.batches.inc()
            self.batch_sizes.update(len(pairs))
        else:
            pairs = [element]
        if self.frames:
            framed = []
            for pair in pairs:
                key, update = pair
                try:
                    built, version = self._with_frames(update), version_of(pair)
                except _Unbuilt as unbuilt:
                    yield self._unbuilt(key, update, unbuilt)
                    continue
                framed.append((key, built) if version is None else Firing(key, built, version))
            pairs = framed
        if not pairs:
            return
        if self.sink.spec.is_batch:
            updates = [update for _, update in pairs]
            yield from self._call(shard, pairs, lambda: self.sink.fn(
                DataFrame(updates, columns=[i.ref for i in self.sink.spec.inputs])))
        else:
            for pair in pairs:
                key, update = pair
                yield from self._call(key, [(key, update)], lambda: self.sink.fn(**update), version_of(pair))

    def _with_frames(self, update: Dict[str, Any]) -> Dict[str, Any]:
        framed = {}
        for name, value in update.items():
            if isinstance(value, RelatedRows):
                try:
                    value = value.frame(self.frames[name])
                except Exception as error:  # a filter or a conversion failing for this entity's values
                    raise _Unbuilt(name, error) from error
            framed[name] = value
        return framed

    def _unbuilt(self, key: Any, update: Dict[str, Any], unbuilt: _Unbuilt) -> TaggedOutput:
        """The dead letter of an update whose inputs could not be built: its related rows as held."""
        self.dead_letters.inc()
        held = {name: value.rows if isinstance(value, RelatedRows) else value for name, value in update.items()}
        error = unbuilt.error
        return TaggedOutput(DEAD_LETTERS, dead_letter(
            INPUTS_STAGE, self.sink.spec.name, error, held,
            reason=f"could not build input '{unbuilt.parameter}': {error}", key=key,
            with_traceback=self._tracebacks.is_new(error)))

    def _call(self, key: Any, pairs: List[Tuple[Any, Dict[str, Any]]], call: Callable[[], Any],
              version: Optional[Version] = None) -> Iterable[Any]:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                values = self._checked(self._invoke(call))
            except Exception as error:  # the user's code may raise anything
                if attempt < self.retry.attempts:
                    self.retries.inc()
                    time.sleep(self.retry.delay(attempt))
                    continue
                # One traceback per failing call, and none when this bundle has shown it already.
                shown = self._tracebacks.is_new(error)
                for number, (root_key, update) in enumerate(pairs):
                    self.dead_letters.inc()
                    yield TaggedOutput(DEAD_LETTERS, dead_letter(
                        "call", self.sink.spec.name, error, update, key=root_key,
                        with_traceback=shown and number == 0))
                return
            self.calls.inc()
            self.rows.inc(len(pairs))
            for value in values:
                # Each result carries the version of the firing it came from, for the writer.
                yield (key, value) if version is None else Firing(key, value, version)
            return


class CallSink(beam.PTransform):
    """Deliver a sink's updates to its function: shard, pace, call, retry, dead-letter.

    Args:
      sink: a function decorated with ``@sink``.
      num_shards: buffers per sink; an entity's updates always go to the shard
        ``crc32(repr(key)) % num_shards``, so they stay in order.
      retry: how failing calls are retried before their updates are dead-lettered.
      clock: the buffer's processing-time clock (see :class:`transforms.buffer.Buffer`).

    Returns a ``DoOutputsTuple`` with ``results`` (``(key, returned value)``; a
    :class:`~transforms.firing.Firing` with the version of the update it came from)
    and ``dead_letters`` (dicts; see :func:`dead_letter`).
    """

    def __init__(self, sink: Sink, num_shards: int = 1, retry: RetryPolicy = RetryPolicy(),
                 clock: Optional[Clock] = None) -> None:
        super().__init__(f"CallSink({sink.spec.name})")
        if num_shards < 1:
            raise ValueError(f"num_shards must be positive, not {num_shards}")
        self.sink = sink
        self.num_shards = num_shards
        self.retry = retry
        self.clock = clock

    def expand(self, updates: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        pacing = pacing_of(self.sink.spec)
        if pacing is not None:
            num_shards = self.num_shards
            # A batch sink's calls have no one version: its pairs go on as plain tuples, which
            # the buffer's coder encodes natively (a Firing it pickles).
            plain = self.sink.spec.is_batch
            updates = (
                updates
                | "Shard" >> beam.Map(lambda kv: (shard_of(kv[0], num_shards), (kv[0], kv[1]) if plain else kv)
                                      ).with_output_types(Tuple[int, Any])
                | "Pace" >> Buffer(pacing.buffer_size, pacing.debounce, pacing.max_delay, self.clock,
                                   name=self.sink.spec.name))
        return updates | "Call" >> beam.ParDo(
            _CallFn(self.sink, pacing is not None, self.retry)).with_outputs(DEAD_LETTERS, main=RESULTS)
