"""``WriteToSQL``: a PCollection of rows → batches → one transaction per batch → a table.

    rows ─ BatchElements ─┬─ append ─────────────────────────────────┬─ WriteBatchesToSQL
                          └─ upsert: split each batch by conflict-key ─┘   ├─ written (rows per batch)
                             shard, then one writer per shard              └─ dead_letters

Batches follow Beam's bundles: nothing waits for a timer, and a bundle's rows
are committed before the bundle is. Upserts are routed by their conflict key
to a keyed write step, so that every row of one key is written by the same
shard, batch after batch, in the order it arrived: the row that stays is the
last update.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.utils.windowed_value import WindowedValue

from sinks.integrations import SQLSource, SQLiteSource
from transforms.call import shard_of
from transforms.dead_letters import DEAD_LETTERS, dead_letter
from transforms.sql.schema import prepare_table
from transforms.sql.table import TableSpec
from transforms.sql.writer import SQLWriter, WriteResult, WriteRetry

WRITTEN = "written"
DEFAULT_BATCH_SIZE = 5000


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
        # A batch is written on this thread while Beam makes the next one: the database's share
        # of the work overlaps Beam's. A single thread keeps the batches in order.
        self._background = ThreadPoolExecutor(1, thread_name_prefix=f"write-{self.name}")

    def teardown(self) -> None:
        self._background.shutdown(wait=True)
        self.writer.close()

    def start_bundle(self) -> None:
        self._pending: Optional[Tuple[Future, Any, Any]] = None

    def process(self, batch: Union[Sequence[Any], Tuple[Any, Sequence[Any]]], window=beam.DoFn.WindowParam,
                timestamp=beam.DoFn.TimestampParam) -> Iterable[Any]:
        rows = batch[1] if isinstance(batch, tuple) else batch
        written = self._background.submit(self._write, rows)
        yield from self._report_pending()
        self._pending = (written, window, timestamp)

    def finish_bundle(self) -> Iterable[Any]:
        # The bundle commits only once its last batch is in the database.
        yield from self._report_pending()

    def _write(self, rows: Sequence[Any]) -> Tuple[WriteResult, float]:
        started = time.perf_counter()
        return self.writer.write(rows), time.perf_counter() - started

    def _report_pending(self) -> Iterable[Any]:
        """Wait for the batch in the background, then report it here: metrics belong to this thread."""
        if self._pending is None:
            return
        written, window, timestamp = self._pending
        self._pending = None
        result, seconds = written.result()
        self.latency.update(int(seconds * 1000))
        self.batches.inc()
        self.rows.inc(result.written)
        self.retries.inc(result.retries)
        for row, error in result.failed:
            self.dead_letters.inc()
            record = dead_letter("write", self.name, error, row)
            yield TaggedOutput(DEAD_LETTERS, WindowedValue(record, timestamp, (window,)))
        yield WindowedValue(result.written, timestamp, (window,))


class _ShardWriteBatchFn(_WriteBatchFn):
    """Writes ``(shard, rows)`` batches; being stateful, it gets each shard's batches on one
    worker, one after the other, which is what keeps a key's upserts in order."""

    BATCHES = ReadModifyWriteStateSpec("batches", VarIntCoder())

    def process(self, batch: Tuple[Any, Sequence[Any]], window=beam.DoFn.WindowParam,  # type: ignore[override]
                timestamp=beam.DoFn.TimestampParam, batches=beam.DoFn.StateParam(BATCHES)) -> Iterable[Any]:
        batches.write((batches.read() or 0) + 1)
        yield from super().process(batch, window, timestamp)


class WriteBatchesToSQL(beam.PTransform):
    """Write batches that are already formed (lists of rows, or ``(key, rows)`` pairs, as a
    pacing :class:`~transforms.buffer.Buffer` flushes them), one transaction per batch.

    Arguments as for :class:`WriteToSQL`, and ``keyed``: the batches are
    ``(key, rows)`` pairs, and each key's batches must be written by one worker,
    in turn (a stateful step; not needed straight after a keyed ``Buffer``,
    which already runs that way). Returns the same outputs as :class:`WriteToSQL`.
    """

    def __init__(self, integration: SQLSource, model: Any, upsert: bool = False,
                 conflict: Union[None, str, Sequence[str]] = None, create_tables: Optional[bool] = None,
                 validate: bool = True, retry: WriteRetry = WriteRetry(), name: Optional[str] = None,
                 keyed: bool = False) -> None:
        self.spec = TableSpec(model, conflict)
        self.sink_name = name or self.spec.name
        super().__init__(f"WriteBatchesToSQL({self.sink_name})")
        self.integration = integration
        self.upsert = upsert
        self.create_tables = isinstance(integration, SQLiteSource) if create_tables is None else create_tables
        self.validate = validate
        self.retry = retry
        self.keyed = keyed

    def expand(self, batches: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if self.validate or self.create_tables:
            self._prepare()
        write_fn = _ShardWriteBatchFn if self.keyed else _WriteBatchFn
        return batches | "Write" >> beam.ParDo(
            write_fn(self.integration, self.spec, self.upsert, self.retry, self.sink_name)
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
      batch_size: rows per transaction at most; a bundle's last batch may be smaller.
      num_shards: (upsert) parallel writers; a key always goes to the same one.
      create_tables: create the table when it is missing (default: only on SQLite).
      validate: check the table against ``model`` while the pipeline is built,
        so that a mismatch stops it before any data moves.
      retry: how transient failures are retried (see :class:`WriteRetry`).
      name: the sink's name, for metrics (``sinks.<name>``) and dead letters.

    Returns a ``DoOutputsTuple``: ``written`` (rows written per batch) and
    ``dead_letters`` (one record per row that could not be written, with the
    database's reason).
    """

    def __init__(self, integration: SQLSource, model: Any, upsert: bool = False,
                 conflict: Union[None, str, Sequence[str]] = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 num_shards: int = 4, create_tables: Optional[bool] = None, validate: bool = True,
                 retry: WriteRetry = WriteRetry(), name: Optional[str] = None) -> None:
        self.write = WriteBatchesToSQL(integration, model, upsert, conflict, create_tables, validate, retry, name,
                                       keyed=upsert)
        super().__init__(f"WriteToSQL({self.write.sink_name})")
        if batch_size < 1 or num_shards < 1:
            raise ValueError("batch_size and num_shards must be positive")
        self.batch_size = batch_size
        self.num_shards = num_shards

    def expand(self, rows: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        batches = rows | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
        if self.write.upsert:
            spec, num_shards = self.write.spec, self.num_shards
            batches = batches | "SplitByShard" >> beam.FlatMap(
                lambda batch: _split_by_shard(spec, batch, num_shards)).with_output_types(Tuple[int, List[Any]])
        return batches | self.write


def _split_by_shard(spec: TableSpec, batch: Sequence[Any], num_shards: int) -> Iterable[Tuple[int, List[Any]]]:
    shards: Dict[int, List[Any]] = {}
    for value in batch:
        try:
            key = spec.key_of(spec.row(value))
        except Exception:  # not a row of the table: the writer dead-letters it, any shard will do
            key = None
        shards.setdefault(shard_of(key, num_shards), []).append(value)
    return shards.items()
