"""MySQL and MariaDB: multi-row ``INSERT``, upserts with ``ON DUPLICATE KEY UPDATE``."""
from __future__ import annotations

from typing import Any, List, Tuple

import sqlalchemy
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.expression import Executable

from transforms.sql.dialects import register
from transforms.sql.dialects.base import Columns, SQLDialect
from transforms.sql.errors import ErrorKind

# Too many connections, shutdown in progress, lock wait timeout, deadlock, connection killed,
# network errors, client-side connection errors.
_TRANSIENT = {1040, 1053, 1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161, 1205, 1213,
              1927, 2002, 2003, 2005, 2006, 2013, 2055, 4031}
# Access denied (to the database, at login, to the table or column, missing SUPER), unknown
# database, table or column, table read-only, --read-only server, read-only transaction.
_TABLE = {1044, 1045, 1049, 1054, 1142, 1143, 1146, 1227, 1036, 1290, 1792}


@register
class MySQL(SQLDialect):
    names = ("mysql", "mariadb")
    upserts = True

    def upsert_statement(self, columns: Columns) -> Executable:
        table = self.spec.table
        statement = mysql.insert(table)
        updates = self.updated(columns)
        if not updates:  # nothing to update: a no-op assignment keeps the existing row
            return statement.on_duplicate_key_update({k: table.columns[k] for k in self.spec.key[:1]})
        version = self.spec.version
        if version is None:
            return statement.on_duplicate_key_update({k: statement.inserted[k] for k in updates})
        # Assignments run left to right and see the values already assigned: the version,
        # which every condition reads, is assigned last.
        newer = self.newer(statement.inserted)
        assignments: List[Tuple[str, Any]] = [
            (k, sqlalchemy.case((newer, statement.inserted[k]), else_=table.columns[k]))
            for k in sorted(updates, key=lambda k: k == version)]
        return statement.on_duplicate_key_update(assignments)

    def classify_driver_error(self, error: BaseException) -> ErrorKind:
        if type(error).__module__.split(".")[0] != "pymysql":
            return ErrorKind.ROW
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        if code in _TRANSIENT or type(error).__name__ == "InterfaceError":
            return ErrorKind.TRANSIENT
        if code in _TABLE:
            return ErrorKind.TABLE
        return ErrorKind.ROW
