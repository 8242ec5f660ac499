"""``DeliverSink``: a sink's updates → its function → for an integration sink, its table.

    updates ─ (upsert) LatestPerEntity ─ CallSink ─┬─ results ─ (integration) Rows ─ WriteToSQL ─┬─ written
                                                   └─ dead_letters ───────────────────────────────┴─ dead_letters

A per-row upsert sink's rows go to the writer with the version of the firing they came
from (:class:`transforms.firing.Version`), so that the stored row is the one computed from
the entity's newest state whatever order the runner delivers them in.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from sinks.integrations import SQLSource
from sinks.sink import Sink
from transforms.buffer import Clock
from transforms.call import RESULTS, CallSink, RetryPolicy
from transforms.dead_letters import DEAD_LETTERS
from transforms.firing import version_of
from transforms.row_identity import EventTimeColumn, append_identity, stamped_row, versioned_row
from transforms.sql import WRITTEN, TableSpec, WriteRetry, WriteToSQL


# Entities whose latest update LatestPerEntity holds at most (each with its inputs).
MAX_HELD = 10_000


class LatestPerEntity(beam.DoFn):
    """Passes on, at the end of each bundle, only each entity's last update of that bundle
    (the newest by version, else by timestamp, the entity's clock; of equal ones, the last to arrive).

    For a per-row upsert sink: each call's row replaces the entity's row, so only the last
    call of a bundle shows in the table, and the calls before it are work the table never
    keeps (what Kafka Streams' record cache does for a table). It holds at most ``max_held``
    entities: one more passes on the update held longest. Keys that cannot be hashed pass
    straight on.
    """

    def __init__(self, name: str, max_held: int = MAX_HELD) -> None:
        self.coalesced = Metrics.counter(f"sinks.{name}", "coalesced")
        self.max_held = max_held

    def start_bundle(self) -> None:
        self._latest: Dict[Any, Tuple[Tuple[Any, Any], Any, Any]] = {}

    def process(self, element: Tuple[Any, Any], timestamp: Any = beam.DoFn.TimestampParam,
                window: Any = beam.DoFn.WindowParam) -> Iterable[Any]:
        try:
            held = self._latest.get(element[0])
        except TypeError:
            yield element
            return
        if held is not None:
            self.coalesced.inc()
            if _older(element, timestamp, held):
                return
        elif len(self._latest) >= self.max_held:
            oldest = next(iter(self._latest))
            passed, passed_at, passed_in = self._latest.pop(oldest)
            yield WindowedValue(passed, passed_at, (passed_in,))
        self._latest[element[0]] = (element, timestamp, window)

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for element, timestamp, window in self._latest.values():
            yield WindowedValue(element, timestamp, (window,))
        self._latest = {}


def _older(element: Any, timestamp: Any, held: Tuple[Any, Any, Any]) -> bool:
    version, held_version = version_of(element), version_of(held[0])
    if version is not None and held_version is not None:
        return bool(version < held_version)
    return bool(timestamp < held[1])


class DeliverSink(beam.PTransform):
    """Call a sink for each of its ``(root_key, update)`` pairs and, when it has an
    ``integration``, write what it returns there (appended, or upserted with ``upsert=True``).

    Args:
      sink: a function decorated with ``@sink``.
      num_shards, retry, clock: as for :class:`transforms.call.CallSink`.
      integration: the database to write to instead of the sink's own (``--database-url``).
      write_retry, create_tables, validate: as for :class:`transforms.sql.WriteToSQL` (``retry``).
      write_shards: the ``num_shards`` of :class:`transforms.sql.WriteToSQL`: parallel upsert writers.

    An upsert sink called per row gets only each entity's last update of a bundle (see
    :class:`LatestPerEntity`); append, batch and custom sinks get every update.

    Returns a dict: ``results`` (the function's ``(key, value)`` results) for a sink
    without integration, ``written`` (rows written per batch) for one with, and
    ``dead_letters`` from every stage.
    """

    def __init__(self, sink: Sink, num_shards: int = 1, retry: RetryPolicy = RetryPolicy(),
                 clock: Optional[Clock] = None, integration: Optional[SQLSource] = None,
                 write_retry: WriteRetry = WriteRetry(), create_tables: Optional[bool] = None,
                 validate: bool = True, write_shards: int = 4) -> None:
        super().__init__(f"DeliverSink({sink.spec.name})")
        self.sink = sink
        self.call = CallSink(sink, num_shards, retry, clock)
        self.integration = integration or sink.spec.integration
        self.write_retry = write_retry
        self.write_shards = write_shards
        self.create_tables = create_tables
        self.validate = validate

    def expand(self, updates: beam.PCollection) -> Dict[str, beam.PCollection]:
        spec = self.sink.spec
        if spec.keeps_latest_only:
            updates = updates | "LatestPerEntity" >> beam.ParDo(LatestPerEntity(spec.name, MAX_HELD))
        called = updates | self.call
        if self.integration is None:
            return {RESULTS: called[RESULTS], DEAD_LETTERS: called[DEAD_LETTERS]}
        versioned = spec.keeps_latest_only
        identity = None if spec.upsert else append_identity(spec.output_model, spec.name)
        column = EventTimeColumn.of(TableSpec(spec.output_model, identity), spec.upsert)
        if versioned:
            rows = called[RESULTS] | "Rows" >> beam.Map(versioned_row, column)
        elif column is not None:
            rows = called[RESULTS] | "Rows" >> beam.Map(stamped_row, column)
        else:
            rows = called[RESULTS] | "Rows" >> beam.Values()
        written = rows | WriteToSQL(
            self.integration, spec.output_model, upsert=spec.upsert, name=spec.name,
            num_shards=self.write_shards, create_tables=self.create_tables, validate=self.validate,
            retry=self.write_retry, versioned=versioned, conflict=identity, skip_existing=identity is not None)
        dead_letters = (called[DEAD_LETTERS], written[DEAD_LETTERS]) | "DeadLetters" >> beam.Flatten()
        return {WRITTEN: written[WRITTEN], DEAD_LETTERS: dead_letters}
