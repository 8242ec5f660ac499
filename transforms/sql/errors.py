"""Which database errors are worth retrying.

Transient: the connection was refused, dropped or reset, the server is
restarting or out of connections, or the transaction lost a race
(serialization failure, deadlock, lock timeout). Anything else is taken to be
about the data, and the writer isolates the rows that cause it.
"""
from __future__ import annotations

import sqlite3

import sqlalchemy.exc

# SQLSTATE classes and codes: connection exception, insufficient resources, operator
# intervention (shutdown, crash, cannot connect now), system error; serialization
# failure, deadlock, lock not available, query cancelled by a timeout.
_PG_CLASSES = {"08", "53", "57", "58"}
_PG_CODES = {"40001", "40P01", "55P03"}
# MySQL/MariaDB: too many connections, shutdown in progress, lock wait timeout,
# deadlock, connection killed, network errors, client-side connection errors.
_MYSQL_CODES = {1040, 1053, 1152, 1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161, 1205, 1213,
                1927, 2002, 2003, 2005, 2006, 2013, 2055, 4031}


def is_transient(error: BaseException) -> bool:
    """True when retrying the same write later may well succeed."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if error.orig is None:
            return False
        error = error.orig
    if isinstance(error, (sqlalchemy.exc.TimeoutError, ConnectionError, TimeoutError)):
        return True
    module = type(error).__module__.split(".")[0]
    if module == "psycopg2":
        code = getattr(error, "pgcode", None)
        if code is None:  # raised by libpq itself: refused, reset, closed
            return type(error).__name__ in ("OperationalError", "InterfaceError")
        return code[:2] in _PG_CLASSES or code in _PG_CODES
    if module == "pymysql":
        code = error.args[0] if error.args and isinstance(error.args[0], int) else None
        return code in _MYSQL_CODES or type(error).__name__ == "InterfaceError"
    if isinstance(error, sqlite3.OperationalError):
        message = str(error)
        return "locked" in message or "busy" in message
    return False
