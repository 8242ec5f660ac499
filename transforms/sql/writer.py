"""``SQLWriter``: batches of rows into one table, one transaction per batch, retried and
isolated, with no Beam in sight (the write DoFn and the benchmarks both drive it).

PostgreSQL appends through ``COPY`` and upserts through ``COPY`` into a
temporary stage table and one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``;
MySQL, MariaDB and SQLite take multi-row ``INSERT`` (``ON DUPLICATE KEY UPDATE``
and ``ON CONFLICT DO UPDATE`` for upserts). Upserts keep only the last row of
each key in a batch, since PostgreSQL refuses to update one row twice in a
statement and the last row is the one that must stay.
"""
from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import sqlalchemy
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from sinks.integrations import SQLSource
from transforms.sql.copy_text import CopyFormatter
from transforms.sql.errors import is_transient
from transforms.sql.table import Row, RowError, TableSpec, latest_per_key


@dataclass(frozen=True)
class WriteRetry:
    """Retries of a batch that failed for a transient reason (see :mod:`transforms.sql.errors`).

    The n-th retry waits a random time up to ``min(max_delay, base_delay * 2**n)``
    seconds ("full jitter", so restarting writers do not return in step); after
    ``deadline`` seconds of failures the batch's rows are dead-lettered.
    """

    base_delay: float = 0.1
    max_delay: float = 10.0
    deadline: float = 300.0

    def delay(self, retry: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.max_delay, self.base_delay * 2 ** retry)


class TransientFailure(Exception):
    """A batch that kept failing for transient reasons until the retry deadline."""


@dataclass
class WriteResult:
    """What became of one batch: rows written, retries spent, rows that failed and why."""

    written: int = 0
    retries: int = 0
    failed: List[Tuple[Any, BaseException]] = field(default_factory=list)


class SQLWriter:
    """Writes batches of rows (mapped instances or dicts of column values) to one table.

    Call :meth:`open` on the worker before the first batch, :meth:`close` after the last.
    """

    def __init__(self, integration: SQLSource, spec: TableSpec, upsert: bool = False,
                 retry: WriteRetry = WriteRetry()) -> None:
        self.integration = integration
        self.spec = spec
        self.upsert = upsert
        self.retry = retry
        self.engine: Optional[Engine] = None

    def open(self) -> None:
        self.engine = self.integration.create_engine()
        dialect = self.engine.dialect
        self._statement: Callable[[Connection, Tuple[str, ...], List[Row]], None]
        if dialect.name == "postgresql" and dialect.driver == "psycopg2":
            self._statement = self._copy_upsert if self.upsert else self._copy
        else:
            self._statement = self._insert
        # Databases without a time zone type keep the instant, in UTC, rather than a local wall time.
        self._naive_utc = frozenset() if dialect.name == "postgresql" else frozenset(
            c.key for c in self.spec.columns if isinstance(c.type, sqlalchemy.DateTime))
        self._formatters: Dict[Tuple[str, ...], CopyFormatter] = {}
        self._inserts: Dict[Tuple[str, ...], Any] = {}

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
        deadline = time.monotonic() + self.retry.deadline
        retry = 0
        while True:
            try:
                with self.engine.begin() as connection:
                    for columns, group in self.spec.groups(rows).items():
                        self._statement(connection, columns, group)
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                retry += 1
                delay = self.retry.delay(retry)
                if time.monotonic() + delay > deadline:
                    raise TransientFailure(
                        f"gave up after {retry} attempts over {self.retry.deadline:g} s: {error}") from error
                result.retries += 1
                self.engine.dispose()  # drop every pooled connection: the server may be a new one
                time.sleep(delay)

    # One statement per group of rows that write the same columns.

    def _copy(self, connection: Connection, columns: Tuple[str, ...], rows: List[Row]) -> None:
        self._copy_into(connection, self._quoted_table(), columns, rows)

    def _copy_upsert(self, connection: Connection, columns: Tuple[str, ...], rows: List[Row]) -> None:
        stage = self._stage(connection)
        self._copy_into(connection, stage, columns, rows)
        names = self._quoted(columns)
        updates = [name for key, name in zip(columns, names) if key not in self.spec.key]
        action = ("UPDATE SET " + ", ".join(f"{n} = EXCLUDED.{n}" for n in updates)) if updates else "NOTHING"
        connection.exec_driver_sql(
            f"INSERT INTO {self._quoted_table()} ({', '.join(names)}) SELECT {', '.join(names)} FROM {stage} "
            f"ON CONFLICT ({', '.join(self._quoted(self.spec.key))}) DO {action}")

    def _stage(self, connection: Connection) -> str:
        """A temporary table shaped like the target, emptied at every commit.

        Made in the batch's own transaction, so a rolled-back batch leaves no
        half-made stage behind; ``IF NOT EXISTS`` costs one round trip per batch.
        """
        stage = self._quote(f"sinks_stage_{self.spec.table.name}")
        columns = ", ".join(self._quoted([c.key for c in self.spec.columns]))
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {self._quoted_table()} WITH NO DATA")
        return stage

    def _copy_into(self, connection: Connection, table: str, columns: Tuple[str, ...], rows: List[Row]) -> None:
        formatter = self._formatters.get(columns)
        if formatter is None:
            formatter = self._formatters[columns] = CopyFormatter(
                [self.spec.table.columns[k] for k in columns], connection.dialect)
        text = formatter.format(rows)
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            # Handed over in one piece: psycopg2 then holds the GIL once, not once per 8 kB,
            # and Beam's threads run while the server parses.
            cursor.copy_expert(f"COPY {table} ({', '.join(self._quoted(columns))}) FROM STDIN",
                               io.StringIO(text), size=max(len(text), 8192))
        finally:
            cursor.close()

    def _insert(self, connection: Connection, columns: Tuple[str, ...], rows: List[Row]) -> None:
        statement = self._inserts.get(columns)
        if statement is None:
            statement = self._inserts[columns] = self._insert_statement(connection.dialect.name, columns)
        params = [{k: row.get(k) for k in columns} for row in rows]
        for key in self._naive_utc.intersection(columns):
            for param in params:
                value = param[key]
                if value is not None and value.tzinfo is not None:
                    param[key] = value.astimezone(timezone.utc).replace(tzinfo=None)
        connection.execute(statement, params)

    def _insert_statement(self, dialect: str, columns: Tuple[str, ...]) -> Any:
        table = self.spec.table
        updates = [k for k in columns if k not in self.spec.key]
        if not self.upsert:
            return sqlalchemy.insert(table)
        if dialect in ("mysql", "mariadb"):
            statement = mysql.insert(table)
            if not updates:  # nothing to update: a no-op assignment keeps the existing row
                updates = list(self.spec.key[:1])
            return statement.on_duplicate_key_update({k: statement.inserted[k] for k in updates})
        module = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect)
        if module is None:
            raise NotImplementedError(f"upsert is not supported on {dialect}")
        statement = module.insert(table)
        index = [table.columns[k] for k in self.spec.key]
        if not updates:
            return statement.on_conflict_do_nothing(index_elements=index)
        return statement.on_conflict_do_update(
            index_elements=index, set_={k: statement.excluded[k] for k in updates})

    def _quote(self, name: str) -> str:
        assert self.engine is not None
        return self.engine.dialect.identifier_preparer.quote(name)

    def _quoted(self, keys: Sequence[str]) -> List[str]:
        return [self._quote(self.spec.table.columns[k].name) for k in keys]

    def _quoted_table(self) -> str:
        assert self.engine is not None
        return self.engine.dialect.identifier_preparer.format_table(self.spec.table)
