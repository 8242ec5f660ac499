"""``WriteToSQL``: a PCollection of rows → batches → one transaction per batch → a table.

    rows ─ BatchElements ─┬─ append ─────────────────────────────────┬─ WriteBatchesToSQL
                          └─ upsert: split each batch by conflict-key ─┘   ├─ written (rows per batch)
                             shard, then one writer per shard              └─ dead_letters

Batches follow Beam's bundles: nothing waits for a timer, and a bundle's rows
are committed before the bundle is. Upserts are routed by their conflict key
to a keyed write step, so that every row of one key is written by the same
shard, batch after batch, in the order it arrived: without a version column
the row that stays is the last update to arrive. With one (``version=``), the
row that stays is the one with the highest version, whatever the order of
arrival: runners that reorder (Prism, Flink, Dataflow), reruns and backfills cannot
make it regress. Rows that come as :class:`VersionedRow` (``versioned=True``) are
ordered the same way within a run without such a column: the keyed step keeps each
key's newest version written and drops older rows.
"""
from __future__ import annotations

import pickle
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.coders import BytesCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec
from apache_beam.utils.windowed_value import WindowedValue

from transforms.dead_letters import DEAD_LETTERS, dead_letter
from transforms.retry import RetryPolicy
from transforms.sharding import shard_of
from transforms.sql.dialects import dialect_for
from transforms.sql.errors import reason
from transforms.sql.schema import prepare_table
from transforms.sql.table import RowError, TableSpec
from transforms.sql.writer import Database, SQLWriter, WriteResult, WriteRetry

WRITTEN = "written"
DEFAULT_WRITE_BATCH_SIZE = 5000
"""Rows per write transaction, at most."""
DEFAULT_WRITE_SHARDS = 4


class VersionedRow(NamedTuple):
    """A row to upsert (a mapped instance or a dict) and the version of the state it was
    computed from: any value ordered by ``<``, such as :class:`transforms.firing.Version`;
    None for a row that replaces its key's row unconditionally."""

    row: Any
    version: Any


class _WriteBatchFn(beam.DoFn):
    """Writes each batch (a list of rows, or a ``(key, rows)`` pair) in one transaction."""

    def __init__(self, integration: Database, spec: TableSpec, upsert: bool, retry: RetryPolicy,
                 name: str, skip_existing: bool) -> None:
        self.integration = integration
        self.spec = spec
        self.upsert = upsert
        self.skip_existing = skip_existing
        self.retry = retry
        self.name = name
        namespace = f"sinks.{name}"
        self.rows = Metrics.counter(namespace, "rows_upserted" if upsert else "rows_appended")
        self.batches = Metrics.counter(namespace, "write_batches")
        self.retries = Metrics.counter(namespace, "write_retries")
        self.dead_letters = Metrics.counter(namespace, "write_dead_letters")
        self.latency = Metrics.distribution(namespace, "write_latency_ms")

    def setup(self) -> None:
        self.writer = SQLWriter(self.integration, self.spec, self.upsert, self.retry, self.name, self.skip_existing)
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
        for number, (row, error) in enumerate(result.failed):
            self.dead_letters.inc()
            # A batch that failed as one (an outage) would repeat one long traceback per row.
            record = dead_letter("write", self.name, error, row, reason(error), with_traceback=number == 0)
            yield TaggedOutput(DEAD_LETTERS, WindowedValue(record, timestamp, (window,)))
        yield WindowedValue(result.written, timestamp, (window,))


class _Newest(NamedTuple):
    """A shard's newest version of each conflict key, as this worker last wrote it: valid while the
    shard's ``LAST_BATCH`` token is ``token``; ``appended``, how many versions its bag holds."""

    token: int
    versions: Dict[Any, Any]
    appended: int


# A shard's bag of versions is rewritten as one dict once it holds this many more than the
# dict's keys (and twice as many), so that the bag grows with the keys, not with the rows written.
COMPACT_AFTER = 10_000


class _ShardWriteBatchFn(_WriteBatchFn):
    """Writes ``(shard, rows)`` batches; being stateful, it gets each shard's batches on one
    worker, one after the other, which is what keeps a key's upserts in order.

    For batches of ``VersionedRow``, it drops a row older than its key's newest version written
    by the shard so far. Those versions are in state as a bag of pickled dicts, one per batch
    (only the keys the batch wrote), and in this worker's memory as one dict per shard, read from
    the bag only when another worker (or a failed bundle) wrote the shard last. Kept as one pickled
    dict read and written whole per batch, their cost grew with the shard's keys: on the bank job
    with 1,000,000 users, 27% of the run went into pickling them.
    """

    # A random token naming the batch the shard wrote last: whether this worker's versions are the
    # shard's. Written for every batch, which also makes this step stateful without versions.
    LAST_BATCH = ReadModifyWriteStateSpec("last_batch", VarIntCoder())
    NEWEST = BagStateSpec("newest", BytesCoder())

    def __init__(self, *args: Any, versioned: bool = False) -> None:
        super().__init__(*args)
        self.versioned = versioned
        self.stale = Metrics.counter(f"sinks.{self.name}", "stale_rows_dropped")

    def setup(self) -> None:
        super().setup()
        self._newest: Dict[Any, _Newest] = {}

    def process(self, batch: Tuple[Any, Sequence[Any]], window=beam.DoFn.WindowParam,  # type: ignore[override]
                timestamp=beam.DoFn.TimestampParam, last_batch=beam.DoFn.StateParam(LAST_BATCH),
                newest=beam.DoFn.StateParam(NEWEST)) -> Iterable[Any]:
        token = random.getrandbits(62)
        if self.versioned:
            batch = batch[0], self._newer(batch[0], batch[1], last_batch.read(), newest, token)
        last_batch.write(token)
        yield from super().process(batch, window, timestamp)

    def _newer(self, shard: Any, entries: Sequence[Tuple[Any, Optional[tuple]]], last_token: Optional[int],
               newest: Any, token: int) -> List[Any]:
        """The rows of ``entries`` not older than their key's newest version written so far:
        Beam's shuffles reorder, so arriving later does not make a row newer. Within the
        batch, a key's rows kept are in rising version order, so the writer's "last to
        arrive" is the newest."""
        # Taken out while it changes: if this bundle fails, the shard's versions are read again.
        known = self._newest.pop(shard, None)
        if known is None or known.token != last_token:
            known = _read_newest(newest)
        versions, written = known.versions, {}
        rows = []
        for row, version in entries:   # see _split_by_shard
            if version is not None and isinstance(row, dict):
                key = self.spec.key_of(row)
                stored = versions.get(key)
                if stored is not None and version < stored:
                    self.stale.inc()
                    continue
                versions[key] = written[key] = version
            rows.append(row)
        appended = known.appended + len(written)
        if appended > COMPACT_AFTER + 2 * len(versions):
            newest.clear()
            newest.add(pickle.dumps(versions, protocol=pickle.HIGHEST_PROTOCOL))
            appended = len(versions)
        elif written:
            newest.add(pickle.dumps(written, protocol=pickle.HIGHEST_PROTOCOL))
        self._newest[shard] = _Newest(token, versions, appended)
        return rows


def _read_newest(newest: Any) -> _Newest:
    """A shard's versions as its bag of them holds them (its token is not needed again)."""
    versions: Dict[Any, Any] = {}
    appended = 0
    for packed in newest.read():
        written = pickle.loads(packed)
        appended += len(written)
        for key, version in written.items():
            stored = versions.get(key)
            if stored is None or stored < version:
                versions[key] = version
    return _Newest(0, versions, appended)


class WriteBatchesToSQL(beam.PTransform):
    """Write batches that are already formed (lists of rows, or ``(key, rows)`` pairs, as a
    pacing :class:`~transforms.buffer.Buffer` flushes them), one transaction per batch.

    Arguments as for :class:`WriteToSQL`, and ``keyed``: the batches are
    ``(key, rows)`` pairs, and each key's batches must be written by one worker,
    in turn (a stateful step; not needed straight after a keyed ``Buffer``,
    which already runs that way). Returns the same outputs as :class:`WriteToSQL`.
    """

    def __init__(self, integration: Database, model: Any, upsert: bool = False,
                 conflict: Union[None, str, Sequence[str]] = None, create_tables: Optional[bool] = None,
                 validate: bool = True, retry: RetryPolicy = WriteRetry(), name: Optional[str] = None,
                 keyed: bool = False, version: Optional[str] = None, skip_existing: bool = False,
                 versioned: bool = False) -> None:
        self.spec = TableSpec(model, conflict, version)
        self.sink_name = name or self.spec.name
        super().__init__(f"WriteBatchesToSQL({self.sink_name})")
        if upsert and skip_existing:
            raise ValueError(f"sink {self.sink_name!r}: upsert replaces stored rows and skip_existing keeps them")
        dialect = dialect_for(integration.url.get_backend_name())
        if (upsert or skip_existing) and not dialect.upserts:
            raise NotImplementedError(f"sink {self.sink_name!r}: {'upsert' if upsert else 'skip_existing'} "
                                      f"is not supported on {integration.url.get_backend_name()}")
        self.integration = integration
        self.upsert = upsert
        self.skip_existing = skip_existing
        self.create_tables = dialect.create_tables if create_tables is None else create_tables
        self.validate = validate
        self.retry = retry
        if versioned and not (keyed and upsert):
            raise ValueError(f"sink {self.sink_name!r}: versioned rows are for keyed upserts")
        self.keyed = keyed
        self.versioned = versioned

    def expand(self, batches: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if self.validate or self.create_tables:
            self._prepare()
        arguments = (self.integration, self.spec, self.upsert, self.retry, self.sink_name, self.skip_existing)
        write_fn = (_ShardWriteBatchFn(*arguments, versioned=self.versioned) if self.keyed
                    else _WriteBatchFn(*arguments))
        return batches | "Write" >> beam.ParDo(write_fn).with_outputs(DEAD_LETTERS, main=WRITTEN)

    def _prepare(self) -> None:
        """Create and check the table now, while the pipeline is built: before any data moves."""
        engine = self.integration.create_engine()
        try:
            prepare_table(engine, self.spec, self.sink_name, self.create_tables,
                          keyed=self.upsert or self.skip_existing)
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
      retry: how transient failures are retried (:class:`WriteRetry`'s defaults: for
        up to 300 s; ``deadline=0`` retries for as long as the database is away).
      name: the sink's name, for metrics (``sinks.<name>``) and dead letters.
      skip_existing: append only rows whose conflict key the table does not hold
        yet (``ON CONFLICT DO NOTHING``): given rows with a deterministic identity
        (an input file and offset, an entity and its event sequence) as a unique
        key, a rerun or a retried bundle adds no duplicates.
      version: (upsert) the column that orders a key's versions, such as the entity's
        event time; a row is never replaced by one with a lower version, whatever
        order rows arrive in (see :class:`~transforms.sql.table.TableSpec`).
      versioned: (upsert) each element is a :class:`VersionedRow`; of a key's rows,
        one older than the newest already written is dropped (metric
        ``stale_rows_dropped``), whatever order they arrive in.

    Raises :class:`~transforms.sql.errors.TableWriteError` (failing the pipeline)
    when the table itself cannot be written: no privilege, no such table or
    column, a read-only database, a refused login.

    Returns a ``DoOutputsTuple``: ``written`` (rows written per batch) and
    ``dead_letters`` (one record per row that could not be written, with the
    database's reason).
    """

    def __init__(self, integration: Database, model: Any, upsert: bool = False,
                 conflict: Union[None, str, Sequence[str]] = None, batch_size: int = DEFAULT_WRITE_BATCH_SIZE,
                 num_shards: int = DEFAULT_WRITE_SHARDS, create_tables: Optional[bool] = None,
                 validate: bool = True, retry: RetryPolicy = WriteRetry(), name: Optional[str] = None,
                 version: Optional[str] = None, skip_existing: bool = False, versioned: bool = False) -> None:
        self.write = WriteBatchesToSQL(integration, model, upsert, conflict, create_tables, validate, retry, name,
                                       keyed=upsert, version=version, skip_existing=skip_existing,
                                       versioned=versioned)
        super().__init__(f"WriteToSQL({self.write.sink_name})")
        if batch_size < 1 or num_shards < 1:
            raise ValueError("batch_size and num_shards must be positive")
        self.batch_size = batch_size
        self.num_shards = num_shards

    def expand(self, rows: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        batches = rows | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size, max_batch_size=self.batch_size)
        if self.write.upsert:
            batches = batches | "SplitByShard" >> beam.FlatMap(
                _split_by_shard, self.write.spec, self.num_shards, self.write.versioned
            ).with_output_types(Tuple[int, List[Any]])
        return batches | self.write


def _split_by_shard(batch: Sequence[Any], spec: TableSpec, num_shards: int,
                    versioned: bool) -> Iterable[Tuple[int, List[Any]]]:
    """Each value as its row (a dict, cheap to encode for the keyed step, and free of the model
    class), in the batch of its key's shard; a ``VersionedRow`` as ``(row, version)``, plain
    tuples, which Beam's coder encodes natively (a named tuple it pickles: 5x the time)."""
    shards: Dict[int, List[Any]] = {}
    for value in batch:
        version = None
        if versioned:
            value, version = value
        try:
            value = spec.row(value)
            key = spec.key_of(value)
        except RowError:  # not a row of the table: the writer dead-letters it, any shard will do
            key = None
        shards.setdefault(shard_of(key, num_shards), []).append(
            (value, tuple(version) if isinstance(version, tuple) else version) if versioned else value)
    return shards.items()
