"""``WriteToSQL``: a PCollection of rows → batches → one transaction per batch → a table.

    rows ──┬─ append: BatchElements (stateless, follows the bundles) ──────────┐
           └─ upsert: shard by conflict key → Buffer (size, max delay, end) ───┴─ WriteBatchesToSQL
                                                                                 ├─ written (rows per batch)
                                                                                 └─ dead_letters

Upserts go through a keyed buffer so that every row of one key is written by
the same shard, batch after batch, in the order it arrived: the row that
stays is the last update.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from sinks.integrations import SQLSource, SQLiteSource
from transforms.buffer import Buffer, Clock
from transforms.call import shard_of
from transforms.dead_letters import DEAD_LETTERS, dead_letter
from transforms.sql.schema import prepare_table
from transforms.sql.table import TableSpec
from transforms.sql.writer import SQLWriter, WriteRetry

WRITTEN = "written"
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_DELAY = timedelta(seconds=1)


class _WriteBatchFn(beam.DoFn):
    """Writes each batch (a list of rows, or a ``(key, rows)`` pair) in one transaction."""

    def __init__(self, integration: SQLSource, spec: TableSpec, upsert: bool, retry: WriteRetry,
                 name: str) -> None:
        self.integration = integration
        self.spec = spec
        self.upsert = upsert
        self.retry = retry
        self.name = name
        namespace = f"sinks.{name}"
        self.rows = Metrics.counter(namespace, "rows_upserted" if upsert else "rows_appended")
        self.batches = Metrics.counter(namespace, "write_batches")
        self.retries = Metrics.counter(namespace, "write_retries")
        self.dead_letters = Metrics.counter(namespace, "write_dead_letters")
        self.latency = Metrics.distribution(namespace, "write_latency_ms")

    def setup(self) -> None:
        self.writer = SQLWriter(self.integration, self.spec, self.upsert, self.retry)
        self.writer.open()

    def teardown(self) -> None:
        self.writer.close()

    def process(self, batch: Union[Sequence[Any], Tuple[Any, Sequence[Any]]]) -> Iterable[Any]:
        rows = batch[1] if isinstance(batch, tuple) else batch
        started = time.perf_counter()
        result = self.writer.write(rows)
        self.latency.update(int((time.perf_counter() - started) * 1000))
        self.batches.inc()
        self.rows.inc(result.written)
        self.retries.inc(result.retries)
        for row, error in result.failed:
            self.dead_letters.inc()
            yield TaggedOutput(DEAD_LETTERS, dead_letter("write", self.name, error, row))
        yield result.written


class WriteBatchesToSQL(beam.PTransform):
    """Write batches that are already formed (lists of rows, or ``(key, rows)`` pairs, as a
    pacing :class:`~transforms.buffer.Buffer` flushes them), one transaction per batch.

    Arguments as for :class:`WriteToSQL`; returns the same outputs.
    """

    def __init__(self, integration: SQLSource, model: Any, upsert: bool = False,
                 conflict: Union[None, str, Sequence[str]] = None, create_tables: Optional[bool] = None,
                 validate: bool = True, retry: WriteRetry = WriteRetry(), name: Optional[str] = None) -> None:
        self.spec = TableSpec(model, conflict)
        self.sink_name = name or self.spec.name
        super().__init__(f"WriteBatchesToSQL({self.sink_name})")
        self.integration = integration
        self.upsert = upsert
        self.create_tables = isinstance(integration, SQLiteSource) if create_tables is None else create_tables
        self.validate = validate
        self.retry = retry

    def expand(self, batches: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if self.validate or self.create_tables:
            self._prepare()
        return batches | "Write" >> beam.ParDo(
            _WriteBatchFn(self.integration, self.spec, self.upsert, self.retry, self.sink_name)
        ).with_outputs(DEAD_LETTERS, main=WRITTEN)

    def _prepare(self) -> None:
        """Create and check the table now, while the pipeline is built: before any data moves."""
        engine = self.integration.create_engine()
        try:
            prepare_table(engine, self.spec, self.sink_name, self.create_tables, self.upsert)
        finally:
            engine.dispose()


class WriteToSQL(beam.PTransform):
    """Append or upsert rows into a SQL table, in batches, with retries and dead letters.

    Each element is an instance of ``model`` (a SQLAlchemy mapped class) or a
    dict of its column values; a column left out (or None) that the database
    fills in itself, such as an autoincrement key, is filled in by it.

    Args:
      integration: the database, e.g. ``PostgreSQLSource()``; engines are made on
        the workers, in ``DoFn.setup``.
      model: a mapped class (or a ``Table``) naming the target table.
      upsert: replace the row with the same conflict key instead of adding one;
        every other column is updated.
      conflict: the upsert's conflict target: column names, or the name of a
        unique constraint; the primary key by default.
      batch_size: rows per transaction at most.
      max_delay: (upsert) longest wait for a shard's batch to fill up.
      num_shards: (upsert) parallel writers; a key always goes to the same one.
      create_tables: create the table when it is missing (default: only on SQLite).
      validate: check the table against ``model`` while the pipeline is built,
        so that a mismatch stops it before any data moves.
      retry: how transient failures are retried (see :class:`WriteRetry`).
      name: the sink's name, for metrics (``sinks.<name>``) and dead letters.
      clock: the upsert buffer's processing-time clock (tests).

    Returns a ``DoOutputsTuple``: ``written`` (rows written per batch) and
    ``dead_letters`` (one record per row that could not be written, with the
    database's reason).
    """

    def __init__(self, integration: SQLSource, model: Any, upsert: bool = False,
                 conflict: Union[None, str, Sequence[str]] = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_delay: timedelta = DEFAULT_MAX_DELAY, num_shards: int = 4,
                 create_tables: Optional[bool] = None, validate: bool = True,
                 retry: WriteRetry = WriteRetry(), name: Optional[str] = None,
                 clock: Optional[Clock] = None) -> None:
        self.write = WriteBatchesToSQL(integration, model, upsert, conflict, create_tables, validate, retry, name)
        super().__init__(f"WriteToSQL({self.write.sink_name})")
        if batch_size < 1 or num_shards < 1:
            raise ValueError("batch_size and num_shards must be positive")
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.num_shards = num_shards
        self.clock = clock

    def expand(self, rows: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if self.write.upsert:
            spec, num_shards = self.write.spec, self.num_shards
            batches = (
                rows
                | "ShardByKey" >> beam.Map(
                    lambda row: (_shard(spec, row, num_shards), row)).with_output_types(Tuple[int, Any])
                | "Batch" >> Buffer(self.batch_size, None, self.max_delay, self.clock))
        else:
            batches = rows | "Batch" >> beam.BatchElements(
                min_batch_size=self.batch_size, max_batch_size=self.batch_size)
        return batches | self.write


def _shard(spec: TableSpec, value: Any, num_shards: int) -> int:
    try:
        key = spec.key_of(spec.row(value))
    except Exception:  # not a row of the table: the writer dead-letters it, any shard will do
        return 0
    return shard_of(key, num_shards)
