"""``SQLWriter``: batches of rows into one table, one transaction per batch, retried and
isolated, with no Beam in sight (the write DoFn and the benchmarks both drive it).

How rows reach the database is the dialect's business (:mod:`transforms.sql.dialects`).
Upserts keep one row per key in a batch, since PostgreSQL refuses to update one
row twice in a statement: the one with the highest version, else the last.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Protocol, Sequence, Tuple

from sqlalchemy.engine import URL, Engine

from transforms.retry import UNLIMITED, RetryPolicy
from transforms.sql.dialects import SQLDialect, WriteMode, dialect_for
from transforms.sql.errors import ErrorKind, TableWriteError, TransientFailure, reason
from transforms.sql.table import Row, RowError, TableSpec, latest_per_key


class Database(Protocol):
    """Where a writer writes: a SQLAlchemy URL and engines made from it, on the worker
    (``sinks.integrations.SQLSource`` is one)."""

    @property
    def url(self) -> URL: ...

    def create_engine(self) -> Engine: ...


@dataclass(frozen=True)
class WriteRetry(RetryPolicy):
    """A :class:`~transforms.retry.RetryPolicy` with the defaults of database writes: as many
    attempts as 300 s allow, from 0.1 s apart up to 10 s apart."""

    attempts: int = UNLIMITED
    base_delay: float = 0.1
    deadline: Optional[float] = 300.0


@dataclass
class WriteResult:
    """What became of one batch: rows written, retries spent, rows that failed and why."""

    written: int = 0
    retries: int = 0
    failed: List[Tuple[Any, BaseException]] = field(default_factory=list)


class SQLWriter:
    """Writes batches of rows (mapped instances or dicts of column values) to one table.

    Call :meth:`open` on the worker before the first batch, :meth:`close` after the last.

    An error that concerns the table or the connection rather than a row (no
    privilege, no such table, a read-only database, a refused login) raises
    :class:`TableWriteError` at once. When a batch's retries run out, the
    database is taken to be away: later batches get one try each, without
    retries, until one succeeds, so a long outage costs one deadline, not
    one per batch.
    """

    def __init__(self, integration: Database, spec: TableSpec, upsert: bool = False,
                 retry: RetryPolicy = WriteRetry(), name: Optional[str] = None, skip_existing: bool = False) -> None:
        if upsert and skip_existing:
            raise ValueError("upsert replaces stored rows and skip_existing keeps them: choose one")
        self.integration = integration
        self.spec = spec
        self.upsert = upsert
        self.mode = WriteMode.UPSERT if upsert else WriteMode.APPEND_NEW if skip_existing else WriteMode.APPEND
        self.retry = retry
        self.name = name or spec.name
        self.engine: Optional[Engine] = None
        self._away_since: Optional[float] = None

    def open(self) -> None:
        self.engine = self.integration.create_engine()
        self.dialect: SQLDialect = dialect_for(self.engine.dialect.name)(self.spec, self.mode, self.engine.dialect)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    def write(self, values: Sequence[Any]) -> WriteResult:
        """Write one batch. Never raises for a row's sake: each failed row comes back with its
        error (the input itself when it is not a row of the table, else its column values)."""
        result = WriteResult()
        rows: List[Row] = []
        for value in values:
            try:
                rows.append(self.spec.row(value))
            except RowError as error:
                result.failed.append((value, error))
        if self.upsert:
            rows = latest_per_key(self.spec, rows)
        self._write_isolating(rows, result)
        return result

    def _write_isolating(self, rows: List[Row], result: WriteResult) -> None:
        """Write rows; when the database refuses them, halve until each bad row stands alone."""
        if not rows:
            return
        try:
            self._write_retrying(rows, result)
            result.written += len(rows)
        except TableWriteError:
            raise
        except TransientFailure as error:
            result.failed.extend((row, error) for row in rows)
        except Exception as error:  # the database's verdict on the data, whatever its class
            if len(rows) == 1:
                result.failed.append((rows[0], error))
                return
            middle = len(rows) // 2
            self._write_isolating(rows[:middle], result)
            self._write_isolating(rows[middle:], result)

    def _write_retrying(self, rows: List[Row], result: WriteResult) -> None:
        assert self.engine is not None, "SQLWriter.open() was not called"
        groups = list(self.spec.groups(rows).items())
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                with self.engine.begin() as connection:
                    self.dialect.write(connection, groups)
                self._away_since = None
                return
            except Exception as error:
                kind = self.dialect.classify(error)
                if kind is ErrorKind.TABLE:
                    raise TableWriteError(
                        f"sink {self.name!r}: cannot write to table {self.spec.name!r}: {reason(error)}") from error
                if kind is ErrorKind.ROW:
                    raise
                if self._away_since is not None:
                    raise TransientFailure(
                        f"not retried: the database has been unreachable for "
                        f"{time.monotonic() - self._away_since:.0f} s: {reason(error)}") from error
                delay = self.retry.delay(attempts)
                if self.retry.gives_up(attempts, time.monotonic() - started + delay):
                    self._away_since = started
                    raise TransientFailure(f"gave up after {attempts} attempts over "
                                           f"{time.monotonic() - started:.1f} s: {reason(error)}") from error
                result.retries += 1
                self.engine.dispose()  # drop every pooled connection: the server may be a new one
                time.sleep(delay)
