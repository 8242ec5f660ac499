"""SQLite: multi-row ``INSERT``, upserts with ``ON CONFLICT DO UPDATE``; tables made when missing."""
from __future__ import annotations

import sqlite3
from typing import Tuple

from sqlalchemy.dialects import sqlite

from transforms.sql.dialects import register
from transforms.sql.dialects.base import OnConflictDialect
from transforms.sql.errors import ErrorKind

# Result codes (``sqlite_errorname``, extended codes included by prefix).
_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED")
_TABLE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")
# Plain SQLITE_ERROR covers a bad statement as well as a bad value; these messages mean the table.
_TABLE_MESSAGES: Tuple[str, ...] = ("no such table", "has no column named", "no such column")


@register
class SQLite(OnConflictDialect):
    names = ("sqlite",)
    create_tables = True
    insert = staticmethod(sqlite.insert)

    def classify_driver_error(self, error: BaseException) -> ErrorKind:
        if not isinstance(error, sqlite3.Error):
            return ErrorKind.ROW
        name = getattr(error, "sqlite_errorname", "")
        message = str(error)
        if name.startswith(_TRANSIENT) or "locked" in message or "busy" in message:
            return ErrorKind.TRANSIENT
        if name.startswith(_TABLE) or message.startswith(_TABLE_MESSAGES) or any(
                m in message for m in _TABLE_MESSAGES):
            return ErrorKind.TABLE
        return ErrorKind.ROW
