"""``SQLDialect``: how rows reach one kind of database, and the generic SQLAlchemy fallback.

A dialect writes a batch's column groups inside the writer's transaction
(:meth:`SQLDialect.write`), says what kind of error a failure is
(:meth:`SQLDialect.classify`), and holds the database's defaults. This base
class works on any database SQLAlchemy reaches: multi-row ``INSERT`` for
appends, no upserts. Subclasses register under their SQLAlchemy dialect names
(:func:`transforms.sql.dialects.register`).
"""
from __future__ import annotations

import enum
from datetime import timezone
from typing import Any, ClassVar, Dict, List, Sequence, Tuple

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import Executable

from transforms.sql.errors import ErrorKind
from transforms.sql.table import Row, TableSpec

Columns = Tuple[str, ...]
Groups = Sequence[Tuple[Columns, List[Row]]]
"""A batch's rows, grouped by the columns they write (see :meth:`TableSpec.groups`)."""


class WriteMode(enum.Enum):
    APPEND = "append"
    APPEND_NEW = "append new"
    """Append, skipping a row whose conflict key the table already holds."""
    UPSERT = "upsert"


class SQLDialect:
    """The generic fallback: ``INSERT`` through SQLAlchemy, no upsert.

    One instance per writer, made on the worker: it may cache statements.
    """

    names: ClassVar[Tuple[str, ...]] = ()
    create_tables: ClassVar[bool] = False
    """Whether ``WriteToSQL`` creates a missing table when not told."""
    stores_time_zones: ClassVar[bool] = False
    """False: timezone-aware timestamps are written as their UTC instant, without offset."""
    upserts: ClassVar[bool] = False
    """Whether it writes by conflict key: upserts, and appends that skip stored keys."""

    def __init__(self, spec: TableSpec, mode: WriteMode, dialect: sqlalchemy.engine.Dialect) -> None:
        if mode is not WriteMode.APPEND and not self.upserts:
            raise NotImplementedError(f"table {spec.name!r}: {mode.value} is not supported on {dialect.name}")
        self.spec = spec
        self.mode = mode
        self.dialect = dialect
        self._statements: Dict[Columns, Executable] = {}
        self._naive_utc = frozenset() if self.stores_time_zones else frozenset(
            c.key for c in spec.columns if isinstance(c.type, sqlalchemy.DateTime))

    def write(self, connection: Connection, groups: Groups) -> None:
        """Write every group of one batch, in the caller's transaction."""
        for columns, rows in groups:
            statement = self._statements.get(columns)
            if statement is None:
                statement = self._statements[columns] = (sqlalchemy.insert(self.spec.table)
                                                         if self.mode is WriteMode.APPEND
                                                         else self.upsert_statement(columns))
            connection.execute(statement, self.parameters(columns, rows))

    def upsert_statement(self, columns: Columns) -> Executable:
        """The statement of an upsert or, when nothing is to be updated, an append of new keys."""
        raise NotImplementedError

    def updated(self, columns: Columns) -> List[str]:
        """The columns a row replaces when its key is stored already (none for ``APPEND_NEW``)."""
        if self.mode is WriteMode.APPEND_NEW:
            return []
        return [k for k in columns if k not in self.spec.key]

    def parameters(self, columns: Columns, rows: List[Row]) -> List[Dict[str, Any]]:
        params = [{k: row.get(k) for k in columns} for row in rows]
        for key in self._naive_utc.intersection(columns):
            for param in params:
                value = param[key]
                if value is not None and value.tzinfo is not None:
                    param[key] = value.astimezone(timezone.utc).replace(tzinfo=None)
        return params

    def classify(self, error: BaseException) -> ErrorKind:
        """What kind of failure ``error`` is: the driver's own error is judged by
        :meth:`classify_driver_error`."""
        if isinstance(error, sqlalchemy.exc.DBAPIError):
            if error.connection_invalidated:
                return ErrorKind.TRANSIENT
            if error.orig is None:
                return ErrorKind.ROW
            error = error.orig
        if isinstance(error, (sqlalchemy.exc.TimeoutError, ConnectionError, TimeoutError)):
            return ErrorKind.TRANSIENT
        return self.classify_driver_error(error)

    def classify_driver_error(self, error: BaseException) -> ErrorKind:
        return ErrorKind.ROW

    def newer(self, incoming: Any) -> ColumnElement[bool]:
        """The condition under which an upsert replaces the stored row: its version is not
        lower than the stored one (``incoming`` is the statement's ``excluded``/``inserted``).
        A stored row without a version is always replaced."""
        assert self.spec.version is not None
        stored = self.spec.table.columns[self.spec.version]
        return sqlalchemy.or_(stored.is_(None), stored <= incoming[self.spec.version])


class OnConflictDialect(SQLDialect):
    """Databases with ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE`` (PostgreSQL, SQLite)."""

    upserts = True
    insert: ClassVar[Any]
    """The dialect's ``insert`` (``sqlalchemy.dialects.postgresql.insert``...)."""

    def upsert_statement(self, columns: Columns, select: Any = None) -> Executable:
        """The upsert of ``columns`` from bound rows or, given ``select``, from its rows."""
        table = self.spec.table
        statement = type(self).insert(table)
        if select is not None:
            statement = statement.from_select([table.columns[k] for k in columns], select)
        index = [table.columns[k] for k in self.spec.key]
        updates = self.updated(columns)
        if not updates:
            return statement.on_conflict_do_nothing(index_elements=index)
        return statement.on_conflict_do_update(
            index_elements=index, set_={k: statement.excluded[k] for k in updates},
            where=None if self.spec.version is None else self.newer(statement.excluded))
