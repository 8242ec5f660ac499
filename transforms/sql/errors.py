"""The SQL layer's own errors, and the three kinds of database error a writer tells apart.

Each dialect (:mod:`transforms.sql.dialects`) sorts its driver's errors into
these kinds; the writer retries ``TRANSIENT`` ones, stops at ``TABLE`` ones and
isolates the rows behind ``ROW`` ones.
"""
from __future__ import annotations

import enum

import sqlalchemy.exc


class ErrorKind(enum.Enum):
    TRANSIENT = "transient"
    """Retrying the same write later may well succeed: the connection was refused, dropped
    or reset, the server is restarting or out of connections, the transaction lost a race."""
    TABLE = "table"
    """No row can be written: no privilege, no such table or column, a read-only database,
    a failed login. Retrying or isolating rows would only repeat it."""
    ROW = "row"
    """The database refused the data: some rows of the batch are bad."""


class SchemaMismatchError(ValueError):
    """A target table that cannot take the rows of its mapped class."""


class TableWriteError(RuntimeError):
    """A write that failed for the table's or the connection's sake, not a row's: the sink's
    writes stop at once."""


class TransientFailure(Exception):
    """A batch that kept failing for transient reasons until the retry policy gave up, or that
    was not retried because the database was already known to be away."""


def reason(error: BaseException) -> str:
    """The database's own message, without the statement and parameters SQLAlchemy appends
    (a batch's parameters can run to megabytes)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"
