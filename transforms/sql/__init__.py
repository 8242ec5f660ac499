"""SQL writes: append and upsert through SQLAlchemy, in batches, retried, dead-lettered."""
from transforms.sql.schema import SchemaMismatchError
from transforms.sql.table import TableSpec
from transforms.sql.write import WRITTEN, WriteBatchesToSQL, WriteToSQL
from transforms.sql.writer import SQLWriter, WriteRetry

__all__ = ["SchemaMismatchError", "SQLWriter", "TableSpec", "WRITTEN", "WriteBatchesToSQL", "WriteRetry",
           "WriteToSQL"]
