"""SQL writes: append and upsert through SQLAlchemy, in batches, retried, dead-lettered.

A reusable block: it imports nothing of the sink runtime (``tests/test_boundaries.py``).
"""
from transforms.retry import RetryPolicy
from transforms.sql.errors import SchemaMismatchError, TableWriteError
from transforms.sql.table import TableSpec
from transforms.sql.write import WRITTEN, VersionedRow, WriteBatchesToSQL, WriteToSQL
from transforms.sql.writer import SQLWriter, WriteRetry

__all__ = ["RetryPolicy", "SchemaMismatchError", "SQLWriter", "TableSpec", "TableWriteError", "VersionedRow", "WRITTEN",
           "WriteBatchesToSQL", "WriteRetry", "WriteToSQL"]
