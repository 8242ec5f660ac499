"""PostgreSQL: ``COPY ... FROM STDIN`` for appends and, for upserts, ``COPY`` into a temporary
stage table then one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` per column group (with
psycopg2; other drivers take the ``INSERT`` path)."""
from __future__ import annotations

import io
import re
from typing import Any, Dict, Optional

import sqlalchemy
from sqlalchemy import Column, MetaData, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.ddl import ExecutableDDLElement

from transforms.sql.copy_text import CopyFormatter
from transforms.sql.dialects import register
from transforms.sql.dialects.base import Columns, Groups, OnConflictDialect, WriteMode
from transforms.sql.errors import ErrorKind
from transforms.sql.table import Row, TableSpec

# SQLSTATE classes and codes. Transient: connection exception, insufficient resources,
# operator intervention (shutdown, crash, cannot connect now), system error; serialization
# failure, deadlock, lock not available. Table: invalid authorization, invalid catalog name;
# insufficient privilege, undefined table, undefined column, read-only transaction.
_TRANSIENT_CLASSES = {"08", "53", "57", "58"}
_TRANSIENT_CODES = {"40001", "40P01", "55P03"}
_TABLE_CLASSES = {"28", "3D"}
_TABLE_CODES = {"42501", "42P01", "42703", "25006"}
# libpq's own errors carry no SQLSTATE: these refuse a login rather than lose a connection.
_LOGIN_REFUSED = re.compile(r"authentication failed|role .* does not exist|database .* does not exist"
                            r"|no pg_hba\.conf entry|permission denied")


class _CreateStage(ExecutableDDLElement):
    """``CREATE TEMPORARY TABLE IF NOT EXISTS stage ON COMMIT DELETE ROWS AS SELECT columns
    FROM target WITH NO DATA``: a stage with the target's own column types. Made in a
    batch's own transaction, so a rolled-back batch leaves no half-made stage behind."""

    def __init__(self, stage: Table, target: Table) -> None:
        self.stage = stage
        self.source = target


@compiles(_CreateStage, "postgresql")
def _create_stage(element: _CreateStage, compiler: Any, **kw: Any) -> str:
    columns = sqlalchemy.select(*[element.source.columns[c.key] for c in element.stage.columns])
    return "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS {} WITH NO DATA".format(
        compiler.preparer.format_table(element.stage), compiler.sql_compiler.process(columns, literal_binds=True))


@register
class PostgreSQL(OnConflictDialect):
    names = ("postgresql",)
    stores_time_zones = True
    insert = staticmethod(postgresql.insert)

    def __init__(self, spec: TableSpec, mode: WriteMode, dialect: sqlalchemy.engine.Dialect) -> None:
        super().__init__(spec, mode, dialect)
        self.copies = dialect.driver == "psycopg2"
        self._formatters: Dict[Columns, CopyFormatter] = {}
        self._stage = Table(f"sinks_stage_{spec.table.name}", MetaData(),
                            *[Column(c.name, c.type, key=c.key) for c in spec.columns])
        self._create_stage = _CreateStage(self._stage, spec.table)

    def write(self, connection: Connection, groups: Groups) -> None:
        if not self.copies:
            super().write(connection, groups)
        elif self.mode is WriteMode.APPEND:
            for columns, rows in groups:
                self._copy(connection, self.spec.table, columns, rows)
        else:
            connection.execute(self._create_stage)
            for number, (columns, rows) in enumerate(groups):
                if number:  # the stage still holds the previous group's rows until the commit
                    connection.execute(sqlalchemy.delete(self._stage))
                self._copy(connection, self._stage, columns, rows)
                connection.execute(self._upsert_from_stage(columns))

    def _upsert_from_stage(self, columns: Columns) -> Any:
        statement = self._statements.get(columns)
        if statement is None:
            select = sqlalchemy.select(*[self._stage.columns[k] for k in columns])
            statement = self._statements[columns] = self.upsert_statement(columns, select)
        return statement

    def _copy(self, connection: Connection, table: Table, columns: Columns, rows: list[Row]) -> None:
        formatter = self._formatters.get(columns)
        if formatter is None:
            formatter = self._formatters[columns] = CopyFormatter(
                [self.spec.table.columns[k] for k in columns], self.dialect)
        text = formatter.format(rows)
        preparer = self.dialect.identifier_preparer
        statement = "COPY {} ({}) FROM STDIN".format(
            preparer.format_table(table), ", ".join(preparer.quote(table.columns[k].name) for k in columns))
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            # Handed over in one piece: psycopg2 then holds the GIL once, not once per 8 kB,
            # and Beam's threads run while the server parses.
            cursor.copy_expert(statement, io.StringIO(text), size=max(len(text), 8192))
        finally:
            cursor.close()

    def classify_driver_error(self, error: BaseException) -> ErrorKind:
        if type(error).__module__.split(".")[0] not in ("psycopg2", "psycopg"):
            return ErrorKind.ROW
        code: Optional[str] = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
        if code is None:  # raised by libpq itself: refused, reset, closed, or a login refused
            if _LOGIN_REFUSED.search(str(error)):
                return ErrorKind.TABLE
            return ErrorKind.TRANSIENT if type(error).__name__ in ("OperationalError", "InterfaceError") \
                else ErrorKind.ROW
        if code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES:
            return ErrorKind.TRANSIENT
        if code[:2] in _TABLE_CLASSES or code in _TABLE_CODES:
            return ErrorKind.TABLE
        return ErrorKind.ROW
