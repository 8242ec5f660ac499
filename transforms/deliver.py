"""``DeliverSink``: a sink's updates → its function → for an integration sink, its table.

    updates ─ CallSink ─┬─ results ─ (integration) Values ─ WriteToSQL ─┬─ written
                        └─ dead_letters ──────────────────────────────────┴─ dead_letters (both stages)
"""
from __future__ import annotations

from typing import Dict, Optional

import apache_beam as beam

from sinks.integrations import SQLSource
from sinks.sink import Sink
from transforms.buffer import Clock
from transforms.call import RESULTS, CallSink, RetryPolicy
from transforms.dead_letters import DEAD_LETTERS
from transforms.sql import WRITTEN, WriteRetry, WriteToSQL


class DeliverSink(beam.PTransform):
    """Call a sink for each of its ``(root_key, update)`` pairs and, when it has an
    ``integration``, write what it returns there (appended, or upserted with ``upsert=True``).

    Args:
      sink: a function decorated with ``@sink``.
      num_shards, retry, clock: as for :class:`transforms.call.CallSink`.
      integration: the database to write to instead of the sink's own (``--database-url``).
      write_retry, create_tables, validate: as for :class:`transforms.sql.WriteToSQL` (``retry``).
      write_shards: the ``num_shards`` of :class:`transforms.sql.WriteToSQL`: parallel upsert writers.

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
        called = updates | self.call
        spec = self.sink.spec
        if self.integration is None:
            return {RESULTS: called[RESULTS], DEAD_LETTERS: called[DEAD_LETTERS]}
        written = (
            called[RESULTS]
            | "Rows" >> beam.Values()
            | WriteToSQL(self.integration, spec.output_model, upsert=spec.upsert, name=spec.name,
                         num_shards=self.write_shards, create_tables=self.create_tables, validate=self.validate,
                         retry=self.write_retry))
        dead_letters = (called[DEAD_LETTERS], written[DEAD_LETTERS]) | "DeadLetters" >> beam.Flatten()
        return {WRITTEN: written[WRITTEN], DEAD_LETTERS: dead_letters}
